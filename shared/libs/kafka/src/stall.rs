//! Partitions that stopped moving. An assigned partition with messages after
//! its position whose position has not advanced for `after` is exported as
//! `sluice_partition_stalled{topic, partition, reason}`, valued at the offset
//! it is stuck at, and logged once; once it moves again or is revoked the
//! series is set to -1 (the Prometheus exporter cannot drop a series, and 0
//! is an offset a partition can be stuck at).
//!
//! Both consumer loops tell the watch what only they know: each message
//! received and each one settled, so a message held inside the loop names
//! the handler, and each consumer error. librdkafka's statistics add its
//! position (past control records and aborted transactions) and the
//! partition's last stable offset, for partitions with nothing in the loop.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::consumer::context::Partition;
use crate::metrics::PARTITION_STALLED;

/// How often partitions are looked at: a stall is exported within this of
/// its time.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The gauge's value for a partition that is not stalled.
const NOT_STALLED: f64 = -1.0;

/// Why a partition does not advance, as far as the loop can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// Messages handed to the loop are not settled: the handler holds or
    /// retries them (breaker open, remote down), or their dead letters or
    /// outputs cannot be written.
    Handler,
    /// Nothing is in the loop and librdkafka reported errors since the
    /// partition began to wait (a record it cannot decode, a broker it
    /// cannot reach). rdkafka passes consumer errors on without their partition, so
    /// this is inferred, not read off the error.
    ConsumerError,
    /// Nothing is in the loop and nothing was reported.
    Unknown,
}

impl Reason {
    /// The `reason` label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Handler => "handler",
            Self::ConsumerError => "consumer-error",
            Self::Unknown => "unknown",
        }
    }
}

/// Watches a loop's assigned partitions for stalls.
#[derive(Debug)]
pub(crate) struct StallWatch {
    after: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Assigned partitions by topic (looked up by `&str` per message).
    topics: HashMap<String, BTreeMap<i32, Track>>,
    /// Consumer errors seen, and the last one's text.
    errors: u64,
    last_error: String,
}

/// What is known of one assigned partition.
#[derive(Debug)]
struct Track {
    /// The first offset received by the loop and not yet settled.
    unsettled: Option<i64>,
    /// The offset after the last message received.
    received: Option<i64>,
    /// librdkafka's position, from its statistics.
    fetched: Option<i64>,
    /// The last stable offset: where a `read_committed` reader ends.
    end: Option<i64>,
    /// Since when it has been waiting as it is.
    since: Since,
    /// What is exported: the reason, while stalled.
    stalled: Option<Reason>,
}

/// The position and lag a partition had at the last check, and since when:
/// the clock starts again when it moves, and when messages arrive at a
/// partition that had none waiting (an idle partition is not stuck).
#[derive(Debug)]
struct Since {
    position: Option<i64>,
    lagging: bool,
    at: Instant,
    /// Consumer errors counted by then.
    errors: u64,
}

impl Track {
    fn new(now: Instant, errors: u64) -> Self {
        Self {
            unsettled: None,
            received: None,
            fetched: None,
            end: None,
            since: Since {
                position: None,
                lagging: false,
                at: now,
                errors,
            },
            stalled: None,
        }
    }

    /// The offset the loop settles next: the first unsettled one, else as
    /// far as the loop or librdkafka got (`None` < `Some`).
    fn position(&self) -> Option<i64> {
        self.unsettled.or(self.fetched.max(self.received))
    }

    fn has_lag(&self) -> bool {
        self.unsettled.is_some()
            || matches!((self.position(), self.end), (Some(at), Some(end)) if end > at)
    }

    fn reason(&self, errors: u64) -> Reason {
        if self.unsettled.is_some() {
            Reason::Handler
        } else if errors > self.since.errors {
            Reason::ConsumerError
        } else {
            Reason::Unknown
        }
    }
}

