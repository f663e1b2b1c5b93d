//! A saga as a file (TOML): the event that starts it, its steps — the
//! command each sends and the one that undoes it, written in the mapping
//! language over the start event and the saga (`saga.id`, and while
//! compensating `saga.failed_step`, `saga.reason`) — and the events of its
//! aggregate that announce how it ended. Parsed strictly and checked
//! against the contracts when it loads: a field the start event does not
//! have, an outcome the aggregate does not declare or a field it requires
//! left out is refused naming the place.
//!
//! ```toml
//! name = "order-fulfilment"      # saga_type in Postgres; part of every saga id
//! aggregate = "orders"           # its events start it, its outcomes join them
//! starts_on = "OrderPlaced"
//!
//! [[steps]]
//! name = "reserve-in-erp"
//! timeout = "30s"                # per reply, compensations too
//! retries = 2                    # sends again after a timeout
//! command.erp = { model = "sale.order", operation = "CREATE", external_ref = { copy = "aggregate_id" }, fields = [] }
//! compensation.erp = { model = "sale.order", operation = "CANCEL", external_ref = { copy = "aggregate_id" }, fields = [] }
//!
//! [completed]
//! event_type = "OrderConfirmed"
//! payload = [{ name = "saga_id", value = { copy = "saga.id" } }]
//! ```

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value as Json;
use sluice_avro::{EventInput, event_contract, event_record};
use sluice_contracts::Catalog;
use sluice_contracts::types::ScalarValue;
use sluice_mapping::build::{self, Command, Origin};
use sluice_mapping::check::{check_in_saga, check_keepable, check_outcome};
use sluice_mapping::eval::{Lookups, Scope, evaluate};
use sluice_mapping::rules::{Assignment, FieldSpec, Rule, RulesError, Target, TargetSpec};
use uuid::Uuid;

use crate::definition::{Context, Event, Failure, Made, Message, Payload, Saga, Step};
use crate::started::Started;

/// Why a saga file was refused.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Not TOML, or not a saga's shape.
    #[error("saga file: {0}")]
    Syntax(String),
    /// A part that does not fit the contracts, or itself.
    #[error("saga file: {0}")]
    Invalid(#[from] RulesError),
}

/// Where a file saga's messages go.
#[derive(Debug, Clone)]
pub struct Outputs {
    /// erp-sink's commands.
    pub erp: String,
    /// sheets-sink's commands.
    pub sheets: String,
    /// The aggregate's events, where the outcomes go; by default its
    /// contract topic.
    pub events: Option<String>,
}

/// A step's command and its compensation, if any.
pub type Targets = (Target, Option<Target>);

/// A saga loaded from its file.
pub struct FileSaga {
    /// The saga.
    pub saga: Arc<Saga<Started>>,
    /// The aggregate whose events start it.
    pub aggregate: String,
    /// The event type that starts it.
    pub starts_on: String,
    /// Where its start events are read and its outcomes written.
    pub events_topic: String,
    /// Each step's command and compensation, as the file has them.
    pub targets: Vec<Targets>,
}

