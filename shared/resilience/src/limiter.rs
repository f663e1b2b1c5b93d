//! Token-bucket rate limiter, one bucket per target (spreadsheet, ERP
//! database), that also honours a target's `Retry-After`.
//!
//! The buckets are governor's (GCRA, equivalent to a token bucket); time is
//! read from tokio's clock so tests pin the pace with a paused clock.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::ops::Add;
use std::sync::{Mutex, Once};
use std::time::Duration;

use governor::clock::{Clock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter as Gcra};
use tokio::time::Instant;

use crate::InvalidConfig;
use crate::metrics::{LIMITER_DEFERRALS, LIMITER_WAIT, describe};

/// Size and pace of each target's bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimiterConfig {
    /// Tokens a bucket holds: the largest burst a target gets.
    pub capacity: NonZeroU32,
    /// Tokens added per second.
    pub refill_per_second: f64,
}

impl LimiterConfig {
    fn quota(&self) -> Result<Quota, InvalidConfig> {
        let invalid = || InvalidConfig {
            setting: "refill_per_second",
            reason: format!(
                "must be a positive number of tokens per second, got {}",
                self.refill_per_second
            ),
        };
        if !(self.refill_per_second.is_finite() && self.refill_per_second > 0.0) {
            return Err(invalid());
        }
        let period =
            Duration::try_from_secs_f64(1.0 / self.refill_per_second).map_err(|_| invalid())?;
        Ok(Quota::with_period(period)
            .ok_or_else(invalid)?
            .allow_burst(self.capacity))
    }
}

/// A rate limiter with one bucket per target.
#[derive(Debug)]
pub struct RateLimiter {
    name: String,
    buckets: Gcra<String, DefaultKeyedStateStore<String>, TokioClock, NoOpMiddleware<Tick>>,
    refill_interval: Duration,
    /// Targets that asked us to wait, and until when.
    deferred: Mutex<HashMap<String, Instant>>,
}

impl RateLimiter {
    /// A limiter named `name` (the metric label and log field) with full buckets.
    pub fn new(name: impl Into<String>, config: LimiterConfig) -> Result<Self, InvalidConfig> {
        static DESCRIBE: Once = Once::new();
        DESCRIBE.call_once(describe);
        let quota = config.quota()?;
        Ok(Self {
            name: name.into(),
            refill_interval: quota.replenish_interval(),
            buckets: Gcra::new(quota, DefaultKeyedStateStore::default(), TokioClock),
            deferred: Mutex::new(HashMap::new()),
        })
    }

    /// Time between two tokens, as the buckets apply it.
    pub fn refill_interval(&self) -> Duration {
        self.refill_interval
    }

    /// Takes a token for `target` if there is one now; otherwise says how long
    /// until there may be.
    pub fn try_acquire(&self, target: &str) -> Result<(), Duration> {
        let now = Instant::now();
        if let Some(until) = self.lock_deferred().get(target)
            && *until > now
        {
            return Err(*until - now);
        }
        self.buckets
            .check_key(&target.to_owned())
            .map_err(|not_until| not_until.wait_time_from(Tick(now)))
    }

    /// Waits for a token for `target`, and returns how long that took.
    pub async fn acquire(&self, target: &str) -> Duration {
        let started = Instant::now();
        while let Err(wait) = self.try_acquire(target) {
            tokio::time::sleep(wait).await;
        }
        let waited = started.elapsed();
        metrics::histogram!(LIMITER_WAIT, "limiter" => self.name.clone(), "target" => target.to_owned())
            .record(waited.as_secs_f64());
        waited
    }

    /// `target` asked us to wait (`Retry-After`): grant it no token before
    /// then. A shorter wait never shortens a longer one already set.
    pub fn defer(&self, target: &str, retry_after: Duration) {
        let until = Instant::now() + retry_after;
        let mut deferred = self.lock_deferred();
        let entry = deferred.entry(target.to_owned()).or_insert(until);
        *entry = (*entry).max(until);
        tracing::info!(limiter = %self.name, target, ?retry_after, "target asked to wait");
        metrics::counter!(LIMITER_DEFERRALS, "limiter" => self.name.clone(), "target" => target.to_owned())
            .increment(1);
    }

