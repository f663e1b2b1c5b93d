//! The orchestrator's metrics, recorded after each committed change.

use crate::engine::{Phase, Transition};

/// Counter: sagas started, label `saga`.
pub const STARTED: &str = "sluice_saga_started_total";
/// Counter: sagas that ended, labels `saga`, `state` (COMPLETED,
/// COMPENSATED, FAILED).
pub const FINISHED: &str = "sluice_saga_finished_total";
/// Histogram: seconds from a step's command to its outcome, labels `saga`,
/// `step`, `outcome` (succeeded, failed, timed_out, compensated,
/// compensation_failed).
pub const STEP_SECONDS: &str = "sluice_saga_step_seconds";
/// Histogram: seconds from a saga's start to its end, labels `saga`, `state`.
pub const DURATION_SECONDS: &str = "sluice_saga_duration_seconds";
/// Counter: replies that changed nothing (duplicates, late, another
/// saga's), label `saga`.
pub const IGNORED: &str = "sluice_saga_replies_ignored_total";
/// Gauge: sagas per state, labels `saga`, `state`.
pub const INSTANCES: &str = "sluice_saga_instances";
/// Gauge: sagas failed or overdue (no replica fires their timeout), `saga`.
pub const STUCK: &str = "sluice_saga_stuck";

/// Registers descriptions, once per process.
fn describe_once() {
    static DESCRIBED: std::sync::Once = std::sync::Once::new();
    DESCRIBED.call_once(|| {
        metrics::describe_counter!(STARTED, "Sagas started.");
        metrics::describe_counter!(FINISHED, "Sagas ended, by final state.");
        metrics::describe_histogram!(
            STEP_SECONDS,
            metrics::Unit::Seconds,
            "Time from a step's command (or compensation) to its outcome."
        );
        metrics::describe_histogram!(
            DURATION_SECONDS,
            metrics::Unit::Seconds,
            "Time from a saga's start to its end."
        );
        metrics::describe_counter!(
            IGNORED,
            "Replies that changed nothing (duplicate, late, or another saga's)."
        );
        metrics::describe_gauge!(INSTANCES, "Sagas per state.");
        metrics::describe_gauge!(
            STUCK,
            "Sagas an operator has to look at: failed compensations, overdue timeouts."
        );
    });
}

/// Registers the counters of saga type `saga` at zero, so they are
/// exported (and rates and alerts have data) before the first event.
pub fn register(saga: &str) {
    describe_once();
    metrics::counter!(STARTED, "saga" => saga.to_owned()).increment(0);
    metrics::counter!(IGNORED, "saga" => saga.to_owned()).increment(0);
    for phase in [Phase::Completed, Phase::Compensated, Phase::Failed] {
        metrics::counter!(FINISHED, "saga" => saga.to_owned(), "state" => phase.as_str())
            .increment(0);
    }
}

/// A saga started.
pub(crate) fn started(saga: &str) {
    metrics::counter!(STARTED, "saga" => saga.to_owned()).increment(1);
}

/// A reply changed nothing.
pub(crate) fn ignored(saga: &str) {
    metrics::counter!(IGNORED, "saga" => saga.to_owned()).increment(1);
}

/// A committed change: the step outcomes in its log, and the end.
pub(crate) fn changed(saga: &str, transition: &Transition, step_seconds: f64, saga_seconds: f64) {
    for line in &transition.log {
        if matches!(
            line.event,
            "succeeded" | "failed" | "timed_out" | "compensated" | "compensation_failed"
        ) {
            metrics::histogram!(STEP_SECONDS, "saga" => saga.to_owned(), "step" => line.step.clone(), "outcome" => line.event)
                .record(step_seconds);
        }
    }
    if transition.phase.finished() {
        let state = transition.phase.as_str();
        metrics::counter!(FINISHED, "saga" => saga.to_owned(), "state" => state).increment(1);
        metrics::histogram!(DURATION_SECONDS, "saga" => saga.to_owned(), "state" => state)
            .record(saga_seconds);
    }
}

/// The census of sagas per state.
pub(crate) fn census(saga: &str, states: &[(String, i64)], stuck: i64) {
    for phase in [
        Phase::Running,
        Phase::Compensating,
        Phase::Completed,
        Phase::Compensated,
        Phase::Failed,
    ] {
        let count = states
            .iter()
            .find(|(state, _)| state == phase.as_str())
            .map_or(0, |(_, count)| *count);
        metrics::gauge!(INSTANCES, "saga" => saga.to_owned(), "state" => phase.as_str())
            .set(count as f64);
    }
    metrics::gauge!(STUCK, "saga" => saga.to_owned()).set(stuck as f64);
}
