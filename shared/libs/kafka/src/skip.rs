//! Records a loop passes over by design. A tombstone (a record without a
//! value) marks a key for compaction — Debezium writes one after each
//! delete, a user's service may write them to clear a compacted topic — and
//! carries no event to map, apply or dead-letter: it is settled as it is,
//! and counted.

use rdkafka::Message;
use rdkafka::message::OwnedMessage;

use crate::metrics::SKIPPED;

/// Whether `message` is a tombstone.
pub(crate) fn is_tombstone(message: &OwnedMessage) -> bool {
    message.payload().is_none()
}

/// Counts `message` as passed over, if it is a tombstone: once, when the
/// loop has settled it (a transactional loop may try a batch again).
pub(crate) fn count_if_skipped(message: &OwnedMessage) {
    if !is_tombstone(message) {
        return;
    }
    metrics::counter!(SKIPPED, "topic" => message.topic().to_owned(), "reason" => "tombstone")
        .increment(1);
    tracing::debug!(
        topic = message.topic(),
        partition = message.partition(),
        offset = message.offset(),
        "a tombstone passed over"
    );
}
