//! The one place that decides what becomes of a message whose handling
//! failed: retried, held for an outage, or dead-lettered with which class.
//!
//! A message's retry budget is spent by its own transient failures across
//! holds: a hold does not give it afresh. Else a message the dependency
//! fails on every time (poison that looks like an outage) opens the breaker
//! with its own retries, is held, gets its retries back, opens it again, and
//! holds its partition for ever. But from its first hold (the dependency
//! judged unavailable) a failure counts against the budget only if the loop
//! handled another message since the message's previous failure: the
//! dependency served others, so this one is the problem. Its failures before
//! the hold are counted again by that rule. Through a real outage nothing is
//! served and nothing counts: the message is held until the dependency is
//! back, and a success of another partition as the outage began counts one
//! failure at most.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use sluice_contracts::types::DeadLetterClass;
use sluice_dlq::Failure;
use sluice_resilience::{ErrorClass, Exhausted, RetryPolicy};

use crate::HandlerError;

/// What becomes of a message the handler gave up on.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// The dependency is unavailable (breaker open, 429, an outage): keep
    /// the message and try it again after `wait`.
    Hold {
        /// How long to wait: the dependency's `Retry-After`, or the default.
        wait: Duration,
        /// The error, for the log.
        reason: String,
    },
    /// The message cannot be handled: dead-letter it.
    DeadLetter(Failure),
}

/// One message's (or batch's) failed tries, kept across holds.
#[derive(Debug)]
pub(crate) struct Tries {
    first_failure_at: OnceLock<i64>,
    /// Written by each failed try.
    counted: Mutex<Counted>,
    /// Tries made in all, holds included.
    attempts: u32,
    /// Whether the dependency was judged unavailable (a hold) meanwhile.
    held: bool,
}

/// The message's transient failures.
#[derive(Debug)]
struct Counted {
    /// All of them: the budget until the first hold.
    all: u32,
    /// Those after which another message had been handled since the one
    /// before: the budget from the first hold on.
    evidenced: u32,
    /// The loop's count of handled messages at the previous failure.
    served_at: u64,
    /// The last transient failure, for the dead letter: a hold's error
    /// (the breaker open) says nothing about the message.
    last: Option<String>,
}

impl Counted {
    fn spent(&self, held: bool) -> u32 {
        if held { self.evidenced } else { self.all }
    }
}

impl Tries {
    /// A message's first try, with the loop's `served` count now.
    pub(crate) fn new(served: &AtomicU64) -> Self {
        Self {
            first_failure_at: OnceLock::new(),
            counted: Mutex::new(Counted {
                all: 0,
                evidenced: 0,
                served_at: served.load(Ordering::Relaxed),
                last: None,
            }),
            attempts: 0,
            held: false,
        }
    }

    fn counted(&self) -> MutexGuard<'_, Counted> {
        self.counted.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes a transient failure.
    fn failed(&self, error: String, served: &AtomicU64) {
        let now = served.load(Ordering::Relaxed);
        let mut counted = self.counted();
        counted.all = counted.all.saturating_add(1);
        if now > counted.served_at {
            counted.evidenced = counted.evidenced.saturating_add(1);
        }
        counted.served_at = now;
        counted.last = Some(error);
    }
}

/// Runs `call` under `retry` with what is left of the message's budget
/// (one try at least), and judges the error it ends with. `served` counts
/// the messages the loop handled.
pub(crate) async fn attempt<T, E, F, Fut>(
    retry: &RetryPolicy,
    hold: Duration,
    tries: &mut Tries,
    served: &AtomicU64,
    operation: &str,
    mut call: F,
) -> Result<T, Verdict>
where
    E: HandlerError,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let budget = retry.max_retries.saturating_add(1);
    let left = RetryPolicy {
        max_retries: budget
            .saturating_sub(tries.counted().spent(tries.held))
            .saturating_sub(1),
        ..retry.clone()
    };
    let noted = &*tries;
    let result = left
        .run(operation, || {
            let attempt = call();
            async move {
                let result = attempt.await;
                if let Err(err) = &result {
                    noted
                        .first_failure_at
                        .get_or_init(sluice_contracts::now_millis);
                    if err.class() == ErrorClass::Retryable {
                        noted.failed(err.to_string(), served);
                    }
                }
                result
            }
        })
        .await;
    let Exhausted { error, attempts } = match result {
        Ok(value) => return Ok(value),
        Err(exhausted) => exhausted,
    };
    let class = error.class();
    // A pause's last try was refused (the breaker open) or waved off (429).
    let tried = match class {
        ErrorClass::Pause => attempts.saturating_sub(1),
        _ => attempts,
    };
    tries.attempts = tries.attempts.saturating_add(tried);
    if class == ErrorClass::Permanent {
        return Err(dead_letter(
            tries,
            error.dead_letter_class(),
            error.to_string(),
        ));
    }
    let spent = {
        let mut counted = tries.counted();
        // Retries run out before any hold: the policy as configured (its
        // count or its waiting budget); after one, the evidenced count.
        let out = if tries.held {
            counted.evidenced >= budget
        } else {
            class == ErrorClass::Retryable
        };
        out.then(|| counted.last.take())
    };
    if let Some(last) = spent {
        let message = last.unwrap_or_else(|| error.to_string());
        return Err(dead_letter(
            tries,
            DeadLetterClass::RetriesExhausted,
            message,
        ));
    }
    // A pause, or a round after a hold whose failures did not all count.
    tries.held = true;
    Err(Verdict::Hold {
        wait: error.retry_after().unwrap_or(hold),
        reason: error.to_string(),
    })
}

