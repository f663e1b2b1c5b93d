//! Token-bucket rate limiter, one bucket per target (spreadsheet, ERP
//! database), that also honours a target's `Retry-After`.
//!
//! Each bucket is the GCRA form of a token bucket: a target's theoretical
//! arrival time (`tat`) moves one refill interval per grant, and a request
//! conforms when it is no earlier than `tat` minus the burst tolerance.
//! Written here rather than taken from governor because a waiting caller
//! *reserves* its slot before it sleeps: a timer that wakes a millisecond
//! late (tokio's timer has millisecond ticks) then delays that one request,
//! not every later one. governor grants from the wake-up time, so with a
//! burst of 1 each late wake-up is lost for good: 50/s came out at 47.4/s.
//! Time is tokio's, so tests pin the pace with a paused clock.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Mutex, MutexGuard, Once};
use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::{LIMITER_DEFERRALS, LIMITER_SHARE, LIMITER_WAIT, describe};
use crate::{InvalidConfig, MAX_RETRY_AFTER};

/// Size and pace of each target's bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimiterConfig {
    /// Tokens a bucket holds: the largest burst a target gets.
    pub capacity: NonZeroU32,
    /// Tokens added per second.
    pub refill_per_second: f64,
}

impl LimiterConfig {
    /// `per_second` tokens a second with a burst of twice that, so a
    /// client's bursts pass (at least one token).
    pub fn rate_with_burst(per_second: f64) -> Self {
        Self {
            capacity: NonZeroU32::new((per_second * 2.0).ceil().clamp(1.0, 1e9) as u32)
                .unwrap_or(NonZeroU32::MIN),
            refill_per_second: per_second,
        }
    }

    /// The refill interval and the burst tolerance (capacity − 1 intervals).
    fn schedule(&self) -> Result<(Duration, Duration), InvalidConfig> {
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
        let interval =
            Duration::try_from_secs_f64(1.0 / self.refill_per_second).map_err(|_| invalid())?;
        if interval.is_zero() {
            return Err(invalid());
        }
        let tolerance = interval
            .checked_mul(self.capacity.get() - 1)
            .ok_or_else(invalid)?;
        Ok((interval, tolerance))
    }
}

/// Per target: when its next request is due, and until when it asked us to
/// wait; and the pace of the share in force.
#[derive(Debug)]
struct Targets {
    due: HashMap<String, Instant>,
    deferred: HashMap<String, Instant>,
    /// Time between two tokens.
    interval: Duration,
    /// How far ahead of its due time a request may go (the burst).
    tolerance: Duration,
}

/// A rate limiter with one bucket per target.
#[derive(Debug)]
pub struct RateLimiter {
    name: String,
    /// The whole rate, before any share.
    config: LimiterConfig,
    /// The longest a target's `Retry-After` may hold it.
    max_wait: Duration,
    targets: Mutex<Targets>,
}

impl RateLimiter {
    /// A limiter named `name` (the metric label and log field) with full buckets.
    pub fn new(name: impl Into<String>, config: LimiterConfig) -> Result<Self, InvalidConfig> {
        static DESCRIBE: Once = Once::new();
        DESCRIBE.call_once(describe);
        let (interval, tolerance) = config.schedule()?;
        Ok(Self {
            name: name.into(),
            config,
            max_wait: MAX_RETRY_AFTER,
            targets: Mutex::new(Targets {
                due: HashMap::new(),
                deferred: HashMap::new(),
                interval,
                tolerance,
            }),
        })
    }

