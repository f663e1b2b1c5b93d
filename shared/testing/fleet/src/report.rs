//! The run's figures as Markdown: what came in, what arrived, what was lost
//! or applied twice, what was dead-lettered, and what each fault cost.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::fleet::Recovery;
use crate::load::{Accepted, Path, Plan, PoisonSent};
use crate::reconcile::{OnKafka, Snapshot};

/// Everything a run measured.
pub struct Report<'a> {
    /// Names the run ("Chaos run", "Demo").
    pub title: &'static str,
    /// What was sent.
    pub plan: &'a Plan,
    /// The code under test (a commit).
    pub code_version: &'a str,
    /// The fault schedule's seed.
    pub seed: u64,
    /// Events per second offered.
    pub rate: f64,
    /// What the sources accepted.
    pub accepted: &'a [Accepted],
    /// Batches the sources sent again.
    pub source_retries: usize,
    /// Poison sent.
    pub poison: PoisonSent,
    /// The accepted events on Kafka.
    pub kafka: &'a OnKafka,
    /// The sandbox and the saga table at the end.
    pub snapshot: &'a Snapshot,
    /// Dead letters found and expected, by (service, class).
    pub dead_letters: &'a BTreeMap<(String, String), usize>,
    /// What the poison and refusals call for.
    pub expected_dead_letters: &'a BTreeMap<(String, String), usize>,
    /// Each SIGKILL and its recovery.
    pub recoveries: &'a [Recovery],
    /// Broker and Postgres restarts: name and time away.
    pub restarts: &'a [(&'static str, Duration)],
    /// Storms: API, what, seconds into the run.
    pub storms: &'a [(&'static str, &'static str, f64)],
    /// The highest consumer lag (messages) or slot lag (bytes) seen per service.
    pub max_lag: &'a BTreeMap<&'static str, f64>,
    /// Services that exited without being killed.
    pub exits: &'a [(&'static str, Vec<String>)],
    /// Load phase, then until settled.
    pub load_secs: f64,
    /// From the end of the load until every effect was in place.
    pub settle_secs: f64,
}

