//! Metric names of the transformer, declared and described in one place.

/// Counter: events (a rule with `each`: items) a rule matched (its event
/// type and conditions), label `rule`.
pub const MATCHED: &str = "sluice_transformer_rule_matched_total";
/// Counter: commands a rule made, label `rule`. Counted when made: a batch
/// whose transaction aborts and is redone counts its commands again.
pub const PRODUCED: &str = "sluice_transformer_rule_produced_total";
/// Counter: events a rule failed to map (they are dead-lettered), label `rule`.
pub const FAILED: &str = "sluice_transformer_rule_failed_total";

/// Registers descriptions with the installed recorder, once per process.
pub(crate) fn describe_once() {
    static DESCRIBED: std::sync::Once = std::sync::Once::new();
    DESCRIBED.call_once(|| {
        metrics::describe_counter!(
            MATCHED,
            "Events (items, for a rule with each) a mapping rule matched."
        );
        metrics::describe_counter!(PRODUCED, "Commands a mapping rule made.");
        metrics::describe_counter!(
            FAILED,
            "Events a mapping rule could not map; they go to the dead-letter topic."
        );
    });
}
