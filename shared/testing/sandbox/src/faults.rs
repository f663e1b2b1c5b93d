//! Faults injected on demand, per API: random 5xx, 429 bursts with
//! Retry-After, latency, an outage window, a per-minute quota, a value
//! that makes a write invalid, one that fails it as a server error every
//! time, and error bodies that never end.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What an API should do wrong; all off by default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Probability per request of each status (500, 503, ...).
    #[serde(default)]
    pub error_rates: BTreeMap<u16, f64>,
    /// The next this many requests get 429 with `retry_after_secs`.
    #[serde(default)]
    pub burst_429: u32,
    /// Retry-After of the burst's 429s.
    #[serde(default = "one")]
    pub retry_after_secs: u64,
    /// The burst's 429s come without Retry-After, as Google's do: the client
    /// must back off on its own.
    #[serde(default)]
    pub bare_429: bool,
    /// Every request gets 403 PERMISSION_DENIED for this long from when the
    /// faults are set: the sheet is not shared with the account (or the API
    /// is disabled for its project).
    #[serde(default)]
    pub denied_secs: u64,
    /// Added to every request.
    #[serde(default)]
    pub latency_ms: u64,
    /// Added to every write before it is applied (a write waiting on a
    /// lock): a client that stops waiting first does not stop the write.
    #[serde(default)]
    pub write_latency_ms: u64,
    /// Every request gets 503 for this long from when the faults are set.
    #[serde(default)]
    pub outage_secs: u64,
    /// Write requests allowed in any 60 s; beyond, 429 (like Sheets' quotas).
    #[serde(default)]
    pub quota_per_minute: Option<u32>,
    /// Every call of this model method (`action_confirm`) is refused with
    /// Odoo's UserError, as a sale order whose product has no procurement
    /// rule is: after its create went through.
    #[serde(default)]
    pub refuse_method: Option<String>,
    /// A write holding this value (a cell, a field) is refused as invalid.
    #[serde(default)]
    pub reject_value: Option<String>,
    /// A write holding this value fails every time as the server's own
    /// transient error (Sheets a 500 INTERNAL, Odoo a serialization failure
    /// after its own retries): poison that looks like an outage, while every
    /// other write is served.
    #[serde(default)]
    pub fail_value: Option<String>,
    /// The refusals of `reject_value` and `fail_value` carry messages this
    /// long (a validation error listing every record it found, a proxy's
    /// page): what a client takes from an answer must be cut to size.
    #[serde(default)]
    pub error_message_bytes: Option<usize>,
    /// The injected failures' bodies never end (a proxy streaming a page
    /// that does not stop, 16 KiB every 10 ms): a client must stop reading
    /// an error by its size, not wait for its timeout.
    #[serde(default)]
    pub endless_error_body: bool,
}

/// Why a write is refused for a value it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The value is invalid: a permanent refusal of this input.
    Invalid,
    /// The server fails on it, with an error that says "try again".
    ServerError,
}

fn one() -> u64 {
    1
}

/// What happens to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Served.
    Serve,
    /// Answered with this status (and Retry-After for 429s).
    Fail {
        /// HTTP status.
        status: u16,
        /// Seconds to wait, for 429 and 503.
        retry_after: Option<u64>,
        /// Why, for the request log.
        reason: &'static str,
    },
}

/// Faults of one API and the counters they need.
#[derive(Debug, Default)]
pub struct FaultState {
    faults: Faults,
    /// Sandbox clock (ms) when the outage ends.
    outage_until_ms: i64,
    /// Sandbox clock (ms) when access is granted again.
    denied_until_ms: i64,
    burst_left: u32,
    /// Times (ms) of the writes in the last minute.
    writes: VecDeque<i64>,
}