fn dead_letter(tries: &Tries, class: DeadLetterClass, message: String) -> Verdict {
    let last_failure_at = sluice_contracts::now_millis();
    Verdict::DeadLetter(Failure {
        class,
        message,
        attempts: tries.attempts,
        first_failure_at: *tries.first_failure_at.get().unwrap_or(&last_failure_at),
        last_failure_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_resilience::Classified;

    /// A call's outcome: a 500, or the breaker's refusal.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Fault {
        Transient,
        BreakerOpen,
    }

    impl std::fmt::Display for Fault {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(match self {
                Self::Transient => "HTTP 500",
                Self::BreakerOpen => "circuit breaker open",
            })
        }
    }

    impl Classified for Fault {
        fn class(&self) -> ErrorClass {
            match self {
                Self::Transient => ErrorClass::Retryable,
                Self::BreakerOpen => ErrorClass::Pause,
            }
        }
    }

    impl HandlerError for Fault {}

    /// Two retries (three tries), 10 ms apart.
    fn retry() -> RetryPolicy {
        RetryPolicy {
            max_retries: 2,
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(10),
            multiplier: 1.0,
            jitter: 0.0,
            max_elapsed: None,
        }
    }

    /// One round of tries: each call answers the next of `script`; `then`
    /// runs after each call (another partition's success, say).
    async fn round(
        tries: &mut Tries,
        served: &AtomicU64,
        script: &[Result<(), Fault>],
        then: impl Fn(),
    ) -> Result<(), Verdict> {
        let mut calls = script.iter().copied();
        attempt(
            &retry(),
            Duration::from_millis(100),
            tries,
            served,
            "test",
            || {
                let outcome = calls.next().unwrap_or(Err(Fault::BreakerOpen));
                then();
                async move { outcome }
            },
        )
        .await
    }

    fn is_hold(verdict: &Result<(), Verdict>) -> bool {
        matches!(verdict, Err(Verdict::Hold { .. }))
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_hold_the_retries_run_out_as_configured() {
        let served = AtomicU64::new(0);
        let mut tries = Tries::new(&served);
        let verdict = round(&mut tries, &served, &[Err(Fault::Transient); 3], || {}).await;
        let Err(Verdict::DeadLetter(failure)) = verdict else {
            panic!("{verdict:?}");
        };
        assert_eq!(failure.class, DeadLetterClass::RetriesExhausted);
        assert_eq!(failure.attempts, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hold_does_not_give_the_retries_afresh_while_others_are_served() {
        let served = AtomicU64::new(0);
        let mut tries = Tries::new(&served);
        let another_served = || {
            served.fetch_add(1, Ordering::Relaxed);
        };
        // Two failures open the breaker: held, one try left.
        let first = [
            Err(Fault::Transient),
            Err(Fault::Transient),
            Err(Fault::BreakerOpen),
        ];
        assert!(is_hold(
            &round(&mut tries, &served, &first, another_served).await
        ));
        // The trial after the hold fails too, others served meanwhile.
        let verdict = round(
            &mut tries,
            &served,
            &[Err(Fault::Transient)],
            another_served,
        )
        .await;
        let Err(Verdict::DeadLetter(failure)) = verdict else {
            panic!("{verdict:?}");
        };
        assert_eq!(failure.class, DeadLetterClass::RetriesExhausted);
        assert_eq!(
            failure.message, "HTTP 500",
            "its own failure, not the breaker's"
        );
        assert_eq!(failure.attempts, 3, "the breaker's refusal was no try");
    }

    #[tokio::test(start_paused = true)]
    async fn through_an_outage_nothing_is_counted_and_the_message_is_held() {
        let served = AtomicU64::new(0);
        let mut tries = Tries::new(&served);
        // Another partition's call, sent before the outage, succeeds after
        // the message's first failure.
        let calls = std::sync::atomic::AtomicU32::new(0);
        let first = [
            Err(Fault::Transient),
            Err(Fault::Transient),
            Err(Fault::BreakerOpen),
        ];
        let verdict = round(&mut tries, &served, &first, || {
            if calls.fetch_add(1, Ordering::Relaxed) == 1 {
                served.fetch_add(1, Ordering::Relaxed);
            }
        })
        .await;
        assert!(is_hold(&verdict));
        // Then every trial fails and nothing else is served.
        for _ in 0..20 {
            let trial = [Err(Fault::Transient), Err(Fault::BreakerOpen)];
            assert!(is_hold(&round(&mut tries, &served, &trial, || {}).await));
        }
        // A shaky return: another partition's trial passes, this one's fails.
        let shaky = [Err(Fault::Transient), Err(Fault::BreakerOpen)];
        let another_served = || {
            served.fetch_add(1, Ordering::Relaxed);
        };
        assert!(is_hold(
            &round(&mut tries, &served, &shaky, another_served).await
        ));
        // The dependency is back.
        assert!(round(&mut tries, &served, &[Ok(())], || {}).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_budget_spent_before_any_hold_dead_letters() {
        let served = AtomicU64::new(0);
        let mut tries = Tries::new(&served);
        let policy = RetryPolicy {
            max_elapsed: Some(Duration::from_millis(15)),
            ..retry()
        };
        let mut calls = [Err(Fault::Transient); 3].into_iter();
        let verdict = attempt(
            &policy,
            Duration::from_millis(100),
            &mut tries,
            &served,
            "test",
            || {
                let outcome: Result<(), Fault> = calls.next().unwrap_or(Ok(()));
                async move { outcome }
            },
        )
        .await;
        let Err(Verdict::DeadLetter(failure)) = verdict else {
            panic!("{verdict:?}");
        };
        assert_eq!(failure.attempts, 2, "the second wait would pass 15 ms");
    }
}