impl StallWatch {
    /// A watch that calls a partition stalled after `after` without moving.
    pub(crate) fn new(after: Duration) -> Arc<Self> {
        Arc::new(Self {
            after,
            state: Mutex::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Partitions assigned to the loop.
    pub(crate) fn assigned(&self, partitions: &[Partition]) {
        let now = Instant::now();
        let mut state = self.lock();
        let errors = state.errors;
        for (topic, partition) in partitions {
            state
                .topics
                .entry(topic.clone())
                .or_default()
                .entry(*partition)
                .or_insert_with(|| Track::new(now, errors));
        }
    }

    /// Partitions taken away; one exported as stalled is cleared.
    pub(crate) fn revoked(&self, partitions: &[Partition]) {
        let mut state = self.lock();
        for (topic, partition) in partitions {
            let Some(tracks) = state.topics.get_mut(topic) else {
                continue;
            };
            if let Some(Track {
                stalled: Some(reason),
                ..
            }) = tracks.remove(partition)
            {
                gauge(topic, *partition, reason).set(NOT_STALLED);
            }
        }
    }

    /// A message entered the loop.
    pub(crate) fn received(&self, topic: &str, partition: i32, offset: i64) {
        self.update(topic, partition, |track| {
            track.unsettled.get_or_insert(offset);
            track.received = Some(offset + 1);
        });
    }

    /// A message was settled (done, dead-lettered or committed), in order.
    pub(crate) fn settled(&self, topic: &str, partition: i32, offset: i64) {
        self.update(topic, partition, |track| {
            // With later messages still in the loop, the next is unsettled.
            let next = offset + 1;
            track.unsettled = (track.received > Some(next)).then_some(next);
        });
    }

    /// librdkafka's statistics of an assigned partition: its position
    /// (`app_offset`, or the fetch position `next_offset` before the first
    /// message) and its last stable offset; negative when not known.
    pub(crate) fn statistics(&self, topic: &str, partition: i32, stats: &PartitionStats) {
        self.update(topic, partition, |track| {
            let known = |offset: i64| (offset >= 0).then_some(offset);
            track.fetched = known(stats.app_offset).or(known(stats.next_offset));
            track.end = known(stats.ls_offset);
        });
    }

    /// librdkafka reported an error.
    pub(crate) fn consumer_error(&self, error: &KafkaError) {
        let mut state = self.lock();
        state.errors += 1;
        state.last_error = error.to_string();
    }

    fn update(&self, topic: &str, partition: i32, change: impl FnOnce(&mut Track)) {
        // A partition not assigned (any more) is not followed.
        if let Some(track) = self
            .lock()
            .topics
            .get_mut(topic)
            .and_then(|tracks| tracks.get_mut(&partition))
        {
            change(track);
        }
    }

    /// Looks at every partition as of `now`: exports the stalls that began,
    /// clears those that ended.
    pub(crate) fn check(&self, now: Instant) {
        let mut state = self.lock();
        let State {
            topics,
            errors,
            last_error,
        } = &mut *state;
        for (topic, tracks) in topics {
            for (partition, track) in tracks {
                let position = track.position();
                let lagging = track.has_lag();
                if position != track.since.position || lagging && !track.since.lagging {
                    track.since = Since {
                        position,
                        lagging,
                        at: now,
                        errors: *errors,
                    };
                }
                track.since.lagging = lagging;
                let waited = now.duration_since(track.since.at);
                let stalled = (lagging && waited >= self.after)
                    .then(|| track.reason(*errors))
                    .zip(position);
                let was = track.stalled;
                track.stalled = stalled.map(|(reason, _)| reason);
                if track.stalled == was {
                    continue;
                }
                if let Some(reason) = was {
                    gauge(topic, *partition, reason).set(NOT_STALLED);
                }
                match stalled {
                    Some((reason, offset)) => {
                        gauge(topic, *partition, reason).set(offset as f64);
                        log_stall(topic, *partition, offset, reason, waited, last_error);
                    }
                    None => {
                        tracing::info!(topic, partition, offset = position, "partition moves again")
                    }
                }
            }
        }
    }

    /// Checks every [`CHECK_EVERY`] until the guard is dropped, then clears
    /// what is exported: a loop that stopped holds no partition.
    pub(crate) fn start(self: &Arc<Self>) -> DropGuard {
        let stop = CancellationToken::new();
        let watch = Arc::clone(self);
        let stopped = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CHECK_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    () = stopped.cancelled() => break,
                    _ = tick.tick() => watch.check(Instant::now()),
                }
            }
            let assigned: Vec<Partition> = watch
                .lock()
                .topics
                .iter()
                .flat_map(|(topic, tracks)| tracks.keys().map(|p| (topic.clone(), *p)))
                .collect();
            watch.revoked(&assigned);
        });
        stop.drop_guard()
    }
}

