//! The stream the fleet is driven with, and the ledger of what the sources
//! accepted: an outbox row counts once its transaction is known committed,
//! an HTTP event once ingest answered 202.
//!
//! Requests carry ten events each (created, then nine status changes) so a
//! row's final value shows whether per-key order held; orders are one
//! `OrderPlaced` each and start a saga. Even-numbered aggregates go through
//! the outbox, odd ones over HTTP: one path per key, as a business service
//! would have it. Events are sent in rounds (round r = every request's r-th
//! event), and a round starts only once the one before is accepted, so no
//! key ever has two events in flight.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::TryStreamExt;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

/// Events a request goes through.
pub const EVENTS_PER_REQUEST: usize = 10;
/// Events in one outbox transaction or one HTTP batch.
const BATCH: usize = 100;
/// Batches in flight per path.
const IN_FLIGHT: usize = 4;
/// The customer name the sandbox's Odoo is told to refuse.
pub const REFUSED_CUSTOMER: &str = "Refused By The ERP";
/// The statuses a request moves through; the transformer's rule maps these.
const STATUSES: [&str; 3] = ["IN_PROGRESS", "RESOLVED", "CLOSED"];

/// What to send.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Prefix of every aggregate id of this run.
    pub run: String,
    /// Requests (each `EVENTS_PER_REQUEST` events).
    pub requests: usize,
    /// Orders (one saga each).
    pub orders: usize,
    /// Every n-th order is by the customer the ERP refuses.
    pub refuse_every: usize,
}

/// Where an event entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// A row of the business outbox.
    Outbox,
    /// ingest's HTTP API.
    Http,
}

/// One event to send.
#[derive(Debug, Clone)]
pub struct SourceEvent {
    /// Its id, chosen by the source.
    pub event_id: Uuid,
    /// `orders` or `requests`.
    pub aggregate_type: &'static str,
    /// Kafka key.
    pub aggregate_id: String,
    /// Payload record.
    pub event_type: &'static str,
    /// Position in its aggregate's life.
    pub seq: usize,
    /// The payload, as JSON.
    pub payload: Value,
}

impl Plan {
    /// Total source events.
    pub fn events(&self) -> usize {
        self.requests * EVENTS_PER_REQUEST + self.orders
    }

    /// The id of request `index`.
    pub fn request_id(&self, index: usize) -> String {
        format!("req-{}-{index:06}", self.run)
    }

    /// The id of order `index`.
    pub fn order_id(&self, index: usize) -> String {
        format!("order-{}-{index:05}", self.run)
    }

    /// Whether order `index` is refused by the ERP.
    pub fn refused(&self, index: usize) -> bool {
        self.refuse_every > 0 && index % self.refuse_every == self.refuse_every - 1
    }

    /// Status a request has after its event `seq` (seq ≥ 1).
    pub fn status_after(seq: usize) -> &'static str {
        STATUSES[(seq - 1) % STATUSES.len()]
    }

    /// `Changed by` of a request's event `seq`, which names it.
    pub fn changed_by(seq: usize) -> String {
        format!("seq-{seq}")
    }

    fn request_event(&self, index: usize, seq: usize) -> SourceEvent {
        let (event_type, payload) = if seq == 0 {
            (
                "RequestCreated",
                json!({"requester_email": format!("r{index}@example.org"),
                       "subject": format!("Request {index}"), "description": "Please call back.",
                       "priority": "HIGH", "category": "delivery"}),
            )
        } else {
            let from = if seq == 1 {
                "OPEN"
            } else {
                Self::status_after(seq - 1)
            };
            (
                "RequestStatusChanged",
                json!({"from_status": from, "to_status": Self::status_after(seq),
                       "changed_by": Self::changed_by(seq)}),
            )
        };
        SourceEvent {
            event_id: Uuid::new_v4(),
            aggregate_type: "requests",
            aggregate_id: self.request_id(index),
            event_type,
            seq,
            payload,
        }
    }

    fn order_event(&self, index: usize) -> SourceEvent {
        let name = if self.refused(index) {
            REFUSED_CUSTOMER.to_owned()
        } else {
            format!("Customer {index}")
        };
        let quantity = 1 + index % 3;
        SourceEvent {
            event_id: Uuid::new_v4(),
            aggregate_type: "orders",
            aggregate_id: self.order_id(index),
            event_type: "OrderPlaced",
            seq: 0,
            payload: json!({
                "customer": {"customer_id": format!("c-{index}"), "name": name,
                             "email": format!("c{index}@example.org")},
                "lines": [{"sku": format!("TEA-{}", index % 50), "description": "Assam",
                           "quantity": quantity, "unit_price_minor": 650}],
                "total_minor": 650 * quantity, "currency": "EUR", "shipping_country": "DE"}),
        }
    }

    /// Round `round`'s events for `path`, in order.
    fn round(&self, round: usize, path: Path) -> Vec<SourceEvent> {
        let mine = |index: usize| index.is_multiple_of(2) == (path == Path::Outbox);
        let requests = (0..self.requests)
            .filter(|&index| mine(index))
            .map(|index| self.request_event(index, round));
        let orders = (0..self.orders)
            .filter(|&index| index % EVENTS_PER_REQUEST == round && mine(index))
            .map(|index| self.order_event(index));
        requests.chain(orders).collect()
    }
}