impl FaultState {
    /// Replaces the faults; the outage window and burst start now.
    pub fn set(&mut self, faults: Faults, now_ms: i64) {
        let outage_ms = i64::try_from(faults.outage_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        self.outage_until_ms = now_ms.saturating_add(outage_ms);
        let denied_ms = i64::try_from(faults.denied_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        self.denied_until_ms = now_ms.saturating_add(denied_ms);
        self.burst_left = faults.burst_429;
        self.faults = faults;
    }

    /// The faults as set.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Added latency, for a write or a read.
    pub fn latency(&self, write: bool) -> Duration {
        let extra = if write {
            self.faults.write_latency_ms
        } else {
            0
        };
        Duration::from_millis(self.faults.latency_ms + extra)
    }

    /// Decides one request's fate; `roll` is uniform in [0, 1).
    pub fn judge(&mut self, now_ms: i64, write: bool, roll: f64) -> Verdict {
        if now_ms < self.outage_until_ms {
            let left = (self.outage_until_ms - now_ms + 999) / 1000;
            return Verdict::Fail {
                status: 503,
                retry_after: Some(u64::try_from(left).unwrap_or(1)),
                reason: "outage",
            };
        }
        if now_ms < self.denied_until_ms {
            return Verdict::Fail {
                status: 403,
                retry_after: None,
                reason: "not shared",
            };
        }
        if self.burst_left > 0 {
            self.burst_left -= 1;
            return Verdict::Fail {
                status: 429,
                retry_after: (!self.faults.bare_429).then_some(self.faults.retry_after_secs),
                reason: "429 burst",
            };
        }
        if write && let Some(quota) = self.faults.quota_per_minute {
            while self.writes.front().is_some_and(|&at| at <= now_ms - 60_000) {
                self.writes.pop_front();
            }
            if self.writes.len() >= usize::try_from(quota).unwrap_or(usize::MAX) {
                let oldest = self.writes.front().copied().unwrap_or(now_ms);
                let wait = (oldest + 60_000 - now_ms + 999) / 1000;
                return Verdict::Fail {
                    status: 429,
                    retry_after: Some(u64::try_from(wait).unwrap_or(1)),
                    reason: "quota",
                };
            }
            self.writes.push_back(now_ms);
        }
        let mut threshold = 0.0;
        for (&status, &rate) in &self.faults.error_rates {
            threshold += rate;
            if roll < threshold {
                return Verdict::Fail {
                    status,
                    retry_after: None,
                    reason: "error rate",
                };
            }
        }
        Verdict::Serve
    }

    /// `message`, padded to `error_message_bytes` if that is set.
    pub fn message(&self, message: String) -> String {
        match self.faults.error_message_bytes {
            Some(bytes) if bytes > message.len() => {
                let padding = " (and again)".repeat((bytes - message.len()) / 12 + 1);
                format!("{message}{padding}")
            }
            _ => message,
        }
    }

    /// Whether calls of model method `method` are refused.
    pub fn refuses_method(&self, method: &str) -> bool {
        self.faults.refuse_method.as_deref() == Some(method)
    }

    /// How a write holding `value` is refused, if it is.
    pub fn refuses(&self, value: &str) -> Option<Refusal> {
        if self.faults.reject_value.as_deref() == Some(value) {
            Some(Refusal::Invalid)
        } else if self.faults.fail_value.as_deref() == Some(value) {
            Some(Refusal::ServerError)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(faults: Faults) -> FaultState {
        let mut state = FaultState::default();
        state.set(faults, 1_000_000);
        state
    }

    #[test]
    fn an_outage_answers_503_until_it_ends() {
        let mut s = state(Faults {
            outage_secs: 30,
            ..Faults::default()
        });
        assert_eq!(
            s.judge(1_000_500, false, 0.9),
            Verdict::Fail {
                status: 503,
                retry_after: Some(30),
                reason: "outage"
            }
        );
        assert_eq!(s.judge(1_030_000, false, 0.9), Verdict::Serve);
    }

    #[test]
    fn a_burst_of_429s_then_service() {
        let mut s = state(Faults {
            burst_429: 2,
            retry_after_secs: 3,
            ..Faults::default()
        });
        for _ in 0..2 {
            assert_eq!(
                s.judge(1_000_000, true, 0.9),
                Verdict::Fail {
                    status: 429,
                    retry_after: Some(3),
                    reason: "429 burst"
                }
            );
        }
        assert_eq!(s.judge(1_000_000, true, 0.9), Verdict::Serve);
    }

    #[test]
    fn the_quota_counts_writes_in_any_minute() {
        let mut s = state(Faults {
            quota_per_minute: Some(2),
            ..Faults::default()
        });
        assert_eq!(s.judge(1_000_000, true, 0.9), Verdict::Serve);
        assert_eq!(
            s.judge(1_010_000, false, 0.9),
            Verdict::Serve,
            "reads do not count"
        );
        assert_eq!(s.judge(1_020_000, true, 0.9), Verdict::Serve);
        assert_eq!(
            s.judge(1_059_000, true, 0.9),
            Verdict::Fail {
                status: 429,
                retry_after: Some(1),
                reason: "quota"
            }
        );
        assert_eq!(
            s.judge(1_060_000, true, 0.9),
            Verdict::Serve,
            "the first write left the window"
        );
    }

    #[test]
    fn error_rates_split_the_roll() {
        let mut s = state(Faults {
            error_rates: BTreeMap::from([(500, 0.2), (503, 0.1)]),
            ..Faults::default()
        });
        assert!(matches!(
            s.judge(1_000_000, false, 0.1),
            Verdict::Fail { status: 500, .. }
        ));
        assert!(matches!(
            s.judge(1_000_000, false, 0.25),
            Verdict::Fail { status: 503, .. }
        ));
        assert_eq!(s.judge(1_000_000, false, 0.35), Verdict::Serve);
    }
}