impl FileSaga {
    /// The saga of the aggregate `aggregate_id`: one per aggregate and saga
    /// type, whoever sees its start event first.
    pub fn saga_id(&self, aggregate_id: &str) -> Uuid {
        Uuid::new_v5(
            &Uuid::NAMESPACE_OID,
            format!("{}/{aggregate_id}", self.saga.name).as_bytes(),
        )
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSaga {
    name: String,
    aggregate: String,
    starts_on: String,
    steps: Vec<RawStep>,
    completed: RawOutcome,
    rejected: RawOutcome,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: String,
    /// `30s`, `2m`: how long each reply may take.
    timeout: Option<String>,
    #[serde(default)]
    retries: u32,
    command: TargetSpec,
    compensation: Option<TargetSpec>,
}

/// A step's timeout where its file gives none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutcome {
    event_type: String,
    payload: Vec<FieldSpec>,
}

/// The saga in `text`, checked against `catalog`; its messages go to `topics`
/// (the outcomes' topic defaults to the aggregate's contract topic).
pub fn load(text: &str, catalog: Arc<Catalog>, topics: &Outputs) -> Result<FileSaga, FileError> {
    let raw: RawSaga = toml::from_str(text).map_err(|err| FileError::Syntax(err.to_string()))?;
    let owner = format!("saga {}", raw.name);
    if raw.steps.is_empty() {
        return Err(RulesError::invalid(&owner, "steps", "a saga needs at least one step").into());
    }
    check_keepable(&owner, &raw.aggregate, &raw.starts_on, &catalog)
        .map_err(|err| err.placed(|place| place.replace("event_type", "starts_on")))?;
    let reads = Reads {
        owner: &owner,
        aggregate: &raw.aggregate,
        starts_on: &raw.starts_on,
        catalog: &catalog,
        topics,
    };
    let mut targets = Vec::with_capacity(raw.steps.len());
    let mut steps: Vec<Step<Started>> = Vec::with_capacity(raw.steps.len());
    for (i, step) in raw.steps.into_iter().enumerate() {
        if steps.iter().any(|s| s.name == step.name) {
            let place = format!("steps[{i}].name");
            return Err(RulesError::invalid(&owner, place, "used by two steps").into());
        }
        let (built, target) = reads.step(&format!("steps[{i}] {:?}.", step.name), step)?;
        steps.push(built);
        targets.push(target);
    }
    let kinds = (raw.aggregate.as_str(), raw.starts_on.as_str());
    let events_topic = (topics.events.clone()).unwrap_or_else(|| event_contract(&raw.aggregate));
    let completed = announcer(
        &owner,
        "completed",
        raw.completed,
        kinds,
        &catalog,
        &events_topic,
    )?;
    let rejected = announcer(
        &owner,
        "rejected",
        raw.rejected,
        kinds,
        &catalog,
        &events_topic,
    )?;
    let name = raw.name;
    let mut saga = Saga::new(
        &name,
        move |saga_id, data: &Started, failure: Option<&Failure>| {
            completed.announce(saga_id, data, failure)
        },
        move |saga_id, data: &Started, failure: Option<&Failure>| {
            rejected.announce(saga_id, data, failure)
        },
    )
    .correlated_by(|data: &Started| data.correlation_id.clone());
    for step in steps {
        saga = saga.step(step);
    }
    Ok(FileSaga {
        saga: Arc::new(saga),
        aggregate: raw.aggregate,
        starts_on: raw.starts_on,
        events_topic,
        targets,
    })
}

/// What a saga's steps are checked against and built for.
struct Reads<'a> {
    owner: &'a str,
    aggregate: &'a str,
    starts_on: &'a str,
    catalog: &'a Arc<Catalog>,
    topics: &'a Outputs,
}

impl Reads<'_> {
    /// The step `raw` at `place`, checked, and its targets.
    fn step(&self, place: &str, raw: RawStep) -> Result<(Step<Started>, Targets), FileError> {
        let command = raw.command.build(self.owner, &format!("{place}command."))?;
        let compensation = raw
            .compensation
            .map(|spec| spec.build(self.owner, &format!("{place}compensation.")))
            .transpose()?;
        self.check(&format!("{place}command."), &command, false)?;
        if let Some(compensation) = &compensation {
            // Only a compensation has a failure to read (saga.reason).
            self.check(&format!("{place}compensation."), compensation, true)?;
        }
        let timeout = match &raw.timeout {
            None => DEFAULT_TIMEOUT,
            Some(text) => timeout(text).map_err(|why| {
                let reason = format!("{text:?}: {why} (30s, 2m)");
                RulesError::invalid(self.owner, format!("{place}timeout"), reason)
            })?,
        };
        let send = sender(self.catalog, self.topics, &command, Sent::AsOfEvent);
        let mut step = Step::new(&raw.name, send)
            .timeout(timeout)
            .retries(raw.retries);
        if let Some(compensation) = &compensation {
            let undo = sender(self.catalog, self.topics, compensation, Sent::Now);
            step = step.compensate_with(undo);
        }
        Ok((step, (command, compensation)))
    }

    /// Checks `target` (at `prefix`) against the start event and the saga.
    fn check(&self, prefix: &str, target: &Target, compensating: bool) -> Result<(), RulesError> {
        let rule = Rule {
            id: self.owner.to_owned(),
            aggregate: self.aggregate.to_owned(),
            event_type: self.starts_on.to_owned(),
            when: Vec::new(),
            each: None,
            target: target.clone(),
        };
        check_in_saga(&rule, self.catalog, compensating)
            .map_err(|err| err.placed(|place| format!("{prefix}{place}")))
    }
}

