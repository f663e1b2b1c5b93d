//! Preparing what a service needs before it takes work (its tables, its
//! replication slot) while a dependency may still be coming up. A database
//! that restarts while the service starts delays the start instead of ending
//! the process: an exit would leave recovery to a supervisor's growing
//! restart backoff, and a person reading the logs to find that it was only
//! a restart.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use sluice_resilience::{Classified, ErrorClass, RetryPolicy};

use crate::ServiceRuntime;

/// Tries again after 0.5 s, doubling to 10 s, ± 20 %, for as long as the
/// failure is transient: how long a database takes to come back is not the
/// service's to bound (its /readyz says what it waits for meanwhile).
fn patience() -> RetryPolicy {
    RetryPolicy {
        max_retries: u32::MAX,
        initial_delay: Duration::from_millis(500),
        max_delay: Duration::from_secs(10),
        multiplier: 2.0,
        jitter: 0.2,
        max_elapsed: None,
    }
}

/// A failure with the caller's verdict on it.
struct Judged<E> {
    error: E,
    transient: bool,
}

impl<E: fmt::Display> fmt::Display for Judged<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl<E> Classified for Judged<E> {
    fn class(&self) -> ErrorClass {
        if self.transient {
            ErrorClass::Retryable
        } else {
            ErrorClass::Permanent
        }
    }
}

impl ServiceRuntime {
    /// Runs `prepare` until it succeeds, trying again (logged as `what`)
    /// after every error that `transient` accepts. Fails with the first
    /// other error; `Ok(None)` when shutdown was requested first.
    pub async fn prepare<T, E, F, Fut>(
        &self,
        what: &str,
        transient: impl Fn(&E) -> bool,
        prepare: F,
    ) -> Result<Option<T>, E>
    where
        E: fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        until_prepared(
            &patience(),
            self.shutdown_requested(),
            what,
            transient,
            prepare,
        )
        .await
    }
}

async fn until_prepared<T, E, F, Fut>(
    policy: &RetryPolicy,
    shutdown: impl Future<Output = ()>,
    what: &str,
    transient: impl Fn(&E) -> bool,
    mut prepare: F,
) -> Result<Option<T>, E>
where
    E: fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let tries = policy.run(what, || {
        let attempt = prepare();
        let transient = &transient;
        async move {
            attempt.await.map_err(|error| Judged {
                transient: transient(&error),
                error,
            })
        }
    });
    tokio::select! {
        () = shutdown => Ok(None),
        result = tries => result.map(Some).map_err(|exhausted| exhausted.error.error),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// `Err(true)` is transient, `Err(false)` is not.
    async fn run(outcomes: &[Result<u32, bool>]) -> (Result<Option<u32>, bool>, usize) {
        let calls = Cell::new(0);
        let result = until_prepared(
            &patience(),
            std::future::pending(),
            "test",
            |transient: &bool| *transient,
            || {
                let n = calls.get();
                calls.set(n + 1);
                let outcome = outcomes[n.min(outcomes.len() - 1)];
                async move { outcome }
            },
        )
        .await;
        (result, calls.get())
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_waited_out_however_many() {
        let mut outcomes = vec![Err(true); 40];
        outcomes.push(Ok(7));
        assert_eq!(run(&outcomes).await, (Ok(Some(7)), 41));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lasting_failure_ends_the_wait_with_its_error() {
        assert_eq!(
            run(&[Err(true), Err(true), Err(false)]).await,
            (Err(false), 3)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_ends_the_wait() {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let policy = patience();
        let waiting = until_prepared(
            &policy,
            async {
                let _ = stopped.await;
            },
            "test",
            |_: &&str| true,
            || async { Err::<(), _>("down") },
        );
        let stop_later = async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            let _ = stop.send(());
        };
        let (result, ()) = tokio::join!(waiting, stop_later);
        assert_eq!(result, Ok(None));
    }
}
