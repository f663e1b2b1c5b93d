//! After the storm: every accepted source event looked up where it should
//! have landed — its topic (by the `sluice.event_id` header), the sandbox's
//! sheets and ERP records, the saga table — and every dead letter counted
//! against the poison that was sent.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::load::{Accepted, EVENTS_PER_REQUEST, Plan, PoisonSent};

/// The outside world's state of one run, without Kafka: cheap enough to
/// poll until the fleet has settled.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Requests whose row shows their last event.
    pub request_rows_final: usize,
    /// Requests whose row shows an earlier event.
    pub request_rows_stale: usize,
    /// Requests with no row.
    pub request_rows_missing: usize,
    /// Rows beyond the first for a request key.
    pub request_rows_duplicate: usize,
    /// Sagas by state.
    pub saga_states: BTreeMap<String, usize>,
    /// Orders with no saga.
    pub sagas_missing: usize,
    /// Orders whose saga ended in the state their customer does not call
    /// for (a refused one confirmed, or an accepted one rejected).
    pub sagas_wrong: usize,
    /// Orders whose Orders row shows their saga's outcome.
    pub order_rows_final: usize,
    /// Rows beyond the first for an order key.
    pub order_rows_duplicate: usize,
    /// Sale orders for accepted orders.
    pub erp_records: usize,
    /// Accepted orders with no sale order.
    pub erp_missing: usize,
    /// Records beyond the first for an external reference.
    pub erp_duplicate: usize,
    /// Refused orders that got a record anyway.
    pub erp_unexpected: usize,
    /// Command ids listed twice on one record (applied twice).
    pub erp_commands_twice: usize,
    /// Saga steps that succeeded more than once.
    pub saga_steps_twice: usize,
    /// Aggregates whose effect is missing or not what their last event says.
    pub unsettled: BTreeSet<String>,
}

impl Snapshot {
    /// Whether every source event has had its effect.
    pub fn settled(&self, plan: &Plan) -> bool {
        let ended: usize = ["COMPLETED", "COMPENSATED", "FAILED"]
            .iter()
            .filter_map(|state| self.saga_states.get(*state))
            .sum();
        self.request_rows_final == plan.requests
            && ended == plan.orders
            && self.order_rows_final == plan.orders
    }

    /// Side effects made twice.
    pub fn duplicates(&self) -> usize {
        self.request_rows_duplicate
            + self.order_rows_duplicate
            + self.erp_duplicate
            + self.erp_unexpected
            + self.erp_commands_twice
            + self.saga_steps_twice
    }

    /// Reads the sandbox and the saga table.
    pub async fn take(plan: &Plan, sandbox: &str, pool: &PgPool) -> Result<Snapshot> {
        let mut snapshot = Snapshot::default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .context("building the HTTP client")?;
        let requests = Grid::fetch(&http, sandbox, "Requests").await?;
        let last = EVENTS_PER_REQUEST - 1;
        for index in 0..plan.requests {
            let rows = requests.rows_of(&plan.request_id(index));
            snapshot.request_rows_duplicate += rows.len().saturating_sub(1);
            match rows.first() {
                None => {
                    snapshot.request_rows_missing += 1;
                    snapshot.unsettled.insert(plan.request_id(index));
                }
                Some(row) => {
                    let at_last = requests.cell(row, "Status") == Plan::status_after(last)
                        && requests.cell(row, "Changed by") == Plan::changed_by(last);
                    if at_last {
                        snapshot.request_rows_final += 1;
                    } else {
                        snapshot.request_rows_stale += 1;
                        snapshot.unsettled.insert(plan.request_id(index));
                    }
                }
            }
        }

        let states: HashMap<String, String> = sqlx::query_as::<_, (String, String)>(
            "SELECT business_key, state FROM saga.sagas WHERE business_key LIKE $1",
        )
        .bind(format!("order-{}-%", plan.run))
        .fetch_all(pool)
        .await
        .context("reading the saga table")?
        .into_iter()
        .collect();
        snapshot.saga_steps_twice = sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM (SELECT st.saga_id, st.step FROM saga.saga_steps st \
             JOIN saga.sagas s USING (saga_id) WHERE st.event = 'succeeded' \
             AND s.business_key LIKE $1 GROUP BY 1, 2 HAVING count(*) > 1) AS twice",
        )
        .bind(format!("order-{}-%", plan.run))
        .fetch_one(pool)
        .await
        .context("reading the saga step log")?
        .try_into()
        .unwrap_or(usize::MAX);

