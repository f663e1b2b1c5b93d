//! Metric names of this crate, declared and described in one place.

/// Counter: messages received, label `topic`.
pub const CONSUMED: &str = "sluice_consumed_total";
/// Counter: messages settled, labels `topic` and `outcome` (`done`, `dead_lettered`, `skipped`).
pub const HANDLED: &str = "sluice_handled_total";
/// Histogram: seconds from handling a message to storing its offset, label `topic`.
pub const PROCESSING: &str = "sluice_processing_seconds";
/// Counter: messages dead-lettered, labels `topic` and `class`.
pub const DEAD_LETTERED: &str = "sluice_dead_lettered_total";
/// Counter: records passed over by design, labels `topic` and `reason`
/// (`tombstone`).
pub const SKIPPED: &str = "sluice_records_skipped_total";
/// Counter: messages produced by a transactional loop, label `topic`.
pub const PRODUCED: &str = "sluice_produced_total";
/// Gauge: messages behind the high watermark, labels `topic`, `partition`.
pub const CONSUMER_LAG: &str = "sluice_consumer_lag";
/// Gauge: partitions paused for backpressure.
pub const PAUSED_PARTITIONS: &str = "sluice_paused_partitions";
/// Gauge: the offset a partition is stuck at, labels `topic`, `partition`,
/// `reason`; -1 once it is not.
pub const PARTITION_STALLED: &str = "sluice_partition_stalled";

/// Registers descriptions with the installed recorder, once per process.
/// Registers the dead-letter counter of every class for `topics` at zero. A
/// series that first appears with a burst already counted shows no rate:
/// the alert on `rate(sluice_dead_lettered_total)` missed 40 values that
/// were not Avro, dead-lettered between two scrapes (the chart-run).
pub(crate) fn zero_dead_letters(topics: &[String]) {
    for topic in topics {
        for class in sluice_contracts::types::DeadLetterClass::WRITTEN {
            metrics::counter!(DEAD_LETTERED, "topic" => topic.clone(), "class" => class.as_str())
                .increment(0);
        }
    }
}

pub(crate) fn describe_once() {
    static DESCRIBED: std::sync::Once = std::sync::Once::new();
    DESCRIBED.call_once(describe);
}

fn describe() {
    metrics::describe_counter!(CONSUMED, "Messages received from Kafka.");
    metrics::describe_counter!(
        HANDLED,
        "Messages settled, by outcome: done, dead-lettered or skipped (a tombstone)."
    );
    metrics::describe_counter!(
        SKIPPED,
        "Records passed over by design: tombstones (records without a value) carry no event."
    );
    metrics::describe_histogram!(
        PROCESSING,
        metrics::Unit::Seconds,
        "Time from handling a message to storing its offset (settled, and what its handling owes Kafka acknowledged)."
    );
    metrics::describe_counter!(
        DEAD_LETTERED,
        "Messages written to the dead-letter topic, by error class."
    );
    metrics::describe_gauge!(
        CONSUMER_LAG,
        "Messages of an assigned partition not yet consumed (high watermark minus position)."
    );
    metrics::describe_gauge!(
        PAUSED_PARTITIONS,
        "Partitions paused because their handler is behind."
    );
    metrics::describe_gauge!(
        PARTITION_STALLED,
        "The offset an assigned partition is stuck at: it has messages after that offset and has not moved for --partition-stall-after. Reason: handler (the loop holds a message), consumer-error (librdkafka reported errors meanwhile) or unknown. -1 once it moves again or is revoked."
    );
}

#[cfg(test)]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;

    #[test]
    fn every_dead_letter_class_of_a_topic_is_exported_at_zero() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            zero_dead_letters(&["orders.events.v1".into()])
        });
        let mut classes: Vec<String> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, ..)| key.key().name() == DEAD_LETTERED)
            .map(|(key, _, _, value)| {
                assert_eq!(value, DebugValue::Counter(0));
                let label = |name: &str| {
                    key.key()
                        .labels()
                        .find(|l| l.key() == name)
                        .map(|l| l.value().to_owned())
                        .unwrap_or_default()
                };
                assert_eq!(label("topic"), "orders.events.v1");
                label("class")
            })
            .collect();
        classes.sort();
        assert_eq!(
            classes,
            [
                "DECODE",
                "MAPPING",
                "PERMANENT",
                "RETRIES_EXHAUSTED",
                "UNCORRELATED",
                "VALIDATION"
            ]
        );
    }
}