/// An event a source accepted.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// Its id.
    pub event_id: Uuid,
    /// Its key.
    pub aggregate_id: String,
    /// Its aggregate type.
    pub aggregate_type: &'static str,
    /// Its position in its aggregate.
    pub seq: usize,
    /// How it came in.
    pub path: Path,
}

/// Everything the sources accepted, and the retries it took.
#[derive(Debug, Default)]
pub struct Ledger {
    accepted: Mutex<Vec<Accepted>>,
    retries: Mutex<usize>,
}

impl Ledger {
    fn accept(&self, events: &[SourceEvent], path: Path) {
        let mut accepted = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
        accepted.extend(events.iter().map(|event| Accepted {
            event_id: event.event_id,
            aggregate_id: event.aggregate_id.clone(),
            aggregate_type: event.aggregate_type,
            seq: event.seq,
            path,
        }));
    }

    fn retried(&self) {
        *self.retries.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    }

    /// What was accepted so far.
    pub fn accepted(&self) -> Vec<Accepted> {
        self.accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Batches sent again after an error or no answer.
    pub fn retries(&self) -> usize {
        *self.retries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The two sources, paced to `rate` events per second overall.
pub struct Driver<'a> {
    /// What to send.
    pub plan: &'a Plan,
    /// The business database (its `outbox` table).
    pub pool: &'a PgPool,
    /// ingest's events API base URL.
    pub ingest: &'a str,
    /// ingest's bearer token.
    pub token: &'a str,
    /// Events per second, both paths together.
    pub rate: f64,
    /// Where accepted events are noted.
    pub ledger: &'a Ledger,
}

impl Driver<'_> {
    /// Sends every round through both paths.
    pub async fn run(&self) -> Result<()> {
        let started = Instant::now();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .context("building the HTTP client")?;
        for round in 0..EVENTS_PER_REQUEST {
            let outbox = self.send_round(round, Path::Outbox, started, &http);
            let over_http = self.send_round(round, Path::Http, started, &http);
            futures::try_join!(outbox, over_http)?;
            eprintln!(
                "[fleet] round {}/{EVENTS_PER_REQUEST} accepted ({} events, {:.0} s)",
                round + 1,
                self.ledger.accepted.lock().map(|a| a.len()).unwrap_or(0),
                started.elapsed().as_secs_f64()
            );
        }
        Ok(())
    }

    async fn send_round(
        &self,
        round: usize,
        path: Path,
        started: Instant,
        http: &reqwest::Client,
    ) -> Result<()> {
        let events = self.plan.round(round, path);
        futures::stream::iter(events.chunks(BATCH).map(Ok::<_, anyhow::Error>))
            .try_for_each_concurrent(IN_FLIGHT, |batch| async move {
                self.pace(started).await;
                match path {
                    Path::Outbox => insert_outbox(self.pool, batch, self.ledger).await?,
                    Path::Http => {
                        post_batch(http, self.ingest, self.token, batch, self.ledger).await?
                    }
                }
                self.ledger.accept(batch, path);
                Ok(())
            })
            .await
    }

    /// Waits until sending more keeps the overall rate at `rate`.
    async fn pace(&self, started: Instant) {
        let sent = self.ledger.accepted.lock().map(|a| a.len()).unwrap_or(0);
        let due = Duration::from_secs_f64(sent as f64 / self.rate);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Commits `events` as outbox rows in one transaction. A failure whose
/// outcome is unknown (the connection dropped around COMMIT, Postgres
/// restarting) is settled by looking the rows up before trying again.
async fn insert_outbox(pool: &PgPool, events: &[SourceEvent], ledger: &Ledger) -> Result<()> {
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    loop {
        match try_insert(pool, events).await {
            Ok(()) => return Ok(()),
            Err(error) => {
                ledger.retried();
                eprintln!("[fleet] outbox insert failed ({error}); checking whether it committed");
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let found: Result<i64, _> =
                        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE id = ANY($1)")
                            .bind(&ids)
                            .fetch_one(pool)
                            .await;
                    match found {
                        Ok(n) if n == ids.len() as i64 => return Ok(()),
                        Ok(0) => break,
                        Ok(n) => bail!("{n} of {} rows of one transaction committed", ids.len()),
                        Err(_) => continue, // Postgres not back yet
                    }
                }
            }
        }
    }
}

async fn try_insert(pool: &PgPool, events: &[SourceEvent]) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    let types: Vec<&str> = events.iter().map(|e| e.aggregate_type).collect();
    let keys: Vec<&str> = events.iter().map(|e| e.aggregate_id.as_str()).collect();
    let event_types: Vec<&str> = events.iter().map(|e| e.event_type).collect();
    let payloads: Vec<Value> = events.iter().map(|e| e.payload.clone()).collect();
    sqlx::query(
        "INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, payload) \
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[])",
    )
    .bind(&ids)
    .bind(&types)
    .bind(&keys)
    .bind(&event_types)
    .bind(&payloads)
    .execute(pool)
    .await
    .map(|_| ())
}

/// Posts `events` as one batch until ingest answers 202. The same
/// Idempotency-Key on every try: a retry after a lost answer gets the first
/// answer, not a second copy.
async fn post_batch(
    http: &reqwest::Client,
    ingest: &str,
    token: &str,
    events: &[SourceEvent],
    ledger: &Ledger,
) -> Result<()> {
    let key = Uuid::new_v4().to_string();
    let body = json!({"events": events.iter().map(|e| json!({
        "event_id": e.event_id.to_string(), "aggregate_type": e.aggregate_type,
        "aggregate_id": e.aggregate_id, "event_type": e.event_type, "payload": e.payload,
    })).collect::<Vec<_>>()});
    loop {
        let sent = http
            .post(format!("{ingest}/v1/events/batch"))
            .bearer_auth(token)
            .header("Idempotency-Key", &key)
            .json(&body)
            .send()
            .await;
        match sent {
            Ok(response) if response.status().as_u16() == 202 => return Ok(()),
            Ok(response)
                if response.status().is_server_error() || response.status().as_u16() == 409 =>
            {
                ledger.retried();
            }
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                bail!("ingest refused a batch the contract allows: {status} {text}");
            }
            Err(_) => ledger.retried(), // killed or restarting: try again
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Values that are not Avro, and outbox rows that do not fit their contract.
#[derive(Debug, Default, Clone, Copy)]
pub struct PoisonSent {
    /// Non-Avro values produced to orders.events.v1.
    pub orders: usize,
    /// Non-Avro values produced to requests.events.v1.
    pub requests: usize,
    /// Outbox rows refused by their contract.
    pub outbox: usize,
}

/// Sends `count` of each kind of poison, spread over `over`.
pub async fn poison(
    producer: &rdkafka::producer::FutureProducer,
    pool: &PgPool,
    run: &str,
    count: usize,
    over: Duration,
) -> Result<PoisonSent> {
    use rdkafka::producer::FutureRecord;
    let mut sent = PoisonSent::default();
    for n in 0..count {
        tokio::time::sleep(over / u32::try_from(count.max(1)).unwrap_or(1)).await;
        for (topic, tally) in [
            ("orders.events.v1", &mut sent.orders),
            ("requests.events.v1", &mut sent.requests),
        ] {
            let key = format!("poison-{run}-{n}");
            let value = format!("not avro {n}");
            producer
                .send(
                    FutureRecord::to(topic).key(&key).payload(&value),
                    Duration::from_secs(300),
                )
                .await
                .map_err(|(error, _)| error)
                .with_context(|| format!("producing poison to {topic}"))?;
            *tally += 1;
        }
        let row = SourceEvent {
            event_id: Uuid::new_v4(),
            aggregate_type: "orders",
            aggregate_id: format!("order-{run}-unfit-{n}"),
            event_type: "OrderPlaced",
            seq: 0,
            payload: json!({"total_minor": "lots"}),
        };
        insert_outbox(pool, std::slice::from_ref(&row), &Ledger::default()).await?;
        sent.outbox += 1;
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            run: "t".into(),
            requests: 6,
            orders: 25,
            refuse_every: 10,
        }
    }

    #[test]
    fn every_event_is_in_exactly_one_round_and_path() {
        let plan = plan();
        let mut ids = std::collections::HashSet::new();
        let mut total = 0;
        for round in 0..EVENTS_PER_REQUEST {
            for path in [Path::Outbox, Path::Http] {
                for event in plan.round(round, path) {
                    total += 1;
                    ids.insert((event.aggregate_id, event.seq));
                }
            }
        }
        assert_eq!(total, plan.events());
        assert_eq!(ids.len(), plan.events());
    }

    #[test]
    fn a_key_keeps_one_path_and_its_events_come_in_order() {
        let plan = plan();
        for round in 0..EVENTS_PER_REQUEST {
            let outbox = plan.round(round, Path::Outbox);
            assert!(
                outbox
                    .iter()
                    .all(|e| e.aggregate_id.ends_with(|c: char| "02468".contains(c)))
            );
            for event in outbox.iter().filter(|e| e.aggregate_type == "requests") {
                assert_eq!(event.seq, round);
            }
        }
    }

    #[test]
    fn the_last_event_names_the_final_status() {
        assert_eq!(Plan::status_after(1), "IN_PROGRESS");
        assert_eq!(Plan::status_after(3), "CLOSED");
        assert_eq!(Plan::status_after(9), "CLOSED");
        let plan = plan();
        assert!(plan.refused(9) && plan.refused(19) && !plan.refused(0));
    }
}
