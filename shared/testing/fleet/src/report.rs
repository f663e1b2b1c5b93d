//! The run's figures as Markdown: what came in, what arrived, what was lost
//! or applied twice, what was dead-lettered, and what each fault cost.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::cost::Sampled;
use crate::fleet::Recovery;
use crate::load::{Accepted, Path, Plan, PoisonSent};
use crate::reconcile::{OnKafka, Snapshot};
use crate::run::{Disruption, Sample};

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
    /// The servers' faults (Kafka nodes, Postgres), one at a time.
    pub disruptions: &'a [Disruption],
    /// The fleet's lag and work, once a second.
    pub series: &'a [Sample],
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
    /// Each local process's use when idle (ready, nothing sent) and at the
    /// end.
    pub cost: (&'a Sampled, &'a Sampled),
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

    /// Each local process's memory and CPU time (none for containers).
    fn write_cost(&self, out: &mut String) -> std::fmt::Result {
        let (idle, end) = self.cost;
        if idle.is_empty() {
            return Ok(());
        }
        writeln!(out, "\n### Cost\n")?;
        writeln!(
            out,
            "Each process's resident memory when the fleet was ready and idle, its peak by the \
             end, and the CPU time it spent from idle to the end ({:.0} s, {} events; a debug \
             build unless the run says otherwise). A process restarted in between is shown from \
             its restart.\n",
            self.load_secs + self.settle_secs,
            self.accepted.len()
        )?;
        writeln!(
            out,
            "| process | idle RSS (MiB) | peak RSS (MiB) | CPU (s) |"
        )?;
        writeln!(out, "|---|---:|---:|---:|")?;
        let mib = |kib: u64| kib as f64 / 1024.0;
        for (name, (pid, at_end)) in end {
            let (idle_rss, cpu) = match idle.get(name) {
                Some((before, usage)) if before == pid => (
                    format!("{:.1}", mib(usage.rss_kib)),
                    at_end.cpu_secs - usage.cpu_secs,
                ),
                _ => ("—".to_owned(), at_end.cpu_secs),
            };
            writeln!(
                out,
                "| {name} | {idle_rss} | {:.1} | {cpu:.1} |",
                mib(at_end.peak_kib)
            )?;
        }
        Ok(())
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

        self.write_cost(out)?;

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
        if !self.disruptions.is_empty() {
            writeln!(
                out,
                "Servers, one at a time: back = the node or Postgres answering again; whole = \
                 every partition's replicas in sync again; stalled = the longest time, from \
                 the fault until a minute after the server was back (or the next server's fault), \
                 in which no service did any work (sampled each second, so 1 s is no stall); max \
                 lag = the fleet's consumer lag at its highest then; caught up = until the lag \
                 was back to its level before the fault (before the next server's fault). The services' SIGKILLs and the API \
                 storms overlap (their times are above and below).\n"
            )?;
            writeln!(
                out,
                "| fault | at (s) | back after (s) | whole after (s) | stalled (s) | max lag (messages) | caught up after (s) |"
            )?;
            writeln!(out, "|---|---|---|---|---|---|---|")?;
            for (i, disruption) in self.disruptions.iter().enumerate() {
                let next = self.disruptions.get(i + 1).map(|d| d.at_secs);
                let effect = Effect::of(self.series, disruption, next);
                writeln!(
                    out,
                    "| {} | {:.0} | {:.1} | {} | {:.0} | {:.0} | {} |",
                    disruption.what,
                    disruption.at_secs,
                    disruption.back_secs,
                    disruption
                        .whole_secs
                        .map_or_else(|| "—".to_owned(), |s| format!("{s:.1}")),
                    effect.stalled_secs,
                    effect.max_lag,
                    effect.caught_up_secs.map_or_else(
                        || if next.is_some() {
                            "not before the next".to_owned()
                        } else {
                            "not in the run".to_owned()
                        },
                        |s| format!("{s:.0}")
                    ),
                )?;
            }
            writeln!(out)?;
        }
        for (api, what, at) in self.storms {
            writeln!(out, "- sandbox {api}: {what}, from {at:.0} s")?;
        }
        Ok(())
    }
}

/// What one server fault did to the fleet, read from the series.
#[derive(Debug, PartialEq)]
struct Effect {
    /// The longest time without any work, in the minute after the server
    /// is back (or until the next server's fault).
    stalled_secs: f64,
    /// The highest lag in that minute.
    max_lag: f64,
    /// From the fault until the lag was back to its level before it (None:
    /// not before the next server fault, or the series' end).
    caught_up_secs: Option<f64>,
}

impl Effect {
    /// How long after the server is back its effect is looked for.
    const AFTER_SECS: f64 = 60.0;