    fn lock_deferred(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        // A map of deadlines stays valid across a panic elsewhere.
        self.deferred
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// governor's clock, reading tokio's (pausable) time.
#[derive(Debug, Clone, Copy)]
struct TokioClock;

impl Clock for TokioClock {
    type Instant = Tick;

    fn now(&self) -> Tick {
        Tick(Instant::now())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Tick(Instant);

impl Reference for Tick {
    fn duration_since(&self, earlier: Self) -> Nanos {
        self.0.saturating_duration_since(earlier.0).into()
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        Tick(self.0.checked_sub(duration.into()).unwrap_or(self.0))
    }
}

impl Add<Nanos> for Tick {
    type Output = Tick;

    fn add(self, duration: Nanos) -> Tick {
        Tick(self.0 + Duration::from(duration))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tokio::time::advance;

    fn limiter(capacity: u32, refill_per_second: f64) -> RateLimiter {
        let capacity = NonZeroU32::new(capacity).unwrap();
        RateLimiter::new(
            "test",
            LimiterConfig {
                capacity,
                refill_per_second,
            },
        )
        .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn full_bucket_grants_a_burst_then_the_refill_pace() {
        // The ERP sink's defaults: 50 tokens, 5 per second.
        let erp = limiter(50, 5.0);
        for _ in 0..50 {
            erp.try_acquire("db").unwrap();
        }
        assert_eq!(erp.try_acquire("db"), Err(Duration::from_millis(200)));
        assert_eq!(erp.acquire("db").await, Duration::from_millis(200));
        assert_eq!(erp.acquire("db").await, Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn targets_have_their_own_buckets() {
        let l = limiter(1, 1.0);
        l.try_acquire("sheet-a").unwrap();
        assert!(l.try_acquire("sheet-a").is_err());
        l.try_acquire("sheet-b").unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_holds_the_target_even_with_tokens_left() {
        let l = limiter(10, 10.0);
        l.defer("sheet-a", Duration::from_secs(30));
        l.defer("sheet-a", Duration::from_secs(5));
        assert_eq!(
            l.try_acquire("sheet-a"),
            Err(Duration::from_secs(30)),
            "the longer wait stands"
        );
        l.try_acquire("sheet-b").unwrap();
        assert_eq!(l.acquire("sheet-a").await, Duration::from_secs(30));
    }

    #[test]
    fn settings_that_cannot_work_are_named() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let config = LimiterConfig {
                capacity: NonZeroU32::MIN,
                refill_per_second: rate,
            };
            assert_eq!(
                RateLimiter::new("x", config).unwrap_err().setting,
                "refill_per_second"
            );
        }
    }

    proptest! {
        /// In any window of length t, at most capacity + rate × t tokens are granted.
        #[test]
        fn never_grants_more_than_capacity_plus_refill(
            capacity in 1u32..20,
            refill_per_second in 0.5f64..50.0,
            gaps_ms in proptest::collection::vec(0u64..400, 1..300),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
            let grants = runtime.block_on(async {
                let l = limiter(capacity, refill_per_second);
                let start = Instant::now();
                let mut grants = Vec::new();
                for gap in gaps_ms {
                    advance(Duration::from_millis(gap)).await;
                    // Several callers at once: a burst of tries per instant.
                    for _ in 0..3 {
                        if l.try_acquire("target").is_ok() {
                            grants.push(start.elapsed());
                        }
                    }
                }
                (grants, l.refill_interval())
            });
            let (grants, interval) = grants;
            for i in 0..grants.len() {
                for j in i..grants.len() {
                    let window = (grants[j] - grants[i]).as_secs_f64();
                    let allowed = f64::from(capacity) + window / interval.as_secs_f64();
                    prop_assert!(
                        (j - i + 1) as f64 <= allowed + 1e-9,
                        "{} grants in {window}s, allowed {allowed}", j - i + 1
                    );
                }
            }
        }
    }
}