    /// Holds a target at most `max_wait` whatever `Retry-After` it sends
    /// (default [`MAX_RETRY_AFTER`]).
    #[must_use]
    pub fn with_max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// The longest a target's `Retry-After` may hold it: what a client
    /// passes to [`retry_after`](crate::retry_after).
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }

    /// Time between two tokens.
    pub fn refill_interval(&self) -> Duration {
        self.lock().interval
    }

    /// Paces to `share` (in (0, 1]) of the configured rate and burst (at
    /// least one token): the part of a quota that replicas share which is
    /// this one's, such as the fraction of the partitions it owns.
    pub fn set_share(&self, share: f64) {
        let share = if share.is_finite() {
            share.clamp(1e-3, 1.0)
        } else {
            1.0
        };
        let capacity = (f64::from(self.config.capacity.get()) * share).floor();
        let shared = LimiterConfig {
            capacity: NonZeroU32::new(capacity.clamp(1.0, f64::from(u32::MAX)) as u32)
                .unwrap_or(NonZeroU32::MIN),
            refill_per_second: self.config.refill_per_second * share,
        };
        // The whole rate was valid: a positive fraction of it is too.
        let Ok((interval, tolerance)) = shared.schedule() else {
            return;
        };
        let mut targets = self.lock();
        // Slots reserved at the old pace move to the new one: a reservation
        // made at a tiny share would hold its target for minutes after.
        let ratio = interval.as_secs_f64() / targets.interval.as_secs_f64();
        let now = Instant::now();
        for due in targets.due.values_mut() {
            if *due > now {
                *due = now + (*due - now).mul_f64(ratio);
            }
        }
        targets.interval = interval;
        targets.tolerance = tolerance;
        metrics::gauge!(LIMITER_SHARE, "limiter" => self.name.clone()).set(share);
    }

    /// Takes a token for `target` if there is one now; otherwise says how long
    /// until there may be.
    pub fn try_acquire(&self, target: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let at = self.earliest(&mut self.lock(), target, now);
        if at > now {
            return Err(at - now);
        }
        self.take(&mut self.lock(), target, now);
        Ok(())
    }

    /// Waits for a token for `target`, and returns how long that took. The
    /// token is reserved before the wait, so callers are served in turn and
    /// a late wake-up does not push back the ones after it. A token in the
    /// bucket is granted without a timer: a sleep until now still waits for
    /// tokio's next millisecond tick (1.6 ms a call, measured in erp-sink on
    /// busy cores).
    pub async fn acquire(&self, target: &str) -> Duration {
        let started = Instant::now();
        loop {
            let (at, now) = {
                let mut targets = self.lock();
                let now = Instant::now();
                let at = self.earliest(&mut targets, target, now);
                self.take(&mut targets, target, at);
                (at, now)
            };
            if at <= now {
                break;
            }
            tokio::time::sleep_until(at).await;
            // A Retry-After that came during the wait moves this request past it.
            let deferred = self.lock().deferred.get(target).copied();
            if deferred.is_none_or(|until| until <= Instant::now()) {
                break;
            }
        }
        let waited = started.elapsed();
        metrics::histogram!(LIMITER_WAIT, "limiter" => self.name.clone(), "target" => target.to_owned())
            .record(waited.as_secs_f64());
        waited
    }

    /// `target` asked us to wait (`Retry-After`): grant it no token before
    /// then. A shorter wait never shortens a longer one already set.
    pub fn defer(&self, target: &str, retry_after: Duration) {
        // A remote's answer bounds nothing: an absurd wait would overflow
        // the clock, and one of hours would hold the target for hours.
        let retry_after = retry_after.min(self.max_wait);
        let until = Instant::now() + retry_after;
        {
            let mut targets = self.lock();
            let entry = targets.deferred.entry(target.to_owned()).or_insert(until);
            *entry = (*entry).max(until);
        }
        tracing::info!(limiter = %self.name, target, ?retry_after, "target asked to wait");
        metrics::counter!(LIMITER_DEFERRALS, "limiter" => self.name.clone(), "target" => target.to_owned())
            .increment(1);
    }

    /// The first instant from `now` at which `target` may send: when its
    /// bucket has a token and any `Retry-After` has passed.
    fn earliest(&self, targets: &mut Targets, target: &str, now: Instant) -> Instant {
        let due = targets.due.get(target).copied().unwrap_or(now);
        let conforming = due.checked_sub(targets.tolerance).unwrap_or(now).max(now);
        match targets.deferred.get(target) {
            Some(&until) if until > conforming => until,
            _ => conforming,
        }
    }

    /// Spends `target`'s token for a request sent at `at`.
    fn take(&self, targets: &mut Targets, target: &str, at: Instant) {
        let interval = targets.interval;
        let due = targets.due.entry(target.to_owned()).or_insert(at);
        *due = (*due).max(at) + interval;
    }

    fn lock(&self) -> MutexGuard<'_, Targets> {
        // Deadlines stay valid across a panic elsewhere.
        self.targets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tokio::time::advance;

    #[test]
    fn a_rate_bursts_two_seconds_worth_and_at_least_one() {
        let burst = |rate| LimiterConfig::rate_with_burst(rate).capacity.get();
        assert_eq!((burst(200.0), burst(2.5), burst(0.2)), (400, 5, 1));
        assert_eq!(LimiterConfig::rate_with_burst(0.2).refill_per_second, 0.2);
    }

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

    /// A remote may answer any Retry-After: a target is held at most
    /// MAX_RETRY_AFTER, and an absurd wait neither panics nor holds it forever.
    #[tokio::test(start_paused = true)]
    async fn an_absurd_retry_after_holds_the_target_for_the_bound_only() {
        let sheets = limiter(1, 1.0);
        sheets.defer("account", Duration::MAX);
        sheets.defer("account", Duration::from_secs(u64::MAX / 2));
        assert_eq!(sheets.try_acquire("account"), Err(MAX_RETRY_AFTER));
        assert_eq!(sheets.acquire("account").await, MAX_RETRY_AFTER);
    }

    /// The bound is the operator's: a remote that asks for a day is heard
    /// for the configured minute.
    #[tokio::test(start_paused = true)]
    async fn the_bound_on_a_retry_after_is_configurable() {
        let erp = limiter(1, 1.0).with_max_wait(Duration::from_secs(60));
        assert_eq!(erp.max_wait(), Duration::from_secs(60));
        erp.defer("db", Duration::from_secs(86_400));
        assert_eq!(erp.acquire("db").await, Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_share_paces_to_its_part_of_the_rate_and_burst() {
        let erp = limiter(50, 6.0);
        erp.set_share(1.0 / 3.0);
        // 16 of the 50 tokens, then one every half second (2 of 6 a second).
        for _ in 0..16 {
            erp.try_acquire("db").unwrap();
        }
        assert_eq!(erp.try_acquire("db"), Err(Duration::from_millis(500)));
        assert_eq!(erp.acquire("db").await, Duration::from_millis(500));
        erp.set_share(1.0);
        assert_eq!(erp.refill_interval(), Duration::from_nanos(166_666_667));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_reserved_at_a_small_share_moves_with_the_next_one() {
        let erp = limiter(1, 10.0);
        erp.try_acquire("db").unwrap();
        erp.set_share(0.001);
        // Reserved now, at one token per 100 s.
        assert_eq!(erp.try_acquire("db"), Err(Duration::from_secs(100)));
        erp.set_share(1.0);
        assert_eq!(erp.acquire("db").await, Duration::from_millis(100));
    }

    /// A token in the bucket is granted at once, with no timer between:
    /// tokio's timer rounds a sleep up to its next millisecond tick, and on
    /// busy cores the tick comes later still (erp-sink in the saga
    /// benchmark waited 1.6 ms a call at a fifth of its rate).
    #[tokio::test]
    async fn a_token_in_the_bucket_is_granted_without_a_timer() {
        let erp = limiter(50, 5_000.0);
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        for n in 0..50 {
            let mut acquire = std::pin::pin!(erp.acquire("db"));
            assert!(
                acquire.as_mut().poll(&mut context).is_ready(),
                "token {n} waited"
            );
        }
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
    async fn late_wake_ups_do_not_slow_the_pace() {
        // 50/s, burst 1, three callers (as three partitions wait on one
        // database), and a clock that moves only in 21 ms steps: every
        // wake-up is late, as with tokio's millisecond timer.
        let l = std::sync::Arc::new(limiter(1, 50.0));
        let granted = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let (l, granted) = (l.clone(), granted.clone());
                tokio::spawn(async move {
                    loop {
                        l.acquire("db").await;
                        granted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                })
            })
            .collect();
        tokio::task::yield_now().await;
        for _ in 0..100 {
            advance(Duration::from_millis(21)).await;
        }
        waiters.iter().for_each(tokio::task::JoinHandle::abort);
        // 2.1 s at 50/s: 105 tokens after the first. Granting from each
        // late wake-up would give one per 21 ms step, 101 in all.
        let granted = granted.load(std::sync::atomic::Ordering::SeqCst);
        assert!(granted >= 104, "{granted} tokens in 2.1 s at 50/s");
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
