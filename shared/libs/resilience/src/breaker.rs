//! Circuit breaker: closed → open when calls keep failing, open → half-open
//! after a wait, half-open → closed after enough successful trial calls.
//!
//! Written here rather than taken from a crate: the sinks need a count rule
//! and a rate rule side by side, slow calls counted as failures, a bounded
//! number of concurrent trial calls, state exported as a metric on every
//! change, and time read from tokio's clock so that tests pin each timing rule
//! with a paused clock. The maintained breakers on crates.io lack some of
//! these (recloser, for one, has a rate rule only and reads the system clock).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Mutex, MutexGuard, Once};
use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::{BREAKER_STATE, BREAKER_TRANSITIONS, describe};
use crate::{Classified, ErrorClass, InvalidConfig};

/// When the breaker opens, how long it stays open, and how it closes again.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker; 0 turns this rule off.
    pub failure_threshold: u32,
    /// Failure rate over recent calls that opens the breaker; `None` turns
    /// this rule off.
    pub failure_rate: Option<FailureRate>,
    /// A call that takes at least this long counts as a failure, even when it
    /// succeeds: a dependency that slow is not healthy.
    pub slow_call: Option<Duration>,
    /// How long the breaker stays open before it lets trial calls through.
    pub open_wait: Duration,
    /// Trial calls let through at once while half-open.
    pub half_open_permits: u32,
    /// Consecutive successful trial calls that close the breaker.
    pub success_threshold: u32,
}

/// The rate rule: open when at least `threshold` of the last `window` calls
/// failed, once `minimum_calls` calls were seen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailureRate {
    /// Fraction of failed calls, in (0, 1].
    pub threshold: f64,
    /// How many recent calls the rate is taken over.
    pub window: u32,
    /// Calls needed before the rate is judged at all.
    pub minimum_calls: u32,
}

impl BreakerConfig {
    /// Checks that the settings can work together.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let invalid = |setting, reason: &str| InvalidConfig {
            setting,
            reason: reason.to_owned(),
        };
        if self.failure_threshold == 0 && self.failure_rate.is_none() {
            return Err(invalid(
                "failure_threshold",
                "is 0 and no failure rate is set: the breaker could never open",
            ));
        }
        if let Some(rate) = self.failure_rate {
            if !(rate.threshold > 0.0 && rate.threshold <= 1.0) {
                return Err(invalid("failure_rate.threshold", "must be in (0, 1]"));
            }
            if rate.window == 0 || rate.minimum_calls == 0 || rate.minimum_calls > rate.window {
                return Err(invalid(
                    "failure_rate.minimum_calls",
                    "must be between 1 and failure_rate.window",
                ));
            }
        }
        if self.half_open_permits == 0 {
            return Err(invalid("half_open_permits", "must be at least 1"));
        }
        if self.success_threshold == 0 {
            return Err(invalid("success_threshold", "must be at least 1"));
        }
        if self.open_wait.is_zero() {
            return Err(invalid("open_wait", "must be longer than zero"));
        }
        Ok(())
    }
}

/// The breaker's state, as exported: 0 closed, 1 half-open, 2 open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; outcomes are counted.
    Closed = 0,
    /// A few trial calls go through to test the dependency.
    HalfOpen = 1,
    /// Calls are refused until the wait is over.
    Open = 2,
}

/// A call refused by an open breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker is open{}", retry_in.map(|d| format!("; trial calls in {d:?}")).unwrap_or_default())]
pub struct Rejected {
    /// When trial calls will be let through, if known (while half-open the
    /// trial calls in flight decide it).
    pub retry_in: Option<Duration>,
}

/// Either the breaker refused the call, or the call failed.
#[derive(Debug, thiserror::Error)]
pub enum BreakerError<E> {
    /// Refused without calling.
    #[error(transparent)]
    Rejected(Rejected),
    /// Called, and it failed.
    #[error(transparent)]
    Call(E),
}

