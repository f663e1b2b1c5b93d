//! Putting dead letters back: each one's original key, value and headers,
//! byte for byte, to its original topic (or another), plus replay headers;
//! paced, with progress, stoppable. A message is recorded in the replay log
//! once Kafka has acknowledged it, and a stop lets the message in hand
//! finish, so the log names exactly what was sent. Each message sent is on
//! the audit trail too, under the operator's name.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::producer::{FutureRecord, Producer};
use sluice_contracts::types::{AuditAction, AuditRecord};
use sluice_kafka::{AuditLog, ReplyError};
use sluice_resilience::RateLimiter;
use sluice_telemetry::liveness::WatchedProducer;
use sluice_telemetry::{CORRELATION_ID_HEADER, owned_headers};
use uuid::Uuid;

use crate::coordinate::Coordinate;
use crate::log::{LogError, Outcome, ReplayLog};
use crate::scan::Letter;

/// Header naming the dead letter a replayed message came from.
pub const REPLAYED_FROM: &str = "sluice.replay.from";
/// Header naming the replay run.
pub const REPLAY_ID: &str = "sluice.replay.id";
/// Header with the replay time, ms since the epoch.
pub const REPLAYED_AT: &str = "sluice.replay.at";

/// How long Kafka may take to acknowledge one message.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// One replay run's settings.
pub struct Run<'a> {
    /// Its id, in the headers and the log.
    pub replay_id: Uuid,
    /// Where everything goes instead of the original topics.
    pub to: Option<&'a str>,
    /// Paces the sends, when a rate is set.
    pub limiter: Option<RateLimiter>,
    /// Set on Ctrl-C: finish the message in hand and stop.
    pub stop: Arc<AtomicBool>,
    /// Where each message sent is recorded, as the operator's act.
    pub audit: &'a AuditLog,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Report {
    /// Sent and logged.
    pub sent: usize,
    /// Could not be sent (Kafka refused or timed out).
    pub failed: Vec<(Coordinate, String)>,
    /// Whether a stop cut it short.
    pub stopped: bool,
}

impl Report {
    /// How the run ended, for the log.
    pub fn outcome(&self) -> Outcome {
        if self.stopped {
            Outcome::Stopped
        } else if self.failed.is_empty() {
            Outcome::Done
        } else {
            Outcome::Failed
        }
    }
}

/// Why a run ended before its end.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The replay log.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The audit trail.
    #[error("recording the replay of {at} on the audit trail: {source}")]
    Audit {
        /// The dead letter that was sent.
        at: Coordinate,
        /// Why.
        source: ReplyError,
    },
}

/// Sends `letters` in order. A failed send is reported and the run goes on;
/// a replay log or audit trail that cannot be written ends it (what went is
/// then unknown to the record, so nothing more is sent).
pub async fn replay(
    run: &Run<'_>,
    letters: &[Letter],
    producer: &WatchedProducer,
    log: &ReplayLog,
) -> Result<Report, RecordError> {
    let progress = Progress::new(letters.len());
    let mut report = Report::default();
    for letter in letters {
        if let Some(limiter) = &run.limiter {
            limiter.acquire("replay").await;
        }
        // A producer librdkafka gave up on fails every later send.
        if run.stop.load(Ordering::SeqCst) || producer.client().fatal_error().is_some() {
            report.stopped = true;
            break;
        }
        match send(run, letter, producer).await {
            Ok(target) => {
                log.record(run.replay_id, &letter.at, &target).await?;
                audit(run, letter, &target)
                    .await
                    .map_err(|source| RecordError::Audit {
                        at: letter.at.clone(),
                        source,
                    })?;
                report.sent += 1;
                progress.sent(&letter.at, &target);
            }
            Err(why) => {
                progress.failed(&letter.at, &why);
                report.failed.push((letter.at.clone(), why));
            }
        }
    }
    progress.finish(&report);
    Ok(report)
}

/// The audit record of one dead letter sent, in its flow when it has one.
async fn audit(run: &Run<'_>, letter: &Letter, target: &Coordinate) -> Result<(), ReplyError> {
    let record = AuditRecord {
        correlation_id: letter
            .record
            .original_headers
            .iter()
            .find(|h| h.key == CORRELATION_ID_HEADER)
            .and_then(|h| h.value.as_deref())
            .map(|id| String::from_utf8_lossy(id).into_owned()),
        detail: Some(format!("to {target} in replay {}", run.replay_id)),
        ..run
            .audit
            .entry(AuditAction::DlqReplay, letter.at.to_string(), "REPLAYED")
    };
    run.audit.record(&record, None).await
}

/// Produces one dead letter's original message; where it landed.
async fn send(
    run: &Run<'_>,
    letter: &Letter,
    producer: &WatchedProducer,
) -> Result<Coordinate, String> {
    let record = &letter.record;
    let topic = run.to.unwrap_or(&record.original_topic);
    let from = letter.at.to_string();
    let replay_id = run.replay_id.to_string();
    let at = sluice_contracts::now_millis().to_string();
    let replay_headers = [
        (REPLAYED_FROM, from.as_bytes()),
        (REPLAY_ID, replay_id.as_bytes()),
        (REPLAYED_AT, at.as_bytes()),
    ];
    let headers = owned_headers(
        record
            .original_headers
            .iter()
            .map(|h| (h.key.as_str(), h.value.as_deref()))
            .chain(replay_headers.iter().map(|(k, v)| (*k, Some(*v)))),
    );
    let mut message = FutureRecord::to(topic).headers(headers);
    if let Some(key) = &record.original_key {
        message = message.key(key);
    }
    if let Some(value) = &record.original_value {
        message = message.payload(value);
    }
    match producer.send(message, DELIVERY_TIMEOUT).await {
        Ok(delivery) => Ok(Coordinate {
            topic: topic.to_owned(),
            partition: delivery.partition,
            offset: delivery.offset,
        }),
        Err((err, _)) => Err(err.to_string()),
    }
}

/// A progress bar with rate and ETA on a terminal; plain lines otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    total: usize,
    started: Instant,
}

impl Progress {
    fn new(total: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total as u64);
            if let Ok(style) =
                ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta} {msg}")
            {
                bar.set_style(style);
            }
            bar
        });
        Self {
            bar,
            total,
            started: Instant::now(),
        }
    }

    fn sent(&self, from: &Coordinate, to: &Coordinate) {
        match &self.bar {
            Some(bar) => bar.inc(1),
            None => eprintln!("replayed {from} -> {to}"),
        }
    }

    fn failed(&self, from: &Coordinate, why: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("failed {from}: {why}")),
            None => eprintln!("failed {from}: {why}"),
        }
    }

    fn finish(&self, report: &Report) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
        let secs = self.started.elapsed().as_secs_f64();
        eprintln!(
            "{} of {} sent in {secs:.1} s{}{}",
            report.sent,
            self.total,
            if report.failed.is_empty() {
                String::new()
            } else {
                format!(", {} failed", report.failed.len())
            },
            if report.stopped {
                ", stopped by Ctrl-C"
            } else {
                ""
            },
        );
    }
}