        let orders = Grid::fetch(&http, sandbox, "Orders").await?;
        let records = erp_records(&http, sandbox).await?;
        for index in 0..plan.orders {
            let order = plan.order_id(index);
            let refused = plan.refused(index);
            let (expected_state, expected_row) = if refused {
                ("COMPENSATED", "REJECTED")
            } else {
                ("COMPLETED", "CONFIRMED")
            };
            let mut settled = true;
            match states.get(&order) {
                None => {
                    snapshot.sagas_missing += 1;
                    settled = false;
                }
                Some(state) => {
                    *snapshot.saga_states.entry(state.clone()).or_default() += 1;
                    let ended = matches!(state.as_str(), "COMPLETED" | "COMPENSATED" | "FAILED");
                    if ended && state != expected_state {
                        snapshot.sagas_wrong += 1;
                    }
                    settled &= state == expected_state;
                }
            }
            let rows = orders.rows_of(&order);
            snapshot.order_rows_duplicate += rows.len().saturating_sub(1);
            if rows
                .first()
                .is_some_and(|row| orders.cell(row, "Status") == expected_row)
            {
                snapshot.order_rows_final += 1;
            } else {
                settled = false;
            }
            let made = records.get(order.as_str()).map_or(&[][..], Vec::as_slice);
            snapshot.erp_duplicate += made.len().saturating_sub(1);
            if refused {
                snapshot.erp_unexpected += made.len();
            } else if made.is_empty() {
                snapshot.erp_missing += 1;
                settled = false;
            } else {
                snapshot.erp_records += 1;
            }
            if !settled {
                snapshot.unsettled.insert(order.clone());
            }
            for commands in made {
                let ids: Vec<&str> = commands.split_whitespace().collect();
                let distinct: HashSet<&str> = ids.iter().copied().collect();
                snapshot.erp_commands_twice += ids.len() - distinct.len();
            }
        }
        Ok(snapshot)
    }
}

/// A sheet as the sandbox holds it: a header row, then rows.
struct Grid {
    columns: HashMap<String, usize>,
    by_key: HashMap<String, Vec<usize>>,
    rows: Vec<Vec<Value>>,
}

impl Grid {
    async fn fetch(http: &reqwest::Client, sandbox: &str, sheet: &str) -> Result<Grid> {
        let body: Value = get_json(
            http,
            &format!("{sandbox}/admin/spreadsheets/sluice-demo/{sheet}"),
        )
        .await?;
        let mut rows: Vec<Vec<Value>> = match body.get("values").and_then(Value::as_array) {
            Some(values) => values
                .iter()
                .map(|row| row.as_array().cloned().unwrap_or_default())
                .collect(),
            None => Vec::new(),
        };
        let header = if rows.is_empty() {
            Vec::new()
        } else {
            rows.remove(0)
        };
        let columns = header
            .iter()
            .enumerate()
            .filter_map(|(index, name)| Some((name.as_str()?.to_owned(), index)))
            .collect();
        let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
        for (index, row) in rows.iter().enumerate() {
            if let Some(key) = row.first().and_then(Value::as_str) {
                by_key.entry(key.to_owned()).or_default().push(index);
            }
        }
        Ok(Grid {
            columns,
            by_key,
            rows,
        })
    }