impl<E: Classified> Classified for BreakerError<E> {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Rejected(_) => ErrorClass::Pause,
            Self::Call(err) => err.class(),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Rejected(rejected) => rejected.retry_in,
            Self::Call(err) => err.retry_after(),
        }
    }
}

#[derive(Debug)]
enum State {
    Closed {
        consecutive_failures: u32,
        /// Recent outcomes, true for a failure; as long as the rate window.
        recent: VecDeque<bool>,
    },
    Open {
        until: Instant,
    },
    HalfOpen {
        in_flight: u32,
        successes: u32,
    },
}

#[derive(Debug)]
struct Inner {
    state: State,
    /// Bumped on every transition, so outcomes of calls let through in an
    /// earlier state are not held against the current one.
    generation: u64,
}

/// A circuit breaker guarding one dependency.
#[derive(Debug)]
pub struct CircuitBreaker {
    name: String,
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

/// Leave to make one call; report how it went with [`Permit::success`] or
/// [`Permit::failure`]. Dropped unreported (the call was cancelled), it only
/// frees its trial slot.
#[derive(Debug)]
#[must_use = "report the call's outcome, or the breaker learns nothing"]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    generation: u64,
    started: Instant,
    trial: bool,
    reported: bool,
}

impl Permit<'_> {
    /// The call succeeded (or was refused for its input: the dependency works).
    pub fn success(mut self) {
        self.reported = true;
        let slow = self
            .breaker
            .config
            .slow_call
            .is_some_and(|slow| self.started.elapsed() >= slow);
        self.breaker.record(
            self.generation,
            self.trial,
            if slow {
                Outcome::Failure
            } else {
                Outcome::Success
            },
        );
    }

    /// The call failed in a way that says the dependency is unwell.
    pub fn failure(mut self) {
        self.reported = true;
        self.breaker
            .record(self.generation, self.trial, Outcome::Failure);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.reported {
            self.breaker
                .record(self.generation, self.trial, Outcome::Cancelled);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Failure,
    Cancelled,
}

impl CircuitBreaker {
    /// A closed breaker named `name` (the metric label and log field).
    pub fn new(name: impl Into<String>, config: BreakerConfig) -> Result<Self, InvalidConfig> {
        static DESCRIBE: Once = Once::new();
        DESCRIBE.call_once(describe);
        config.validate()?;
        let breaker = Self {
            name: name.into(),
            inner: Mutex::new(Inner {
                state: closed(&config),
                generation: 0,
            }),
            config,
        };
        breaker.export(BreakerState::Closed);
        // Transitions at zero from the start: a counter first scraped at 1
        // shows no increase, and the first opening went unseen.
        for to in [
            BreakerState::Closed,
            BreakerState::HalfOpen,
            BreakerState::Open,
        ] {
            breaker.transitions(to).increment(0);
        }
        Ok(breaker)
    }

    /// The state now (an open breaker whose wait is over reads half-open).
    pub fn state(&self) -> BreakerState {
        let mut inner = self.lock();
        self.expire_open(&mut inner);
        state_of(&inner.state)
    }

    /// Asks to make one call.
    pub fn try_acquire(&self) -> Result<Permit<'_>, Rejected> {
        let mut inner = self.lock();
        self.expire_open(&mut inner);
        let trial = match &mut inner.state {
            State::Closed { .. } => false,
            State::Open { until } => {
                return Err(Rejected {
                    retry_in: Some(until.saturating_duration_since(Instant::now())),
                });
            }
            State::HalfOpen { in_flight, .. } if *in_flight >= self.config.half_open_permits => {
                return Err(Rejected { retry_in: None });
            }
            State::HalfOpen { in_flight, .. } => {
                *in_flight += 1;
                true
            }
        };
        Ok(Permit {
            breaker: self,
            generation: inner.generation,
            started: Instant::now(),
            trial,
            reported: false,
        })
    }

    /// Runs `call` through the breaker. Retryable errors count as failures;
    /// permanent ones as successes (the dependency answered); pauses as
    /// neither.
    pub async fn call<T, E, F>(&self, call: F) -> Result<T, BreakerError<E>>
    where
        E: Classified,
        F: Future<Output = Result<T, E>>,
    {
        let permit = self.try_acquire().map_err(BreakerError::Rejected)?;
        let result = call.await;
        match &result {
            Ok(_) => permit.success(),
            Err(err) => match err.class() {
                ErrorClass::Retryable => permit.failure(),
                ErrorClass::Permanent => permit.success(),
                ErrorClass::Pause => drop(permit),
            },
        }
        result.map_err(BreakerError::Call)
    }

    fn record(&self, generation: u64, trial: bool, outcome: Outcome) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        let next = match &mut inner.state {
            State::Closed {
                consecutive_failures,
                recent,
            } => {
                if outcome == Outcome::Cancelled {
                    return;
                }
                let failed = outcome == Outcome::Failure;
                *consecutive_failures = if failed { *consecutive_failures + 1 } else { 0 };
                let by_count = self.config.failure_threshold > 0
                    && *consecutive_failures >= self.config.failure_threshold;
                let by_rate = self.config.failure_rate.is_some_and(|rate| {
                    recent.push_back(failed);
                    while recent.len() > rate.window as usize {
                        recent.pop_front();
                    }
                    let failures = recent.iter().filter(|f| **f).count();
                    recent.len() >= rate.minimum_calls as usize
                        && failures as f64 >= rate.threshold * recent.len() as f64
                });
                (by_count || by_rate).then(|| self.open_state())
            }
            State::HalfOpen {
                in_flight,
                successes,
            } => {
                if trial {
                    *in_flight = in_flight.saturating_sub(1);
                }
                match outcome {
                    Outcome::Failure => Some(self.open_state()),
                    Outcome::Success => {
                        *successes += 1;
                        (*successes >= self.config.success_threshold).then(|| closed(&self.config))
                    }
                    Outcome::Cancelled => None,
                }
            }
            State::Open { .. } => None,
        };
        if let Some(next) = next {
            self.transition(&mut inner, next);
        }
    }

    /// Open turns half-open once its wait is over; checked whenever the
    /// breaker is asked, so no timer task is needed.
    fn expire_open(&self, inner: &mut Inner) {
        if let State::Open { until } = inner.state
            && Instant::now() >= until
        {
            self.transition(
                inner,
                State::HalfOpen {
                    in_flight: 0,
                    successes: 0,
                },
            );
        }
    }

    fn open_state(&self) -> State {
        State::Open {
            until: Instant::now() + self.config.open_wait,
        }
    }

    fn transition(&self, inner: &mut Inner, next: State) {
        let from = state_of(&inner.state);
        let to = state_of(&next);
        inner.state = next;
        inner.generation += 1;
        match to {
            BreakerState::Open => {
                tracing::warn!(breaker = %self.name, ?from, open_wait = ?self.config.open_wait, "circuit breaker opened")
            }
            _ => tracing::info!(breaker = %self.name, ?from, ?to, "circuit breaker state changed"),
        }
        self.export(to);
        self.transitions(to).increment(1);
    }

    fn transitions(&self, to: BreakerState) -> metrics::Counter {
        let label = match to {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Open => "open",
        };
        metrics::counter!(BREAKER_TRANSITIONS, "breaker" => self.name.clone(), "to" => label)
    }

    fn export(&self, state: BreakerState) {
        metrics::gauge!(BREAKER_STATE, "breaker" => self.name.clone()).set(state as u8 as f64);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The state stays consistent across a panic elsewhere: keep using it.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn closed(config: &BreakerConfig) -> State {
    let window = config.failure_rate.map_or(0, |rate| rate.window as usize);
    State::Closed {
        consecutive_failures: 0,
        recent: VecDeque::with_capacity(window),
    }
}

fn state_of(state: &State) -> BreakerState {
    match state {
        State::Closed { .. } => BreakerState::Closed,
        State::HalfOpen { .. } => BreakerState::HalfOpen,
        State::Open { .. } => BreakerState::Open,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::Status;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use tokio::time::advance;

    const WAIT: Duration = Duration::from_secs(120);

    /// The ERP sink's defaults: 3 failures open it, 2 successes close it.
    fn erp_like() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 3,
            failure_rate: None,
            slow_call: None,
            open_wait: WAIT,
            half_open_permits: 1,
            success_threshold: 2,
        }
    }

    fn breaker(config: BreakerConfig) -> CircuitBreaker {
        CircuitBreaker::new("test", config).unwrap()
    }

    fn fail(breaker: &CircuitBreaker, times: usize) {
        for _ in 0..times {
            breaker.try_acquire().unwrap().failure();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_only() {
        let b = breaker(erp_like());
        fail(&b, 2);
        b.try_acquire().unwrap().success();
        fail(&b, 2);
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "a success resets the count"
        );
        fail(&b, 1);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(
            b.try_acquire().unwrap_err(),
            Rejected {
                retry_in: Some(WAIT)
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn open_lets_trial_calls_through_exactly_after_the_wait() {
        let b = breaker(erp_like());
        fail(&b, 3);
        advance(WAIT - Duration::from_millis(1)).await;
        assert_eq!(
            b.try_acquire().unwrap_err().retry_in,
            Some(Duration::from_millis(1))
        );
        advance(Duration::from_millis(1)).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let trial = b.try_acquire().unwrap();
        assert_eq!(
            b.try_acquire().unwrap_err(),
            Rejected { retry_in: None },
            "one trial call at a time"
        );
        trial.success();
        b.try_acquire().unwrap().success();
        assert_eq!(b.state(), BreakerState::Closed, "two successes close it");
    }

    #[tokio::test(start_paused = true)]
    async fn failed_trial_reopens_and_restarts_the_wait() {
        let b = breaker(erp_like());
        fail(&b, 3);
        advance(WAIT).await;
        b.try_acquire().unwrap().success();
        b.try_acquire().unwrap().failure();
        assert_eq!(b.state(), BreakerState::Open);
        advance(WAIT - Duration::from_millis(1)).await;
        assert_eq!(b.state(), BreakerState::Open);
        advance(Duration::from_millis(1)).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_trial_frees_its_slot() {
        let b = breaker(erp_like());
        fail(&b, 3);
        advance(WAIT).await;
        drop(b.try_acquire().unwrap());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.try_acquire().unwrap().success();
    }

    #[tokio::test(start_paused = true)]
    async fn rate_rule_waits_for_minimum_calls_then_judges_the_window() {
        let b = breaker(BreakerConfig {
            failure_threshold: 0,
            failure_rate: Some(FailureRate {
                threshold: 0.5,
                window: 4,
                minimum_calls: 4,
            }),
            ..erp_like()
        });
        fail(&b, 2);
        b.try_acquire().unwrap().success();
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "3 calls: below minimum_calls"
        );
        b.try_acquire().unwrap().success();
        assert_eq!(b.state(), BreakerState::Open, "2 of 4 failed: 50 %");
    }

    #[tokio::test(start_paused = true)]
    async fn rate_rule_forgets_calls_outside_the_window() {
        let b = breaker(BreakerConfig {
            failure_threshold: 0,
            failure_rate: Some(FailureRate {
                threshold: 0.75,
                window: 4,
                minimum_calls: 4,
            }),
            ..erp_like()
        });
        fail(&b, 2);
        for _ in 0..4 {
            b.try_acquire().unwrap().success();
        }
        fail(&b, 2);
        assert_eq!(b.state(), BreakerState::Closed, "2 of the last 4 failed");
        fail(&b, 1);
        assert_eq!(b.state(), BreakerState::Open, "3 of the last 4 failed");
    }

    #[tokio::test(start_paused = true)]
    async fn slow_success_counts_as_failure() {
        let b = breaker(BreakerConfig {
            slow_call: Some(Duration::from_secs(5)),
            ..erp_like()
        });
        for _ in 0..3 {
            let permit = b.try_acquire().unwrap();
            advance(Duration::from_secs(5)).await;
            permit.success();
        }
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn outcome_of_a_call_from_before_opening_is_ignored() {
        let b = breaker(erp_like());
        let late = b.try_acquire().unwrap();
        fail(&b, 3);
        advance(WAIT).await;
        let trial = b.try_acquire().unwrap();
        late.failure();
        assert_eq!(
            b.state(),
            BreakerState::HalfOpen,
            "the late failure belongs to the closed period"
        );
        trial.success();
    }

    #[tokio::test(start_paused = true)]
    async fn call_counts_only_retryable_errors_as_failures() {
        let b = breaker(erp_like());
        for status in [400, 404, 422, 429, 429, 429] {
            assert!(matches!(
                b.call(async { Err::<(), _>(Status(status, None)) }).await,
                Err(BreakerError::Call(_))
            ));
        }
        assert_eq!(b.state(), BreakerState::Closed);
        for _ in 0..3 {
            let _ = b.call(async { Err::<(), _>(Status(503, None)) }).await;
        }
        let refused = b.call(async { Ok::<_, Status>(()) }).await.unwrap_err();
        assert_eq!(refused.class(), ErrorClass::Pause);
        assert_eq!(refused.retry_after(), Some(WAIT));
    }

    #[test]
    fn every_transition_is_exported_at_zero_from_the_start() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            CircuitBreaker::new("erp", erp_like()).unwrap();
        });
        let mut transitions: Vec<(String, DebugValue)> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, ..)| key.key().name() == BREAKER_TRANSITIONS)
            .map(|(key, _, _, value)| {
                let to = key
                    .key()
                    .labels()
                    .find(|l| l.key() == "to")
                    .map(|l| l.value().to_owned());
                (to.unwrap_or_default(), value)
            })
            .collect();
        transitions.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            transitions,
            [
                ("closed".to_owned(), DebugValue::Counter(0)),
                ("half_open".to_owned(), DebugValue::Counter(0)),
                ("open".to_owned(), DebugValue::Counter(0)),
            ]
        );
    }

    #[test]
    fn state_is_exported_on_every_change() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let b = CircuitBreaker::new("erp", erp_like()).unwrap();
            fail(&b, 3);
        });
        let gauge = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .find(|(key, ..)| key.key().name() == BREAKER_STATE)
            .map(|(key, _, _, value)| {
                (
                    key.key()
                        .labels()
                        .map(|l| l.value().to_owned())
                        .collect::<Vec<_>>(),
                    value,
                )
            });
        assert_eq!(
            gauge,
            Some((vec!["erp".to_owned()], DebugValue::Gauge(2.0.into())))
        );
    }

    #[test]
    fn settings_that_cannot_work_are_named() {
        let bad_rate = FailureRate {
            threshold: 1.5,
            window: 10,
            minimum_calls: 5,
        };
        for (config, setting) in [
            (
                BreakerConfig {
                    failure_threshold: 0,
                    ..erp_like()
                },
                "failure_threshold",
            ),
            (
                BreakerConfig {
                    half_open_permits: 0,
                    ..erp_like()
                },
                "half_open_permits",
            ),
            (
                BreakerConfig {
                    failure_rate: Some(bad_rate),
                    ..erp_like()
                },
                "failure_rate.threshold",
            ),
        ] {
            assert_eq!(config.validate().unwrap_err().setting, setting);
        }
    }
}
