//! Retry policy: exponential backoff with jitter, bounded in attempts and in
//! total waiting time, retrying only what the error class says is retryable.
//!
//! backon drives the loop; the delays are ours because the sinks need a
//! jitter band of ± a fraction of the delay (20 % by default) and a waiting
//! budget, which backon's exponential builder does not offer in that form.

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, Retryable};

use crate::metrics::RETRIES;
use crate::{Classified, ErrorClass, InvalidConfig};

/// When and how often a failed call is tried again.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Tries after the first; 0 never retries.
    pub max_retries: u32,
    /// Wait before the first retry.
    pub initial_delay: Duration,
    /// No single wait is longer than this (before jitter).
    pub max_delay: Duration,
    /// Each wait is the previous one times this.
    pub multiplier: f64,
    /// Each wait is drawn from ± this fraction around its nominal value, so
    /// that many clients do not retry in step. In [0, 1).
    pub jitter: f64,
    /// Total waiting allowed across retries; `None` bounds only the count.
    pub max_elapsed: Option<Duration>,
}

/// A call that failed for good: the last error and how many tries were made.
#[derive(Debug, thiserror::Error)]
#[error("{error} (after {attempts} attempts)")]
pub struct Exhausted<E> {
    /// The last error: permanent, a pause, or retryable with no retry left.
    pub error: E,
    /// Tries made, the first included.
    pub attempts: u32,
}

impl RetryPolicy {
    /// Checks that the settings can work together.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let invalid = |setting, reason: &str| {
            Err(InvalidConfig {
                setting,
                reason: reason.to_owned(),
            })
        };
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return invalid("multiplier", "must be at least 1");
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return invalid("jitter", "must be in [0, 1)");
        }
        if self.max_delay < self.initial_delay {
            return invalid("max_delay", "must not be shorter than initial_delay");
        }
        Ok(())
    }

    /// Runs `call` until it succeeds, fails with a non-retryable error, or
    /// the policy runs out. A `Retry-After` from the error replaces the
    /// computed wait. `operation` labels the retry metric and logs.
    pub async fn run<T, E, F, Fut>(&self, operation: &str, mut call: F) -> Result<T, Exhausted<E>>
    where
        E: Classified + std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut attempts = 0;
        let result = (|| {
            attempts += 1;
            call()
        })
        .retry(self.clone())
        .sleep(tokio::time::sleep)
        .when(|err: &E| err.class() == ErrorClass::Retryable)
        .adjust(|err, delay| delay.map(|computed| err.retry_after().unwrap_or(computed)))
        .notify(|err, delay| {
            tracing::warn!(operation, error = %err, ?delay, "retrying");
            metrics::counter!(RETRIES, "operation" => operation.to_owned()).increment(1);
        })
        .await;
        result.map_err(|error| Exhausted { error, attempts })
    }
}

impl BackoffBuilder for RetryPolicy {
    type Backoff = Delays;

    fn build(self) -> Delays {
        Delays {
            next: self.initial_delay,
            given: 0,
            waited: Duration::ZERO,
            policy: self,
        }
    }
}

/// The waits of one call's retries.
#[derive(Debug)]
pub struct Delays {
    policy: RetryPolicy,
    next: Duration,
    given: u32,
    waited: Duration,
}

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.given >= self.policy.max_retries {
            return None;
        }
        let nominal = self.next.min(self.policy.max_delay);
        let spread = self.policy.jitter * (2.0 * fastrand::f64() - 1.0);
        let delay = nominal.mul_f64(1.0 + spread);
        if self
            .policy
            .max_elapsed
            .is_some_and(|budget| self.waited + delay > budget)
        {
            return None;
        }
        self.given += 1;
        self.waited += delay;
        self.next = nominal.mul_f64(self.policy.multiplier);
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::Status;
    use tokio::time::Instant;

    /// The ERP sink's defaults: 5 retries, 2 s initial, 60 s max, ×2, 20 % jitter.
    fn erp() -> RetryPolicy {
        RetryPolicy {
            max_retries: 5,
            initial_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: 0.2,
            max_elapsed: None,
        }
    }

    fn exact() -> RetryPolicy {
        RetryPolicy {
            jitter: 0.0,
            ..erp()
        }
    }

    /// Fails with `errors` in turn, then succeeds.
    async fn run_failing(
        policy: &RetryPolicy,
        errors: &[Status],
    ) -> (Result<u32, Exhausted<Status>>, Duration) {
        let started = Instant::now();
        let mut calls = 0usize;
        let result = policy
            .run("test", || {
                calls += 1;
                let outcome = errors.get(calls - 1).map_or(Ok(calls as u32), |e| Err(*e));
                async move { outcome }
            })
            .await;
        (result, started.elapsed())
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let delays: Vec<_> = RetryPolicy {
            max_retries: 8,
            ..exact()
        }
        .build()
        .map(|d| d.as_secs())
        .collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn jitter_stays_within_its_band() {
        for _ in 0..200 {
            for (delay, nominal) in erp().build().zip([2.0, 4.0, 8.0, 16.0, 32.0]) {
                let secs = delay.as_secs_f64();
                assert!(
                    (nominal * 0.8..=nominal * 1.2).contains(&secs),
                    "{secs} for {nominal}"
                );
            }
        }
    }

    #[test]
    fn waiting_budget_ends_retries_early() {
        let policy = RetryPolicy {
            max_elapsed: Some(Duration::from_secs(10)),
            ..exact()
        };
        let delays: Vec<_> = policy.build().map(|d| d.as_secs()).collect();
        assert_eq!(delays, [2, 4], "a third wait of 8 s would pass 10 s in all");
    }

    #[tokio::test(start_paused = true)]
    async fn retryable_errors_are_retried_with_backoff() {
        let (result, elapsed) =
            run_failing(&exact(), &[Status(503, None), Status(500, None)]).await;
        assert_eq!(result.unwrap(), 3);
        assert_eq!(elapsed, Duration::from_secs(2 + 4));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_retries_with_the_attempt_count() {
        let (result, elapsed) = run_failing(&exact(), &[Status(503, None); 10]).await;
        let exhausted = result.unwrap_err();
        assert_eq!(exhausted.attempts, 6);
        assert_eq!(exhausted.error.0, 503);
        assert_eq!(elapsed, Duration::from_secs(2 + 4 + 8 + 16 + 32));
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_and_pause_errors_are_not_retried() {
        for status in [400, 422, 429] {
            let (result, elapsed) = run_failing(&exact(), &[Status(status, None)]).await;
            assert_eq!(result.unwrap_err().attempts, 1, "HTTP {status}");
            assert_eq!(elapsed, Duration::ZERO);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_replaces_the_computed_wait() {
        let (result, elapsed) =
            run_failing(&exact(), &[Status(503, Some(Duration::from_secs(30)))]).await;
        assert_eq!(result.unwrap(), 2);
        assert_eq!(elapsed, Duration::from_secs(30));
    }

    #[test]
    fn settings_that_cannot_work_are_named() {
        assert_eq!(
            RetryPolicy {
                jitter: 1.0,
                ..erp()
            }
            .validate()
            .unwrap_err()
            .setting,
            "jitter"
        );
        assert_eq!(
            RetryPolicy {
                multiplier: 0.5,
                ..erp()
            }
            .validate()
            .unwrap_err()
            .setting,
            "multiplier"
        );
        let short_cap = RetryPolicy {
            max_delay: Duration::from_secs(1),
            ..erp()
        };
        assert_eq!(short_cap.validate().unwrap_err().setting, "max_delay");
    }
}