/// The statistics fields the watch reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PartitionStats {
    pub app_offset: i64,
    pub next_offset: i64,
    pub ls_offset: i64,
}

fn gauge(topic: &str, partition: i32, reason: Reason) -> metrics::Gauge {
    metrics::gauge!(PARTITION_STALLED,
        "topic" => topic.to_owned(), "partition" => partition.to_string(), "reason" => reason.as_str())
}

fn log_stall(
    topic: &str,
    partition: i32,
    offset: i64,
    reason: Reason,
    waited: Duration,
    last_error: &str,
) {
    let meaning = match reason {
        Reason::ConsumerError => "librdkafka reports errors and hands over nothing",
        Reason::Handler => "the handler holds the message at this offset",
        Reason::Unknown => "messages wait after this offset and none arrive",
    };
    // The error only where it is the reason: otherwise it is an old one.
    let error = (reason == Reason::ConsumerError).then_some(last_error);
    tracing::warn!(
        topic,
        partition,
        offset,
        reason = reason.as_str(),
        ?waited,
        error,
        "partition stalled: {meaning}"
    );
}

#[cfg(test)]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
    use rdkafka::types::RDKafkaErrorCode;

    use super::*;

    const AFTER: Duration = Duration::from_secs(60);
    const TOPIC: &str = "erp.commands.v1";

    /// The exported series of the gauge: (partition, reason, value).
    fn exported(snapshotter: &Snapshotter) -> Vec<(String, String, f64)> {
        let mut series: Vec<_> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, ..)| key.key().name() == PARTITION_STALLED)
            .map(|(key, _, _, value)| {
                let label = |name: &str| {
                    key.key()
                        .labels()
                        .find(|l| l.key() == name)
                        .map(|l| l.value().to_owned())
                        .unwrap_or_default()
                };
                let DebugValue::Gauge(value) = value else {
                    panic!("not a gauge")
                };
                (label("partition"), label("reason"), value.into_inner())
            })
            .collect();
        series.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        series
    }

    fn stats(app_offset: i64, ls_offset: i64) -> PartitionStats {
        PartitionStats {
            app_offset,
            next_offset: app_offset,
            ls_offset,
        }
    }

    /// Runs `steps` against a watch of partitions 0 and 1 under a recorder
    /// of its own, from `t0`; what it exported after.
    fn run(steps: impl FnOnce(&StallWatch, Instant)) -> Vec<(String, String, f64)> {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let watch = StallWatch::new(AFTER);
            watch.assigned(&[(TOPIC.into(), 0), (TOPIC.into(), 1)]);
            steps(&watch, Instant::now());
        });
        exported(&snapshotter)
    }

    fn series(partition: i32, reason: &str, value: f64) -> (String, String, f64) {
        (partition.to_string(), reason.to_owned(), value)
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_message_held_by_the_handler_past_the_time_is_exported_at_its_offset() {
        let after = run(|watch, t0| {
            watch.received(TOPIC, 0, 41);
            watch.settled(TOPIC, 0, 41);
            watch.received(TOPIC, 0, 42);
            watch.received(TOPIC, 0, 43);
            watch.check(t0);
            watch.check(t0 + AFTER - SECOND);
        });
        assert!(after.is_empty(), "not yet: {after:?}");
        let after = run(|watch, t0| {
            watch.received(TOPIC, 0, 42);
            watch.received(TOPIC, 0, 43);
            watch.check(t0);
            watch.check(t0 + AFTER);
        });
        assert_eq!(after, vec![series(0, "handler", 42.0)]);
    }

    #[test]
    fn the_time_counts_from_when_messages_wait_not_from_the_last_move() {
        let after = run(|watch, t0| {
            watch.received(TOPIC, 0, 41);
            watch.settled(TOPIC, 0, 41);
            watch.check(t0);
            // Idle at 42 for long, then a message comes.
            watch.check(t0 + AFTER * 10);
            watch.received(TOPIC, 0, 42);
            watch.check(t0 + AFTER * 10 + SECOND);
            watch.check(t0 + AFTER * 11);
        });
        assert!(after.is_empty(), "not yet: {after:?}");
    }

    #[test]
    fn a_stall_is_cleared_once_the_partition_moves_or_goes() {
        let after = run(|watch, t0| {
            watch.received(TOPIC, 0, 42);
            watch.received(TOPIC, 1, 7);
            watch.check(t0);
            watch.check(t0 + AFTER);
            watch.settled(TOPIC, 0, 42);
            watch.revoked(&[(TOPIC.into(), 1)]);
            watch.check(t0 + AFTER + SECOND);
        });
        assert_eq!(
            after,
            vec![
                series(0, "handler", NOT_STALLED),
                series(1, "handler", NOT_STALLED)
            ]
        );
    }

    #[test]
    fn a_partition_at_its_end_is_not_stalled() {
        let after = run(|watch, t0| {
            // The last record is a transaction's commit marker: librdkafka's
            // position is past it, the loop's last message before it.
            watch.received(TOPIC, 0, 9);
            watch.settled(TOPIC, 0, 9);
            watch.statistics(TOPIC, 0, &stats(11, 11));
            watch.check(t0);
            watch.check(t0 + AFTER * 2);
        });
        assert!(after.is_empty(), "{after:?}");
    }

    #[test]
    fn nothing_handed_over_and_nothing_reported_is_unknown_until_an_error_comes() {
        let after = run(|watch, t0| {
            // Messages waiting, none handed over since the assignment: the
            // fetch position is where it is stuck.
            let wedged = PartitionStats {
                app_offset: -1001,
                next_offset: 5,
                ls_offset: 9,
            };
            watch.statistics(TOPIC, 0, &wedged);
            watch.check(t0);
            watch.check(t0 + AFTER);
        });
        assert_eq!(after, vec![series(0, "unknown", 5.0)]);
        let after = run(|watch, t0| {
            watch.statistics(TOPIC, 0, &stats(5, 9));
            watch.check(t0);
            watch.check(t0 + AFTER);
            watch.consumer_error(&KafkaError::MessageConsumption(
                RDKafkaErrorCode::NotImplemented,
            ));
            watch.check(t0 + AFTER + SECOND);
        });
        assert_eq!(
            after,
            vec![
                series(0, "consumer-error", 5.0),
                series(0, "unknown", NOT_STALLED)
            ]
        );
    }

    #[test]
    fn errors_from_before_the_partition_began_to_wait_do_not_count() {
        let after = run(|watch, t0| {
            watch.consumer_error(&KafkaError::MessageConsumption(
                RDKafkaErrorCode::NotImplemented,
            ));
            watch.statistics(TOPIC, 0, &stats(5, 9));
            watch.check(t0);
            watch.check(t0 + AFTER);
        });
        assert_eq!(after, vec![series(0, "unknown", 5.0)]);
    }
}