    fn rows_of(&self, key: &str) -> Vec<usize> {
        self.by_key.get(key).cloned().unwrap_or_default()
    }

    fn cell(&self, row: &usize, column: &str) -> String {
        self.columns
            .get(column)
            .and_then(|&index| self.rows.get(*row)?.get(index))
            .map(|value| {
                value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_owned)
            })
            .unwrap_or_default()
    }
}

/// The JSON body of a GET of the sandbox's admin API.
async fn get_json<T: serde::de::DeserializeOwned>(http: &reqwest::Client, url: &str) -> Result<T> {
    http.get(url)
        .send()
        .await
        .with_context(|| format!("reading {url}"))?
        .json()
        .await
        .with_context(|| format!("decoding {url}"))
}

/// Sale orders by external reference: each record's applied command ids.
async fn erp_records(
    http: &reqwest::Client,
    sandbox: &str,
) -> Result<HashMap<String, Vec<String>>> {
    let records: Vec<Value> = get_json(http, &format!("{sandbox}/admin/erp/sale.order")).await?;
    let mut by_reference: HashMap<String, Vec<String>> = HashMap::new();
    for record in records {
        let Some(reference) = record.get("x_sluice_external_ref").and_then(Value::as_str) else {
            continue;
        };
        let commands = record
            .get("x_sluice_commands")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        by_reference
            .entry(reference.to_owned())
            .or_default()
            .push(commands);
    }
    Ok(by_reference)
}

/// A message read back: its key and headers.
#[derive(Debug)]
pub struct ReadBack {
    /// The Kafka key.
    pub key: Option<String>,
    /// Headers whose values are UTF-8.
    pub headers: HashMap<String, String>,
}