impl Report<'_> {
    /// Accepted events whose topic lacks them, or whose aggregate's effect
    /// is missing or stale.
    pub fn lost(&self) -> usize {
        let lost_on_kafka: std::collections::HashSet<_> = self.kafka.lost.iter().collect();
        self.accepted
            .iter()
            .filter(|a| {
                lost_on_kafka.contains(&a.event_id)
                    || self.snapshot.unsettled.contains(&a.aggregate_id)
            })
            .count()
    }

    /// Side effects applied twice (rows, records, commands, saga steps,
    /// saga verdicts).
    pub fn duplicates(&self) -> usize {
        self.snapshot.duplicates() + self.kafka.verdicts_twice
    }

    /// Whether every claim held.
    pub fn passed(&self) -> bool {
        self.lost() == 0
            && self.duplicates() == 0
            && self.kafka.order_breaks == 0
            && self.dead_letters == self.expected_dead_letters
            && self.accepted.len() == self.plan.events()
    }

    /// The Markdown report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) -> std::fmt::Result {
        let plan = self.plan;
        let by_path = |path| self.accepted.iter().filter(|a| a.path == path).count();
        let verdict = |ok: bool| if ok { "yes" } else { "**NO**" };
        writeln!(out, "## {} {}\n", self.title, plan.run)?;
        writeln!(
            out,
            "{} on this machine ({} cores), code at {}; seed {}; {} events offered at {:.0}/s \
             ({} requests × 10 events, {} orders = sagas, every {}th order refused by the ERP); \
             load {:.0} s, then {:.0} s until every effect was in place.\n",
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
            std::thread::available_parallelism().map_or(0, usize::from),
            self.code_version,
            self.seed,
            plan.events(),
            self.rate,
            plan.requests,
            plan.orders,
            plan.refuse_every,
            self.load_secs,
            self.settle_secs,
        )?;
        let dead_total: usize = self.dead_letters.values().sum();
        let expected_total: usize = self.expected_dead_letters.values().sum();
        writeln!(out, "| figure | value | holds |")?;
        writeln!(out, "|---|---|---|")?;
        writeln!(
            out,
            "| accepted (outbox rows committed / HTTP 202) | {} ({} / {}) | {} |",
            self.accepted.len(),
            by_path(Path::Outbox),
            by_path(Path::Http),
            verdict(self.accepted.len() == plan.events())
        )?;
        writeln!(
            out,
            "| on their topic (by event id) | {} | {} |",
            self.kafka.found,
            verdict(self.kafka.found == self.accepted.len())
        )?;
        writeln!(
            out,
            "| delivered (on Kafka and their effect in place) | {} | {} |",
            self.accepted.len() - self.lost(),
            verdict(self.lost() == 0)
        )?;
        writeln!(
            out,
            "| **lost** | **{}** | {} |",
            self.lost(),
            verdict(self.lost() == 0)
        )?;
        writeln!(
            out,
            "| **duplicate side effects** | **{}** | {} |",
            self.duplicates(),
            verdict(self.duplicates() == 0)
        )?;
        writeln!(
            out,
            "| per-key order broken on Kafka (keys) | {} | {} |",
            self.kafka.order_breaks,
            verdict(self.kafka.order_breaks == 0)
        )?;
        writeln!(
            out,
            "| dead-lettered / injected poison and refusals | {dead_total} / {expected_total} | {} |",
            verdict(self.dead_letters == self.expected_dead_letters)
        )?;
        writeln!(
            out,
            "| copies resent at least once (deduplicated downstream) | {} | — |",
            self.kafka.copies
        )?;
        writeln!(
            out,
            "| batches the sources sent again | {} | — |",
            self.source_retries
        )?;
        let states: Vec<String> = self
            .snapshot
            .saga_states
            .iter()
            .map(|(state, n)| format!("{state} {n}"))
            .collect();
        writeln!(
            out,
            "| sagas | {} | {} |",
            states.join(", "),
            verdict(self.snapshot.sagas_wrong == 0)
        )?;
        let s = self.snapshot;
        writeln!(
            out,
            "| Requests rows at their last event / stale / missing / extra | {} / {} / {} / {} | {} |",
            s.request_rows_final,
            s.request_rows_stale,
            s.request_rows_missing,
            s.request_rows_duplicate,
            verdict(s.request_rows_final == plan.requests && s.request_rows_duplicate == 0)
        )?;
        writeln!(
            out,
            "| Orders rows at their saga's outcome / extra | {} / {} | {} |",
            s.order_rows_final,
            s.order_rows_duplicate,
            verdict(s.order_rows_final == plan.orders && s.order_rows_duplicate == 0)
        )?;
        writeln!(
            out,
            "| ERP sale orders / missing / extra / for refused orders / commands applied twice | {} / {} / {} / {} / {} | {} |",
            s.erp_records,
            s.erp_missing,
            s.erp_duplicate,
            s.erp_unexpected,
            s.erp_commands_twice,
            verdict(s.erp_missing + s.erp_duplicate + s.erp_unexpected + s.erp_commands_twice == 0)
        )?;
        writeln!(
            out,
            "| saga steps succeeded twice / orders with two verdicts | {} / {} | {} |",
            s.saga_steps_twice,
            self.kafka.verdicts_twice,
            verdict(s.saga_steps_twice + self.kafka.verdicts_twice == 0)
        )?;
        let exits: Vec<String> = self
            .exits
            .iter()
            .map(|(service, exits)| format!("{service} ×{} ({})", exits.len(), exits.join(", ")))
            .collect();
        writeln!(
            out,
            "| services that exited by themselves (restarted) | {} | — |",
            if exits.is_empty() {
                "none".to_owned()
            } else {
                exits.join("; ")
            }
        )?;

        writeln!(out, "\n### Dead letters\n")?;
        writeln!(
            out,
            "Injected: {} non-Avro values on orders.events.v1, {} on requests.events.v1, {} outbox \
             rows that do not fit OrderPlaced; and the orders of the customer the ERP refuses.\n",
            self.poison.orders, self.poison.requests, self.poison.outbox
        )?;
        writeln!(out, "| topic | class | found | injected |")?;
        writeln!(out, "|---|---|---|---|")?;
        let mut kinds: Vec<_> = self
            .dead_letters
            .keys()
            .chain(self.expected_dead_letters.keys())
            .collect();
        kinds.sort();
        kinds.dedup();
        for kind in kinds {
            writeln!(
                out,
                "| dlq.{}.v1 | {} | {} | {} |",
                kind.0,
                kind.1,
                self.dead_letters.get(kind).unwrap_or(&0),
                self.expected_dead_letters.get(kind).unwrap_or(&0)
            )?;
        }

        writeln!(out, "\n### Faults and recovery\n")?;
        if !self.recoveries.is_empty() {
            writeln!(
                out,
                "Recovery: from the SIGKILL until the restarted process answered /readyz, and until \
                 it did work again (its first message consumed or event relayed; ingest: ready). The \
                 restart follows the kill after 0–3 s, as a supervisor would.\n"
            )?;
            writeln!(
                out,
                "| service | killed at (s) | ready after (median / max s) | working after (median / max s) | max lag |"
            )?;
            writeln!(out, "|---|---|---|---|---|")?;
            let mut services: Vec<&'static str> =
                self.recoveries.iter().map(|r| r.service).collect();
            services.sort_unstable();
            services.dedup();
            for service in services {
                let of: Vec<&Recovery> = self
                    .recoveries
                    .iter()
                    .filter(|r| r.service == service)
                    .collect();
                let ready: Vec<f64> = of.iter().map(|r| r.ready_secs).collect();
                let working: Vec<f64> = of.iter().filter_map(|r| r.working_secs).collect();
                let lag = self.max_lag.get(service).map_or_else(
                    || "—".to_owned(),
                    |lag| {
                        if service.contains("relay") {
                            format!("{:.0} KiB of WAL", lag / 1024.0)
                        } else {
                            format!("{lag:.0} messages")
                        }
                    },
                );
                let at: Vec<String> = of.iter().map(|r| format!("{:.0}", r.at_secs)).collect();
                writeln!(
                    out,
                    "| {service} | {} | {} | {} | {lag} |",
                    at.join(", "),
                    median_max(&ready),
                    if working.is_empty() {
                        "—".to_owned()
                    } else {
                        median_max(&working)
                    }
                )?;
            }
        }
        writeln!(out)?;
        for (server, away) in self.restarts {
            writeln!(
                out,
                "- {server} restarted: stopped and answering again after {:.1} s",
                away.as_secs_f64()
            )?;
        }
        for (api, what, at) in self.storms {
            writeln!(out, "- sandbox {api}: {what}, from {at:.0} s")?;
        }
        Ok(())
    }
}

fn median_max(values: &[f64]) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match (sorted.get(sorted.len() / 2), sorted.last()) {
        (Some(median), Some(max)) => format!("{median:.1} / {max:.1}"),
        _ => "—".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::median_max;

    #[test]
    fn median_and_max_of_recoveries() {
        assert_eq!(median_max(&[3.0, 1.0, 2.0]), "2.0 / 3.0");
        assert_eq!(median_max(&[]), "—");
    }
}
