//! Metric names of the relay, declared and described in one place.

/// Counter: events produced to Kafka and acknowledged, label `topic`.
pub const RELAYED: &str = "sluice_outbox_relayed_total";
/// Counter: outbox rows dead-lettered because they do not fit their contract.
pub const DEAD_LETTERED: &str = "sluice_outbox_dead_lettered_total";
/// Histogram: seconds from a transaction's commit in Postgres to Kafka's
/// acknowledgement of its last event.
pub const COMMIT_TO_ACK: &str = "sluice_outbox_commit_to_ack_seconds";
/// Gauge: bytes of WAL the slot retains past its confirmed position.
pub const SLOT_LAG: &str = "sluice_outbox_slot_lag_bytes";
/// Gauge: 1 while this replica holds the slot and streams, 0 on standby.
pub const STREAMING: &str = "sluice_outbox_streaming";

/// Gauge: 1 while the relay does not stream because its slot was lost.
pub const SLOT_LOST: &str = "sluice_outbox_slot_lost";

/// Registers descriptions with the installed recorder, once per process.
pub(crate) fn describe_once() {
    static DESCRIBED: std::sync::Once = std::sync::Once::new();
    DESCRIBED.call_once(|| {
        metrics::describe_counter!(RELAYED, "Outbox events acknowledged by Kafka.");
        metrics::describe_counter!(
            DEAD_LETTERED,
            "Outbox rows sent to the dead-letter topic because they do not fit their contract."
        );
        // At zero from the start: a counter first scraped at 1 shows no
        // increase, and the alert on it missed the first row dead-lettered.
        metrics::counter!(DEAD_LETTERED).increment(0);
        metrics::describe_histogram!(
            COMMIT_TO_ACK,
            metrics::Unit::Seconds,
            "Time from a transaction's commit in Postgres to Kafka acknowledging all its events."
        );
        metrics::describe_gauge!(
            SLOT_LAG,
            metrics::Unit::Bytes,
            "WAL retained by the replication slot past its confirmed flush position."
        );
        metrics::describe_gauge!(
            SLOT_LOST,
            "1 while the relay does not stream because its replication slot is gone (see the log)."
        );
        metrics::describe_gauge!(
            STREAMING,
            "1 while this replica holds the replication slot, 0 while it stands by."
        );
    });
}
