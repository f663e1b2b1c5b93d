//! What `list` and `show` print: tables for people, JSON lines for scripts.

use crate::engine::Phase;
use crate::{LogLine, Sagas, StoreError, Summary};
use serde_json::Value;
use sluice_config::{Output, table};

fn time(at: Option<chrono::DateTime<chrono::Utc>>) -> String {
    at.map_or_else(String::new, |at| {
        at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    })
}

fn failure(summary: &Summary) -> String {
    summary.failure.as_ref().map_or_else(String::new, |f| {
        format!(
            "{}: {}",
            f.get("step").and_then(Value::as_str).unwrap_or_default(),
            f.get("reason").and_then(Value::as_str).unwrap_or_default()
        )
    })
}

/// The sagas of `list`.
pub fn sagas(sagas: &[Summary], output: Output) -> String {
    match output {
        Output::Json => json_lines(sagas),
        Output::Table => {
            let mut t = table(&[
                "saga", "key", "state", "step", "attempt", "started", "finished", "failure",
            ]);
            for s in sagas {
                t.add_row([
                    s.saga_id.to_string(),
                    s.business_key.clone(),
                    s.state.clone(),
                    s.step.clone(),
                    s.attempt.to_string(),
                    time(Some(s.started_at)),
                    time(s.finished_at),
                    failure(s),
                ]);
            }
            format!("{t}\n{} saga(s)\n", sagas.len())
        }
    }
}

/// One saga and its step log, for `show`.
pub fn history(summary: &Summary, log: &[LogLine], output: Output) -> String {
    match output {
        Output::Json => {
            let mut value = serde_json::to_value(summary).unwrap_or_default();
            value["log"] = serde_json::to_value(log).unwrap_or_default();
            format!("{value}\n")
        }
        Output::Table => {
            let mut head = format!(
                "saga {} ({}) for {}: {}, step {} attempt {}, started {}",
                summary.saga_id,
                summary.saga_type,
                summary.business_key,
                summary.state,
                summary.step,
                summary.attempt,
                time(Some(summary.started_at)),
            );
            if let Some(finished) = summary.finished_at {
                head.push_str(&format!(", finished {}", time(Some(finished))));
            }
            if let Some(deadline) = summary.deadline {
                head.push_str(&format!(", times out {}", time(Some(deadline))));
            }
            if summary.failure.is_some() {
                head.push_str(&format!("\nfailure: {}", failure(summary)));
            }
            let mut t = table(&["#", "at", "step", "attempt", "event", "detail"]);
            for line in log {
                t.add_row([
                    line.version.to_string(),
                    time(Some(line.at)),
                    line.step.clone(),
                    line.attempt.to_string(),
                    line.event.clone(),
                    line.detail.clone().unwrap_or_default(),
                ]);
            }
            format!("{head}\n{t}\n")
        }
    }
}

fn json_lines<T: serde::Serialize>(items: &[T]) -> String {
    items
        .iter()
        .filter_map(|item| serde_json::to_string(item).ok())
        .map(|line| line + "\n")
        .collect()
}

/// `list`: sagas, newest first, as a table or JSON lines.
pub async fn list(
    sagas: &Sagas,
    state: Option<Phase>,
    limit: i64,
    output: Output,
) -> Result<String, StoreError> {
    Ok(self::sagas(&sagas.list(state, limit).await?, output))
}

/// `show`: one saga (by saga or order id) and its step log; `None` when
/// there is no such saga.
pub async fn show(sagas: &Sagas, saga: &str, output: Output) -> Result<Option<String>, StoreError> {
    Ok(sagas
        .history(saga)
        .await?
        .map(|(summary, log)| history(&summary, &log, output)))
}