    /// `disruption`'s effect, looked for until `next` (the next server
    /// fault's start) at the latest.
    fn of(series: &[Sample], disruption: &Disruption, next: Option<f64>) -> Self {
        let start = disruption.at_secs;
        let end = (start + disruption.back_secs + Self::AFTER_SECS).min(next.unwrap_or(f64::MAX));
        let before = series.iter().rev().find(|s| s.at_secs < start);
        let (baseline, mut work) = before.map_or((0.0, 0.0), |s| (s.lag, s.work));
        let window: Vec<&Sample> = series
            .iter()
            .filter(|s| (start..=end).contains(&s.at_secs))
            .collect();
        let mut worked_at = start;
        let mut stalled_secs: f64 = 0.0;
        for sample in &window {
            if sample.work > work {
                stalled_secs = stalled_secs.max(sample.at_secs - worked_at);
                worked_at = sample.at_secs;
                work = sample.work;
            }
        }
        if let Some(last) = window.last() {
            stalled_secs = stalled_secs.max(last.at_secs - worked_at);
        }
        let peak = window
            .iter()
            .copied()
            .max_by(|a, b| a.lag.total_cmp(&b.lag));
        let max_lag = peak.map_or(0.0, |s| s.lag);
        // Backlog within the noise of a steady load is no backlog.
        let level = baseline + (baseline * 0.1).max(50.0);
        let caught_up_secs = if max_lag <= level {
            Some(0.0)
        } else {
            let peak_at = peak.map_or(start, |s| s.at_secs);
            // Past the next fault, a backlog is no longer this one's.
            let until = next.unwrap_or(f64::MAX);
            series
                .iter()
                .take_while(|s| s.at_secs <= until)
                .find(|s| s.at_secs > peak_at && s.lag <= level)
                .map(|s| s.at_secs - start)
        };
        Self {
            stalled_secs,
            max_lag,
            caught_up_secs,
        }
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
    use super::{Effect, median_max};
    use crate::run::{Disruption, Sample};

    fn series(points: &[(f64, f64, f64)]) -> Vec<Sample> {
        points
            .iter()
            .map(|&(at_secs, lag, work)| Sample { at_secs, lag, work })
            .collect()
    }

    fn at(at_secs: f64, back_secs: f64) -> Disruption {
        Disruption {
            what: "x".into(),
            at_secs,
            back_secs,
            whole_secs: None,
        }
    }

    #[test]
    fn a_fault_s_stall_backlog_and_catch_up_are_read_from_the_series() {
        let series = series(&[
            (1.0, 10.0, 100.0),
            (2.0, 10.0, 110.0),
            // the fault at 2.5: nothing done from 3 to 6, the lag builds
            (3.0, 40.0, 110.0),
            (4.0, 200.0, 110.0),
            (5.0, 400.0, 110.0),
            (6.0, 300.0, 150.0),
            (7.0, 100.0, 260.0),
            (8.0, 20.0, 300.0),
            (9.0, 15.0, 310.0),
        ]);
        let effect = Effect::of(&series, &at(2.5, 1.0), None);
        assert_eq!(
            effect,
            Effect {
                stalled_secs: 3.5,
                max_lag: 400.0,
                caught_up_secs: Some(5.5),
            }
        );
    }

    #[test]
    fn no_backlog_is_caught_up_at_once_and_an_endless_one_never() {
        let calm = series(&[(1.0, 30.0, 1.0), (2.0, 60.0, 2.0), (3.0, 30.0, 3.0)]);
        assert_eq!(
            Effect::of(&calm, &at(1.5, 0.5), None).caught_up_secs,
            Some(0.0)
        );
        let stuck = series(&[(1.0, 0.0, 1.0), (2.0, 500.0, 1.0), (3.0, 900.0, 1.0)]);
        let effect = Effect::of(&stuck, &at(1.5, 0.5), None);
        assert_eq!(effect.caught_up_secs, None);
        assert_eq!(effect.stalled_secs, 1.5);
        // The next server's fault ends the window: its backlog is its own.
        let effect = Effect::of(&stuck, &at(0.5, 0.5), Some(1.5));
        assert_eq!((effect.max_lag, effect.stalled_secs), (0.0, 0.5));
        let drained = series(&[(1.0, 0.0, 1.0), (2.0, 500.0, 1.0), (3.0, 0.0, 2.0)]);
        assert_eq!(
            Effect::of(&drained, &at(1.5, 0.1), Some(2.5)).caught_up_secs,
            None,
            "drained only after the next fault"
        );
        assert_eq!(
            Effect::of(&drained, &at(1.5, 0.1), None).caught_up_secs,
            Some(1.5)
        );
    }

    #[test]
    fn median_and_max_of_recoveries() {
        assert_eq!(median_max(&[3.0, 1.0, 2.0]), "2.0 / 3.0");
        assert_eq!(median_max(&[]), "—");
    }
}
