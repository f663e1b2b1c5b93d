//! The one place that decides what becomes of a message whose handling
//! failed: retried, held for an outage, or dead-lettered with which class.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use sluice_contracts::types::DeadLetterClass;
use sluice_dlq::Failure;
use sluice_resilience::{ErrorClass, Exhausted, RetryPolicy};

use crate::HandlerError;

/// What becomes of a message the handler gave up on.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// The dependency is unavailable (breaker open, 429): keep the message
    /// and try it again after `wait`, spending none of its attempts.
    Hold {
        /// How long to wait: the dependency's `Retry-After`, or the default.
        wait: Duration,
        /// The error, for the log.
        reason: String,
    },
    /// The message cannot be handled: dead-letter it.
    DeadLetter(Failure),
}

/// Runs `call` under `retry`, which retries retryable errors only, and judges
/// the error it ends with. `first_failure_at` keeps the time of the first
/// failed attempt across holds.
pub(crate) async fn attempt<T, E, F, Fut>(
    retry: &RetryPolicy,
    hold: Duration,
    first_failure_at: &OnceLock<i64>,
    operation: &str,
    mut call: F,
) -> Result<T, Verdict>
where
    E: HandlerError,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let result = retry
        .run(operation, || {
            let attempt = call();
            async move {
                let result = attempt.await;
                if result.is_err() {
                    first_failure_at.get_or_init(sluice_contracts::now_millis);
                }
                result
            }
        })
        .await;
    let Exhausted { error, attempts } = match result {
        Ok(value) => return Ok(value),
        Err(exhausted) => exhausted,
    };
    let class = match error.class() {
        ErrorClass::Pause => {
            return Err(Verdict::Hold {
                wait: error.retry_after().unwrap_or(hold),
                reason: error.to_string(),
            });
        }
        ErrorClass::Retryable => DeadLetterClass::RetriesExhausted,
        ErrorClass::Permanent => error.dead_letter_class(),
    };
    let last_failure_at = sluice_contracts::now_millis();
    Err(Verdict::DeadLetter(Failure {
        class,
        message: error.to_string(),
        attempts,
        first_failure_at: *first_failure_at.get().unwrap_or(&last_failure_at),
        last_failure_at,
    }))
}