/// A step's `timeout`: a duration, and not zero.
fn timeout(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Err(err) => Err(err.to_string()),
        Ok(timeout) if timeout.is_zero() => Err("no reply comes back at once".into()),
        Ok(timeout) => Ok(timeout),
    }
}

/// When a command is as of: a step's row is as of the start event, on
/// every attempt (a later event of the aggregate is newer in the sheet,
/// however late it arrives); a compensation is as of when it is sent
/// (newer than the row it undoes).
#[derive(Debug, Clone, Copy)]
enum Sent {
    AsOfEvent,
    Now,
}

/// What builds a step's command (or compensation) from the saga's data.
fn sender(
    catalog: &Arc<Catalog>,
    topics: &Outputs,
    target: &Target,
    sent: Sent,
) -> impl Fn(&Context<'_, Started>) -> Made + Send + Sync + 'static {
    let (catalog, topics, target) = (Arc::clone(catalog), topics.clone(), target.clone());
    move |ctx| {
        let event = ctx.data.record(&catalog)?;
        let saga = saga_record(ctx.saga_id, ctx.failure);
        let scope = Scope::of(&event).with_saga(&saga);
        let origin = Origin {
            command_id: ctx.command_id.to_string(),
            event_id: &ctx.data.event_id,
            correlation_id: ctx.data.correlation_id.as_deref(),
            occurred_at: match sent {
                Sent::AsOfEvent => ctx.data.occurred_at,
                Sent::Now => sluice_contracts::now_millis(),
            },
            saga: Some(ctx.step.clone()),
        };
        Ok(
            match build::command(&target, &scope, &Lookups::new(), origin)? {
                Command::Sheet(key, upsert) => Message {
                    topic: topics.sheets.clone(),
                    key,
                    value: Payload::Sheet(upsert),
                },
                Command::Erp(erp) => Message {
                    topic: topics.erp.clone(),
                    key: erp.external_ref.clone(),
                    value: Payload::Erp(erp),
                },
            },
        )
    }
}

fn saga_record(saga_id: Uuid, failure: Option<&Failure>) -> apache_avro::types::Value {
    let failure = failure.map(|f| (f.step.as_str(), f.reason.as_str()));
    sluice_mapping::saga::value(&saga_id.to_string(), failure)
}

/// Builds one of the saga's outcome events.
struct Announcer {
    catalog: Arc<Catalog>,
    topic: String,
    aggregate: String,
    event_type: String,
    payload: Vec<Assignment>,
}

fn announcer(
    owner: &str,
    place: &str,
    raw: RawOutcome,
    (aggregate, starts_on): (&str, &str),
    catalog: &Arc<Catalog>,
    topic: &str,
) -> Result<Announcer, FileError> {
    let payload = raw
        .payload
        .into_iter()
        .enumerate()
        .map(|(i, field)| field.build(owner, &format!("{place}.payload[{i}]")))
        .collect::<Result<Vec<Assignment>, _>>()?;
    // The rejection reads the failure; the completion has none.
    let compensating = place == "rejected";
    let outcome = (raw.event_type.as_str(), compensating);
    check_outcome(
        owner,
        place,
        (aggregate, starts_on),
        outcome,
        &payload,
        catalog,
    )?;
    let contract = event_contract(aggregate);
    let reserved = catalog
        .topic(&contract)
        .is_some_and(|topic| topic.spec().reserved_event_types.contains(&raw.event_type));
    if !reserved {
        let reason = format!(
            "{} is not reserved: any client of ingest could announce it; add it to \
             reserved_event_types of {contract} in topics.toml",
            raw.event_type
        );
        return Err(RulesError::invalid(owner, format!("{place}.event_type"), reason).into());
    }
    Ok(Announcer {
        catalog: Arc::clone(catalog),
        topic: topic.to_owned(),
        aggregate: aggregate.to_owned(),
        event_type: raw.event_type,
        payload,
    })
}

impl Announcer {
    /// The outcome event of saga `saga_id`: one per saga (its id is the
    /// saga's `end`), of the start event's aggregate, caused by it.
    fn announce(&self, saga_id: Uuid, data: &Started, failure: Option<&Failure>) -> Made {
        let event = data.record(&self.catalog)?;
        let saga = saga_record(saga_id, failure);
        let scope = Scope::of(&event).with_saga(&saga);
        let mut payload = serde_json::Map::new();
        for field in &self.payload {
            let value = evaluate(&field.value, &scope, &Lookups::new())
                .map_err(|reason| format!("{:?}: {reason}", field.name))?;
            payload.insert(field.name.clone(), json(value));
        }
        let event_id = Uuid::new_v5(&saga_id, b"end").to_string();
        let input = EventInput {
            aggregate_type: &self.aggregate,
            aggregate_id: &data.aggregate_id,
            event_type: &self.event_type,
            event_id: &event_id,
            occurred_at_ms: sluice_contracts::now_millis(),
            correlation_id: data.correlation_id.as_deref(),
            causation_id: Some(&data.event_id),
            payload: &Json::Object(payload),
        };
        let (contract, value) = event_record(&self.catalog, &input).map_err(|err| {
            format!(
                "{} of {}: {err}",
                self.event_type,
                event_contract(&self.aggregate)
            )
        })?;
        Ok(Message {
            topic: self.topic.clone(),
            key: data.aggregate_id.clone(),
            value: Payload::Event(Event {
                contract: contract.clone(),
                value,
                event_id,
                event_type: self.event_type.clone(),
            }),
        })
    }
}

fn json(value: ScalarValue) -> Json {
    match value {
        ScalarValue::Null => Json::Null,
        ScalarValue::String(text) => Json::String(text),
        ScalarValue::Long(n) => Json::from(n),
        ScalarValue::Double(x) => Json::from(x),
        ScalarValue::Boolean(b) => Json::Bool(b),
    }
}

#[cfg(test)]
mod tests {
    use sluice_contracts::types::{SagaStep, SheetRowUpsert};

    use super::*;
    use crate::ORDER_FULFILMENT;
    use crate::definition::Direction;

    fn outputs() -> Outputs {
        Outputs {
            erp: "erp".into(),
            sheets: "sheets".into(),
            events: None,
        }
    }

    fn shipped(text: &str) -> Result<FileSaga, FileError> {
        load(text, Arc::new(Catalog::embedded().unwrap()), &outputs())
    }

    const EVENT_ID: &str = "0b9a7f5e-54a4-4c3c-9d3a-7c1e2f6d8a01";

    fn placed() -> Started {
        Started {
            aggregate_type: "orders".into(),
            aggregate_id: "o-1".into(),
            event_type: "OrderPlaced".into(),
            event_id: EVENT_ID.into(),
            occurred_at: 1_000,
            correlation_id: Some("c-1".into()),
            causation_id: None,
            payload: serde_json::json!({
                "customer": {"customer_id": "c", "name": "Ada", "email": "ada@example.org"},
                "lines": [
                    {"sku": "TEA-1", "description": "Assam", "quantity": 2, "unit_price_minor": 1250},
                    {"sku": "MUG-1", "description": "Mug", "quantity": 1, "unit_price_minor": 899},
                ],
                "total_minor": 3399,
                "currency": "EUR",
                "shipping_country": null,
            }),
        }
    }

    fn send(saga: &FileSaga, step: &str, direction: Direction, failure: Option<&Failure>) -> Made {
        sent(saga, &placed(), step, direction, failure)
    }

    fn sent(
        saga: &FileSaga,
        data: &Started,
        step: &str,
        direction: Direction,
        failure: Option<&Failure>,
    ) -> Made {
        let step = &saga.saga.steps()[saga.saga.position(step).unwrap()];
        let ctx = Context {
            saga_id: Uuid::nil(),
            data,
            command_id: Uuid::nil(),
            step: SagaStep {
                saga_id: Uuid::nil().to_string(),
                step: step.name.clone(),
                attempt: 1,
            },
            failure,
        };
        match direction {
            Direction::Forward => (step.command)(&ctx),
            Direction::Compensate => (step.compensation.as_ref().unwrap())(&ctx),
        }
    }

    fn row(made: Made) -> SheetRowUpsert {
        match made.unwrap().value {
            Payload::Sheet(upsert) => upsert,
            other => panic!("not a row: {other:?}"),
        }
    }

    #[test]
    fn the_shipped_saga_reserves_a_line_per_item_and_records_as_of_the_placing() {
        let saga = shipped(ORDER_FULFILMENT).unwrap();
        assert_eq!(
            (saga.aggregate.as_str(), saga.starts_on.as_str()),
            ("orders", "OrderPlaced")
        );
        assert_eq!(saga.events_topic, "orders.events.v1");
        let reserve = send(&saga, "reserve-in-erp", Direction::Forward, None).unwrap();
        assert_eq!(
            (reserve.topic.as_str(), reserve.key.as_str()),
            ("erp", "o-1")
        );
        let Payload::Erp(command) = reserve.value else {
            panic!("not an ERP command")
        };
        let value = |name: &str| {
            command
                .fields
                .iter()
                .find(|field| field.name == name)
                .map(|field| field.value.clone())
        };
        let text = |text: &str| Some(ScalarValue::String(text.into()));
        assert_eq!(value("client_order_ref"), text("o-1"));
        assert_eq!(value("partner_id.email"), text("ada@example.org"));
        assert_eq!(value("order_line.1.product_id.default_code"), text("MUG-1"));
        assert_eq!(
            value("order_line.0.product_uom_qty"),
            Some(ScalarValue::Long(2))
        );
        assert_eq!(
            value("order_line.1.price_unit"),
            Some(ScalarValue::Double(8.99))
        );
        assert_eq!(command.correlation_id.as_deref(), Some("c-1"));
        assert_eq!(
            command.saga.map(|step| step.step),
            Some("reserve-in-erp".into())
        );

        // As of the placing on every attempt; the undo as of its sending,
        // with the reason.
        let recorded = row(send(&saga, "record-in-sheet", Direction::Forward, None));
        assert_eq!(recorded.occurred_at, 1_000);
        assert_eq!(recorded.row_key, "o-1");
        let failure = Failure {
            step: "record-in-sheet".into(),
            reason: "quota".into(),
        };
        let undone = row(send(
            &saga,
            "record-in-sheet",
            Direction::Compensate,
            Some(&failure),
        ));
        assert!(undone.occurred_at > 1_000);
        let note = undone.cells.iter().find(|cell| cell.column == "Note");
        assert_eq!(note.map(|cell| cell.value.clone()), text("quota"));
    }

    #[test]
    fn the_outcomes_are_events_of_the_order() {
        let saga = shipped(ORDER_FULFILMENT).unwrap();
        let failure = Failure {
            step: "reserve-in-erp".into(),
            reason: "no stock".into(),
        };
        let rejected = (saga.saga.rejected)(Uuid::nil(), &placed(), Some(&failure)).unwrap();
        assert_eq!(
            (rejected.topic.as_str(), rejected.key.as_str()),
            ("orders.events.v1", "o-1")
        );
        let Payload::Event(event) = rejected.value else {
            panic!("not an event")
        };
        assert_eq!(event.event_type, "OrderRejected");
        assert!(event.value.validate(event.contract.value_schema()));
        let json = Json::try_from(event.value).unwrap();
        assert_eq!(json["payload"]["failed_step"], "reserve-in-erp");
        assert_eq!(json["payload"]["reason"], "no stock");
        assert_eq!(json["causation_id"], EVENT_ID);
        let confirmed = (saga.saga.completed)(Uuid::nil(), &placed(), None).unwrap();
        let Payload::Event(event) = confirmed.value else {
            panic!("not an event")
        };
        assert_eq!(
            event.event_id,
            Uuid::new_v5(&Uuid::nil(), b"end").to_string()
        );
        assert_eq!(
            Json::try_from(event.value).unwrap()["payload"]["erp_reference"],
            "o-1"
        );
    }

    /// A saga started before its contract changed (a field deleted, one
    /// added with a default: both BACKWARD) goes on with the new one.
    #[test]
    fn a_saga_started_before_its_contract_changed_goes_on() {
        let saga = shipped(ORDER_FULFILMENT).unwrap();
        let mut data = placed();
        data.payload["gift_wrap"] = serde_json::json!(true);
        data.payload
            .as_object_mut()
            .unwrap()
            .remove("shipping_country");
        let made = sent(&saga, &data, "reserve-in-erp", Direction::Forward, None);
        assert!(made.is_ok(), "{made:?}");
    }

    /// What a saga file gets wrong is refused at load, naming where.
    #[test]
    fn a_saga_that_does_not_fit_its_contract_is_refused_naming_the_place() {
        let refused = |from: &str, to: &str| match shipped(&ORDER_FULFILMENT.replacen(from, to, 1))
        {
            Ok(_) => panic!("{to:?} was accepted"),
            Err(err) => err.to_string(),
        };
        let err = refused("payload.customer.email", "payload.customer.phone");
        assert!(
            err.contains("steps[0] \"reserve-in-erp\".command.erp.fields[1]"),
            "{err}"
        );
        assert!(
            err.contains("field payload.customer.phone does not exist"),
            "{err}"
        );
        let err = refused("copy = \"saga.reason\"", "copy = \"saga.why\"");
        assert!(err.contains("compensation.sheet.columns[2]"), "{err}");
        let err = refused(
            "event_type = \"OrderConfirmed\"",
            "event_type = \"OrderShipped\"",
        );
        assert!(err.contains("completed.event_type"), "{err}");
        let err = refused(
            "  { name = \"erp_reference\", value = { copy = \"aggregate_id\" } },\n",
            "",
        );
        assert!(
            err.contains("OrderConfirmed requires \"erp_reference\""),
            "{err}"
        );
        let err = refused(
            "{ name = \"erp_reference\", value = { copy = \"aggregate_id\" } }",
            "{ name = \"erp_reference\", value = { copy = \"payload.total_minor\" } }",
        );
        assert!(
            err.contains("OrderConfirmed.erp_reference takes Text"),
            "{err}"
        );
        let err = refused("timeout = \"180s\"", "timeout = \"soon\"");
        assert!(err.contains("steps[0] \"reserve-in-erp\".timeout"), "{err}");
        let err = refused("retries = 2", "retries = 2\nretry = 3");
        assert!(err.contains("unknown field `retry`"), "{err}");
        let err = refused("starts_on = \"OrderPlaced\"", "starts_on = \"OrderLost\"");
        assert!(
            err.contains("starts_on: \"OrderLost\" is not an event of orders"),
            "{err}"
        );
        // A step's command has no failure to read.
        let err = refused(
            "value = { copy = \"payload.customer.name\" }",
            "value = { copy = \"saga.reason\" }",
        );
        assert!(err.contains("command.erp.fields[2]"), "{err}");
        assert!(err.contains("field saga.reason does not exist"), "{err}");
        // A rejection's reason may be null without a default.
        let err = refused(
            "{ name = \"reason\", value = { copy = \"saga.reason\", default = \"\" } }",
            "{ name = \"reason\", value = { copy = \"saga.reason\" } }",
        );
        assert!(
            err.contains("rejected.payload[2] \"reason\": may be null"),
            "{err}"
        );
        let err = refused("timeout = \"180s\"", "timeout = \"0s\"");
        assert!(err.contains("no reply comes back at once"), "{err}");
        // An outcome any client could send.
        let err = refused(
            "event_type = \"OrderConfirmed\"\npayload = [\n  { name = \"saga_id\", value = { copy = \"saga.id\" } },\n  { name = \"erp_reference\", value = { copy = \"aggregate_id\" } },\n]",
            "event_type = \"OrderCancelled\"\npayload = [\n  { name = \"reason\", value = { constant = \"done\" } },\n  { name = \"cancelled_by\", value = { constant = \"saga\" } },\n]",
        );
        assert!(
            err.contains("completed.event_type: OrderCancelled is not reserved"),
            "{err}"
        );
    }
}
