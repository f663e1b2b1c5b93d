//! What the commands print: tables for people, JSON lines for scripts.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sluice_config::{Output, table};

use crate::log::ReplayRun;
use crate::scan::Letter;

/// A time in ms since the epoch, as RFC 3339 (UTC, seconds).
pub fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

fn text(bytes: Option<&[u8]>) -> String {
    bytes.map_or_else(String::new, |b| String::from_utf8_lossy(b).into_owned())
}

/// A dead letter as one JSON object (the `list` line).
pub fn letter_json(letter: &Letter) -> Value {
    let r = &letter.record;
    json!({
        "dead_letter": letter.at.to_string(),
        "failed_at": time(r.last_failure_at),
        "service": r.service,
        "source": format!("{}:{}:{}", r.original_topic, r.original_partition, r.original_offset),
        "class": r.error_class.as_str(),
        "key": r.original_key.as_deref().map(String::from_utf8_lossy),
        "error": r.error_message,
        "attempts": r.attempts,
    })
}

/// `list`: the dead letters, then the counts per class.
pub fn list(letters: &[Letter], output: Output) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for letter in letters {
        *counts
            .entry(letter.record.error_class.as_str())
            .or_default() += 1;
    }
    let summary = format!(
        "{} dead letters{}",
        letters.len(),
        if counts.is_empty() {
            String::new()
        } else {
            let parts: Vec<String> = counts.iter().map(|(c, n)| format!("{c} {n}")).collect();
            format!(": {}", parts.join(", "))
        }
    );
    match output {
        Output::Json => {
            let mut lines: Vec<String> =
                letters.iter().map(|l| letter_json(l).to_string()).collect();
            // Scripts read the lines; people read the summary on stderr.
            eprintln!("{summary}");
            lines.push(String::new());
            lines.join("\n")
        }
        Output::Table => {
            let mut out = table(&[
                "DEAD LETTER",
                "FAILED AT",
                "SERVICE",
                "SOURCE",
                "CLASS",
                "KEY",
                "ERROR",
            ]);
            for letter in letters {
                let r = &letter.record;
                let mut error = r.error_message.clone();
                if error.chars().count() > 80 {
                    error = error.chars().take(79).chain(['…']).collect();
                }
                out.add_row(vec![
                    letter.at.to_string(),
                    time(r.last_failure_at),
                    r.service.clone(),
                    format!(
                        "{}:{}:{}",
                        r.original_topic, r.original_partition, r.original_offset
                    ),
                    r.error_class.as_str().to_owned(),
                    text(r.original_key.as_deref()),
                    error,
                ]);
            }
            format!("{out}\n{summary}\n")
        }
    }
}

/// `show`: everything about one dead letter; `value` is the original value
/// decoded (or why it could not be).
pub fn show(letter: &Letter, value: Result<Value, String>, output: Output) -> String {
    let r = &letter.record;
    let headers: Vec<Value> = r
        .original_headers
        .iter()
        .map(|h| json!({"key": h.key, "value": h.value.as_deref().map(String::from_utf8_lossy)}))
        .collect();
    let mut object = letter_json(letter);
    object["first_failure_at"] = json!(time(r.first_failure_at));
    object["service_version"] = json!(r.service_version);
    object["source_timestamp"] = json!(r.original_timestamp.map(time));
    object["headers"] = Value::Array(headers);
    match &value {
        Ok(decoded) => object["value"] = decoded.clone(),
        Err(why) => {
            object["value"] = Value::Null;
            object["value_error"] = json!(why);
            object["value_text"] = json!(text(r.original_value.as_deref()));
        }
    }
    if output == Output::Json {
        return format!("{object}\n");
    }
    let mut out = String::new();
    let mut line = |name: &str, value: String| out.push_str(&format!("{name:<14}{value}\n"));
    line("dead letter", letter.at.to_string());
    line("service", format!("{} {}", r.service, r.service_version));
    line(
        "failed",
        format!(
            "{} (first {}; attempts: {})",
            time(r.last_failure_at),
            time(r.first_failure_at),
            r.attempts
        ),
    );
    line("class", r.error_class.as_str().to_owned());
    line("error", r.error_message.clone());
    line(
        "source",
        format!(
            "{}:{}:{}",
            r.original_topic, r.original_partition, r.original_offset
        ),
    );
    line("key", text(r.original_key.as_deref()));
    for header in &r.original_headers {
        line(
            "header",
            format!("{}={}", header.key, text(header.value.as_deref())),
        );
    }
    match value {
        Ok(decoded) => {
            let pretty = serde_json::to_string_pretty(&decoded).unwrap_or_default();
            out.push_str(&format!("value\n{pretty}\n"));
        }
        Err(why) => {
            out.push_str(&format!(
                "value         not decodable ({why}); as text:\n{}\n",
                text(r.original_value.as_deref())
            ));
        }
    }
    out
}

/// `stats`: per DLQ topic and class, counts and the oldest and newest.
pub fn stats(letters: &[Letter], output: Output) -> String {
    let mut groups: BTreeMap<(&str, &str), (usize, i64, i64)> = BTreeMap::new();
    for letter in letters {
        let at = letter.record.last_failure_at;
        let entry = groups
            .entry((&letter.at.topic, letter.record.error_class.as_str()))
            .or_insert((0, at, at));
        entry.0 += 1;
        entry.1 = entry.1.min(at);
        entry.2 = entry.2.max(at);
    }
    match output {
        Output::Json => groups
            .iter()
            .map(|((topic, class), (count, oldest, newest))| {
                format!(
                    "{}\n",
                    json!({"topic": topic, "class": class, "count": count,
                           "oldest": time(*oldest), "newest": time(*newest)})
                )
            })
            .collect(),
        Output::Table => {
            let mut out = table(&["DLQ TOPIC", "CLASS", "COUNT", "OLDEST", "NEWEST"]);
            for ((topic, class), (count, oldest, newest)) in &groups {
                out.add_row(vec![
                    (*topic).to_owned(),
                    (*class).to_owned(),
                    count.to_string(),
                    time(*oldest),
                    time(*newest),
                ]);
            }
            format!("{out}\n{} dead letters\n", letters.len())
        }
    }
}

/// `history`: replay runs, newest first.
pub fn history(runs: &[ReplayRun], output: Output) -> String {
    match output {
        Output::Json => runs
            .iter()
            .map(|run| {
                let at = |t: chrono::DateTime<chrono::Utc>| {
                    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                };
                let run = json!({
                    "replay_id": run.replay_id.to_string(),
                    "actor": run.actor,
                    "started_at": at(run.started_at),
                    "finished_at": run.finished_at.map(at),
                    "target": run.target,
                    "selection": run.selection,
                    "forced": run.forced,
                    "outcome": run.outcome,
                    "replayed": run.replayed,
                });
                format!("{run}\n")
            })
            .collect(),
        Output::Table => {
            let mut out = table(&[
                "REPLAY ID",
                "STARTED",
                "ACTOR",
                "OUTCOME",
                "SENT",
                "TO",
                "SELECTION",
            ]);
            for run in runs {
                out.add_row(vec![
                    run.replay_id.to_string(),
                    run.started_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    run.actor.clone(),
                    if run.forced {
                        format!("{} (forced)", run.outcome)
                    } else {
                        run.outcome.clone()
                    },
                    run.replayed.to_string(),
                    run.target.clone().unwrap_or_else(|| "original".into()),
                    run.selection.clone(),
                ]);
            }
            format!("{out}\n")
        }
    }
}