/// Every message of `topic`, read `read_committed` from the beginning to
/// the end of each partition.
pub fn read_topic(bootstrap: &str, topic: &str) -> Result<Vec<ReadBack>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set(
            "group.id",
            format!("sluice-fleet-reader-{}", Uuid::new_v4()),
        )
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .context("creating a reader")?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .with_context(|| format!("reading the metadata of {topic}"))?;
    let partitions = metadata
        .topics()
        .first()
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    if partitions == 0 {
        bail!("{topic} has no partitions");
    }
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment.add_partition_offset(topic, i32::try_from(partition)?, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut messages = Vec::new();
    let mut at_end = HashSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    while at_end.len() < partitions {
        if std::time::Instant::now() > deadline {
            bail!("reading {topic} did not reach its end in 600 s");
        }
        match consumer.poll(Duration::from_secs(1)) {
            Some(Ok(message)) => {
                let headers = message
                    .headers()
                    .map(|headers| {
                        headers
                            .iter()
                            .filter_map(|h| {
                                Some((h.key.to_owned(), String::from_utf8(h.value?.to_vec()).ok()?))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                messages.push(ReadBack {
                    key: message
                        .key()
                        .and_then(|k| std::str::from_utf8(k).ok())
                        .map(str::to_owned),
                    headers,
                });
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                at_end.insert(partition);
            }
            Some(Err(error)) => bail!("reading {topic}: {error}"),
            None => {}
        }
    }
    Ok(messages)
}

/// What the topics hold of the accepted events.
#[derive(Debug, Default)]
pub struct OnKafka {
    /// Accepted events found on their topic.
    pub found: usize,
    /// Accepted events not on their topic (ids, a few).
    pub lost: Vec<Uuid>,
    /// Copies beyond the first (at-least-once resends; deduplicated
    /// downstream by event id).
    pub copies: usize,
    /// Keys whose events first appear out of their order.
    pub order_breaks: usize,
    /// Orders with more than one distinct OrderConfirmed/OrderRejected.
    pub verdicts_twice: usize,
}

/// Looks every accepted event up on its topic.
pub fn events_on_kafka(bootstrap: &str, accepted: &[Accepted]) -> Result<OnKafka> {
    let mut seen: HashMap<Uuid, usize> = HashMap::new();
    let mut next_seq: HashMap<String, usize> = HashMap::new();
    let by_id: HashMap<Uuid, &Accepted> = accepted.iter().map(|a| (a.event_id, a)).collect();
    let mut report = OnKafka::default();
    let mut verdicts: HashMap<String, HashSet<String>> = HashMap::new();
    for topic in ["requests.events.v1", "orders.events.v1"] {
        for message in read_topic(bootstrap, topic)? {
            let Some(id) = message
                .headers
                .get("sluice.event_id")
                .and_then(|id| Uuid::parse_str(id).ok())
            else {
                continue; // poison: counted through the dead letters
            };
            if let Some(source) = by_id.get(&id) {
                let copies = seen.entry(id).or_default();
                *copies += 1;
                if *copies == 1 && source.aggregate_type == "requests" {
                    let expected = next_seq.entry(source.aggregate_id.clone()).or_default();
                    if source.seq != *expected {
                        report.order_breaks += 1;
                    }
                    *expected = source.seq + 1;
                }
            } else if let Some(kind) = message.headers.get("sluice.event_type")
                && matches!(kind.as_str(), "OrderConfirmed" | "OrderRejected")
                && let Some(key) = message.key
            {
                verdicts.entry(key).or_default().insert(id.to_string());
            }
        }
    }
    report.found = seen.len();
    report.copies = seen.values().map(|n| n - 1).sum();
    report.lost = accepted
        .iter()
        .filter(|a| !seen.contains_key(&a.event_id))
        .map(|a| a.event_id)
        .collect();
    report.verdicts_twice = verdicts.values().filter(|ids| ids.len() > 1).count();
    Ok(report)
}

/// Dead letters of run `run` (their original key names it) by (service,
/// error class), each original key once: a letter written twice (its
/// service killed before committing) is one, and so are the commands a saga
/// sent again after a step's timeout for one refused order (each refused
/// in turn, each its own letter).
pub fn dead_letters(bootstrap: &str, run: &str) -> Result<BTreeMap<(String, String), usize>> {
    let mut letters: BTreeMap<(String, String), HashSet<String>> = BTreeMap::new();
    // The dead-letter topics the contract declares (schemas/topics.toml).
    let catalog = sluice_contracts::Catalog::embedded().context("reading the contracts")?;
    let topics = catalog
        .topics()
        .iter()
        .map(|topic| topic.name())
        .filter(|name| name.starts_with("dlq."));
    for topic in topics {
        let of_run = read_topic(bootstrap, topic)?
            .into_iter()
            .filter(|message| message.key.as_deref().is_some_and(|key| key.contains(run)));
        for message in of_run {
            let header = |name: &str| {
                message
                    .headers
                    .get(&format!("sluice.dlq.{name}"))
                    .cloned()
                    .unwrap_or_default()
            };
            let original = format!(
                "{}/{}",
                header("original-topic"),
                message.key.clone().unwrap_or_default()
            );
            letters
                .entry((header("service"), header("error-class")))
                .or_default()
                .insert(original);
        }
    }
    Ok(letters
        .into_iter()
        .map(|(kind, originals)| (kind, originals.len()))
        .collect())
}

/// The dead letters the injected poison and refusals call for.
pub fn expected_dead_letters(
    poison: PoisonSent,
    refused: usize,
) -> BTreeMap<(String, String), usize> {
    let mut expected = BTreeMap::new();
    let mut add = |service: &str, class: &str, count: usize| {
        if count > 0 {
            expected.insert((service.to_owned(), class.to_owned()), count);
        }
    };
    add("transformer", "DECODE", poison.orders + poison.requests);
    add("saga-orchestrator", "DECODE", poison.orders);
    add("outbox-relay", "VALIDATION", poison.outbox);
    add("erp-sink", "PERMANENT", refused);
    expected
}
