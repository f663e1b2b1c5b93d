//! Applying one ErpCommand, once: the record is found by its external
//! reference, then written or created, its many2one references resolved
//! and its lines made (see [`crate::plan`]), then confirmed or cancelled
//! through the model's own action. The ids of the commands applied to a
//! record are kept on the record itself, written in the same call as the
//! command's values, so the mark and the effect cannot part: a command whose
//! answer was lost, redelivered after a crash or replayed from the DLQ finds
//! its id there and is not applied again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};
use sluice_contracts::types::{DeadLetterClass, ErpCommand, ErpOperation, ScalarValue};
use sluice_kafka::HandlerError;
use sluice_resilience::{Classified, ErrorClass, clipped};

use crate::actions::ModelMethods;
use crate::odoo::{OdooClient, OdooError, Protocol};
use crate::plan::{BadName, Part, Plan, Reference};

/// The fields the sink keeps on every record it writes. In Odoo they are
/// custom fields (`x_` prefix) added to the model once, by Studio or a module.
#[derive(Debug, Clone)]
pub struct RecordFields {
    /// Holds the command's external reference (a Char field).
    pub external_ref: String,
    /// Holds the ids of the last commands applied (a Text field).
    pub applied_commands: String,
}

/// How many command ids a record remembers. Redeliveries come from the
/// uncommitted tail of a partition, far fewer than this per key.
const REMEMBERED_COMMANDS: usize = 50;

/// A command that reached the ERP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The record it applies to.
    pub record_id: i64,
    /// True when the record already held the command (a redelivery).
    pub already: bool,
}

/// Why a command was not applied.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApplyError {
    /// The ERP refused or failed the call.
    #[error(transparent)]
    Odoo(#[from] OdooError),
    /// UPDATE or CANCEL of a record that does not exist.
    #[error("{operation:?}: no {model} record has external reference {external_ref:?}")]
    NotFound {
        /// The command's operation.
        operation: ErpOperation,
        /// The model.
        model: String,
        /// The reference.
        external_ref: String,
    },
    /// Several records carry the reference: which one is meant is not ours
    /// to guess.
    #[error("several {model} records have external reference {external_ref:?}")]
    Ambiguous {
        /// The model.
        model: String,
        /// The reference.
        external_ref: String,
    },
    /// The operation is UNKNOWN (a symbol from a newer schema).
    #[error("operation UNKNOWN: the command names no operation this sink knows")]
    UnknownOperation,
    /// A field the model does not have (by `fields_get`), or a dotted name
    /// on a field that is not relational.
    #[error("{model} has no field {field:?}{}", of_kind(kind))]
    UnknownField {
        /// The model.
        model: String,
        /// The field.
        field: String,
        /// What the name asked for: `""`, `many2one`, `one2many`.
        kind: &'static str,
    },
    /// A field name the sink cannot read.
    #[error(transparent)]
    BadName(#[from] BadName),
    /// The record was made, and what had to follow (its confirmation)
    /// failed: the result names the record, so a saga undoes it.
    #[error("{source} (record {record_id} was made)")]
    Unfinished {
        /// The record made.
        record_id: i64,
        /// Why what followed failed.
        source: Box<ApplyError>,
    },
    /// A reference given by its key alone names no record
    /// (`product.product` with `default_code` "TEA-99": an unknown SKU).
    #[error("no {model} record has {field} {value}: unknown reference")]
    UnknownReference {
        /// The referenced model.
        model: String,
        /// Its key field.
        field: String,
        /// The key's value.
        value: Value,
    },
}

fn of_kind(kind: &str) -> String {
    if kind.is_empty() {
        String::new()
    } else {
        format!(" of type {kind}")
    }
}

impl ApplyError {
    /// A short code for the ErpResult (`not_found`, `ValidationError`).
    pub fn code(&self) -> String {
        match self {
            Self::Odoo(err) => err.code(),
            Self::NotFound { .. } => "not_found".into(),
            Self::Ambiguous { .. } => "ambiguous_reference".into(),
            Self::UnknownOperation => "unknown_operation".into(),
            Self::UnknownField { .. } | Self::BadName(_) => "unknown_field".into(),
            Self::UnknownReference { .. } => "unknown_reference".into(),
            Self::Unfinished { source, .. } => source.code(),
        }
    }

    /// The record a refused command made before it was refused, if any.
    pub fn record_left(&self) -> Option<i64> {
        match self {
            Self::Unfinished { record_id, .. } => Some(*record_id),
            _ => None,
        }
    }

    /// Whether a failed check at start stops the sink, with a hint for the
    /// operator: a model without the sink's fields would refuse every
    /// command, and a 404 is a wrong URL or database (or, over JSON-2, an
    /// Odoo before 19). An ERP that is away is no such verdict.
    pub fn stops_start(&self, protocol: Protocol) -> Option<&'static str> {
        match (self.code().as_str(), protocol) {
            ("http_404", Protocol::Json2) => Some(
                ": JSON-2 is Odoo 19's API (Odoo 17 and 18: --odoo-protocol json-rpc); \
                 else check --odoo-url and --odoo-database",
            ),
            ("http_404", Protocol::JsonRpc) => Some(": check --odoo-url"),
            _ => (self.class() == ErrorClass::Permanent).then_some(""),
        }
    }
}

impl HandlerError for ApplyError {
    /// A refusal of the command itself (its fields or values), not of the
    /// ERP's state, is dead-lettered as a validation failure.
    fn dead_letter_class(&self) -> DeadLetterClass {
        match self {
            Self::UnknownOperation
            | Self::UnknownField { .. }
            | Self::BadName(_)
            | Self::UnknownReference { .. } => DeadLetterClass::Validation,
            Self::Unfinished { source, .. } => source.dead_letter_class(),
            _ => DeadLetterClass::Permanent,
        }
    }
}

impl Classified for ApplyError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Odoo(err) => err.class(),
            Self::Unfinished { source, .. } => source.class(),
            _ => ErrorClass::Permanent,
        }
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Odoo(err) => err.retry_after(),
            Self::Unfinished { source, .. } => source.retry_after(),
            _ => None,
        }
    }
}

/// A model's fields as `fields_get` describes them.
type Fields = Arc<Map<String, Value>>;

/// Applies commands through an [`OdooClient`].
pub struct Applier {
    client: OdooClient,
    fields: RecordFields,
    /// The models whose CREATE makes a draft and calls the method.
    confirm_on_create: ModelMethods,
    /// The models whose CANCEL calls a method of their own, not
    /// `action_cancel`.
    cancel_with: ModelMethods,
    /// fields_get per model, asked once.
    schemas: Mutex<HashMap<String, Fields>>,
    /// One creation at a time per key in this process: two commands for
    /// one new customer make one partner, and so do a contact's own upsert
    /// and an order that makes it as its customer.
    creating: Mutex<HashMap<String, Arc<Gate>>>,
    /// Ids of references found before (`product.product/default_code="SKU-1"`):
    /// spares a search per reference per command. Only found or made
    /// records are kept (made ones by their external reference, so an order
    /// naming one as its customer finds it); a refused write forgets the
    /// references it used (see `apply`).
    known: Mutex<HashMap<String, i64>>,
}

/// References remembered at most; beyond, the memory starts afresh.
const KNOWN_REFERENCES: usize = 10_000;

/// The gate of one key: its records are made one at a time, and counted,
/// so a command that searched before another made one knows to search
/// again — whatever the memory of ids has forgotten since (it forgets the
/// ids a refused command used, and everything when full).
#[derive(Default)]
struct Gate {
    held: tokio::sync::Mutex<()>,
    made: AtomicU64,
}

/// The gate of `key` as a command that may make its record saw it before
/// its search; holding it keeps the gate in `creating`.
struct Seen {
    key: String,
    gate: Arc<Gate>,
    made: u64,
}

impl Seen {
    /// Whether a record was made under the gate since.
    fn made_since(&self) -> bool {
        self.gate.made.load(Ordering::Acquire) != self.made
    }
}

fn reference_key(comodel: &str, reference: &Reference) -> String {
    let (key, value) = &reference.key;
    gate_key(comodel, key, value)
}

/// The key a `model` record whose `field` holds `value` is remembered and
/// made under: the same for a command's own record and a reference to it.
fn gate_key(model: &str, field: &str, value: &Value) -> String {
    format!("{model}/{field}={value}")
}

fn ambiguous(command: &ErpCommand) -> ApplyError {
    ApplyError::Ambiguous {
        model: command.model.clone(),
        external_ref: command.external_ref.clone(),
    }
}

/// Cancels without the cancel wizard Odoo answers for a confirmed order
/// (sale_order.py `_show_cancel_wizard`).
fn cancel_context() -> Value {
    json!({"disable_cancel_warning": true})
}

impl Applier {
    /// Applies through `client`, keeping `fields` on each record; a
    /// `sale.order` CREATE is confirmed (`action_confirm`), a CANCEL calls
    /// `action_cancel`.
    pub fn new(client: OdooClient, fields: RecordFields) -> Self {
        Self {
            client,
            fields,
            confirm_on_create: ModelMethods::single("sale.order", "action_confirm"),
            cancel_with: ModelMethods::default(),
            schemas: Mutex::new(HashMap::new()),
            creating: Mutex::new(HashMap::new()),
            known: Mutex::new(HashMap::new()),
        }
    }

    /// The models whose CREATE makes a draft then calls their method.
    #[must_use]
    pub fn confirm_on_create(mut self, models: ModelMethods) -> Self {
        self.confirm_on_create = models;
        self
    }

    /// The models whose CANCEL calls their method instead of
    /// `action_cancel`.
    #[must_use]
    pub fn cancel_with(mut self, models: ModelMethods) -> Self {
        self.cancel_with = models;
        self
    }

    /// Checks, before the first command, that each of `models`, and each
    /// model a confirm or cancel method is named for, has the fields the
    /// sink keeps its references in (and a `state` where CREATE confirms or
    /// CANCEL has its own method, so a redelivery is not called again): a
    /// missing one is named in the error.
    pub async fn check(&self, models: &[String]) -> Result<(), ApplyError> {
        let mut all: Vec<&str> = models.iter().map(String::as_str).collect();
        for model in self
            .confirm_on_create
            .models()
            .chain(self.cancel_with.models())
        {
            if !all.contains(&model) {
                all.push(model);
            }
        }
        for model in all {
            let fields = self.schema(model).await?;
            let mut needed = vec![
                self.fields.external_ref.as_str(),
                self.fields.applied_commands.as_str(),
            ];
            if self.confirm_on_create.of(model).is_some() || self.cancel_with.of(model).is_some() {
                needed.push("state");
            }
            for field in needed {
                if !fields.contains_key(field) {
                    return Err(unknown(model, field, ""));
                }
            }
        }
        Ok(())
    }

    async fn schema(&self, model: &str) -> Result<Fields, ApplyError> {
        if let Some(fields) = lock(&self.schemas).get(model) {
            return Ok(Arc::clone(fields));
        }
        let fields = Arc::new(self.client.fields_get(model).await?);
        lock(&self.schemas).insert(model.to_owned(), Arc::clone(&fields));
        Ok(fields)
    }

    /// Upserts the command's record by external reference: CREATE and
    /// UPSERT write it or make it (a CREATE of a model that confirms makes
    /// a draft and calls `action_confirm`), UPDATE writes it, CANCEL writes
    /// it and calls `action_cancel`; UPDATE and CANCEL need it to exist.
    pub async fn apply(&self, command: &ErpCommand) -> Result<Applied, ApplyError> {
        if command.operation == ErpOperation::Unknown {
            return Err(ApplyError::UnknownOperation);
        }
        let model = command.model.as_str();
        let schema = self.schema(model).await?;
        let plan = Plan::of(values_of(command))?;
        self.check_plan(model, &schema, &plan).await?;
        match self.apply_planned(command, &schema, &plan).await {
            // A remembered id may name a record deleted since: once more,
            // with every reference searched afresh.
            Err(ApplyError::Odoo(err))
                if err.class() == ErrorClass::Permanent
                    && self.forget(model, &schema, &plan).await =>
            {
                self.apply_planned(command, &schema, &plan).await
            }
            other => other,
        }
    }

    /// Forgets the remembered ids of the plan's references; whether any was.
    async fn forget(&self, model: &str, schema: &Fields, plan: &Plan) -> bool {
        let mut keys = Vec::new();
        for reference in &plan.record.references {
            if let Ok(comodel) = relation(model, schema, &reference.field, "many2one") {
                keys.push(reference_key(&comodel, reference));
            }
        }
        for (field, lines) in &plan.lines {
            let Ok(comodel) = relation(model, schema, field, "one2many") else {
                continue;
            };
            let Ok(line_schema) = self.schema(&comodel).await else {
                continue;
            };
            for reference in lines.iter().flat_map(|line| &line.references) {
                if let Ok(target) = relation(&comodel, &line_schema, &reference.field, "many2one") {
                    keys.push(reference_key(&target, reference));
                }
            }
        }
        let mut known = lock(&self.known);
        // Every key removed, not only up to the first found.
        let removed = keys
            .iter()
            .filter(|key| known.remove(*key).is_some())
            .count();
        removed > 0
    }

    async fn apply_planned(
        &self,
        command: &ErpCommand,
        schema: &Fields,
        plan: &Plan,
    ) -> Result<Applied, ApplyError> {
        let model = command.model.as_str();
        let reference = (
            self.fields.external_ref.as_str(),
            json!(command.external_ref),
        );
        let mut wanted = vec![self.fields.applied_commands.as_str()];
        if schema.contains_key("state") {
            wanted.push("state");
        }
        // Only a command that may make the record looks at its gate.
        let seen = matches!(
            command.operation,
            ErpOperation::Create | ErpOperation::Upsert
        )
        .then(|| self.seen(gate_key(model, reference.0, &reference.1)));
        let found = self
            .client
            .search_read(model, std::slice::from_ref(&reference), &wanted)
            .await?;
        match (found.as_slice(), seen) {
            ([], Some(seen)) => {
                self.create(command, schema, plan, (reference, &wanted), seen)
                    .await
            }
            ([], None) => Err(ApplyError::NotFound {
                operation: command.operation,
                model: model.to_owned(),
                external_ref: command.external_ref.clone(),
            }),
            ([record], _) => self.write_found(command, schema, plan, record).await,
            _ => Err(ambiguous(command)),
        }
    }

    /// Makes the command's record, which its `search` did not find, under
    /// the gate a reference to it is made under ([`Self::find_or_create`]),
    /// `seen` before the search: an order naming this record as its
    /// customer may have made it since, and then it is written. The gate is
    /// held for the creation alone, no other taken meanwhile.
    async fn create(
        &self,
        command: &ErpCommand,
        schema: &Fields,
        plan: &Plan,
        search: ((&str, Value), &[&str]),
        seen: Seen,
    ) -> Result<Applied, ApplyError> {
        let model = command.model.as_str();
        let (reference, wanted) = search;
        let mut values = self.resolve(model, schema, plan, false).await?;
        let held = seen.gate.held.lock().await;
        if seen.made_since() {
            let again = self.client.search_read(model, &[reference], wanted).await?;
            match again.as_slice() {
                [] => {}
                [record] => {
                    drop(held);
                    return self.write_found(command, schema, plan, record).await;
                }
                _ => return Err(ambiguous(command)),
            }
        }
        values.insert(
            self.fields.external_ref.clone(),
            json!(command.external_ref),
        );
        values.insert(
            self.fields.applied_commands.clone(),
            json!(command.command_id),
        );
        let record_id = self.client.create(model, &values).await?;
        seen.gate.made.fetch_add(1, Ordering::AcqRel);
        self.remember(&seen.key, record_id);
        drop(held);
        self.finish(command, record_id, Some("draft")).await?;
        Ok(Applied {
            record_id,
            already: false,
        })
    }

    /// Writes the command to `record`, the one its search found, unless
    /// the record holds its id already.
    async fn write_found(
        &self,
        command: &ErpCommand,
        schema: &Fields,
        plan: &Plan,
        record: &Map<String, Value>,
    ) -> Result<Applied, ApplyError> {
        let model = command.model.as_str();
        let record_id = record
            .get("id")
            .and_then(Value::as_i64)
            .ok_or_else(|| OdooError {
                operation: format!("{model}.search_read"),
                failure: crate::odoo::Failure::Malformed("a record without an id".into()),
            })?;
        let state = record.get("state").and_then(Value::as_str);
        let applied = record
            .get(&self.fields.applied_commands)
            .and_then(Value::as_str)
            .unwrap_or_default();
        if applied
            .split_whitespace()
            .any(|id| id == command.command_id)
        {
            // Its write landed; the action after it may not have.
            self.finish(command, record_id, state).await?;
            return Ok(Applied {
                record_id,
                already: true,
            });
        }
        let mut values = self.resolve(model, schema, plan, true).await?;
        values.insert(
            self.fields.applied_commands.clone(),
            json!(remember(applied, &command.command_id)),
        );
        self.client.write(model, record_id, &values).await?;
        self.finish(command, record_id, state).await?;
        Ok(Applied {
            record_id,
            already: false,
        })
    }

    /// The action a command ends with, unless the record is there already:
    /// `action_confirm` for a draft made by CREATE, `action_cancel` for
    /// CANCEL (never a write of `state`: the model's own rules run).
    ///
    /// Its failure names the record, which is there whatever follows.
    async fn finish(
        &self,
        command: &ErpCommand,
        record_id: i64,
        state: Option<&str>,
    ) -> Result<(), ApplyError> {
        self.finish_action(command, record_id, state)
            .await
            .map_err(|source| ApplyError::Unfinished {
                record_id,
                source: Box::new(source),
            })
    }

    async fn finish_action(
        &self,
        command: &ErpCommand,
        record_id: i64,
        state: Option<&str>,
    ) -> Result<(), ApplyError> {
        let model = command.model.as_str();
        match command.operation {
            ErpOperation::Cancel if state != Some("cancel") => {
                let method = self.cancel_with.of(model).unwrap_or("action_cancel");
                let answer = self
                    .client
                    .call_on(model, method, &[record_id], cancel_context())
                    .await?;
                if answer.is_object() {
                    // A wizard instead of a cancellation.
                    return Err(ApplyError::Odoo(OdooError {
                        operation: format!("{model}.{method}"),
                        failure: crate::odoo::Failure::Malformed(clipped(format!(
                            "answered an action, not a cancellation: {answer}"
                        ))),
                    }));
                }
            }
            ErpOperation::Create if matches!(state, Some("draft" | "sent")) => {
                if let Some(method) = self.confirm_on_create.of(model) {
                    self.client
                        .call_on(model, method, &[record_id], json!({}))
                        .await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Every name the plan uses is a field of its model, of the right kind.
    async fn check_plan(
        &self,
        model: &str,
        schema: &Fields,
        plan: &Plan,
    ) -> Result<(), ApplyError> {
        check_part(model, schema, &plan.record)?;
        for (field, lines) in &plan.lines {
            let comodel = relation(model, schema, field, "one2many")?;
            let line_schema = self.schema(&comodel).await?;
            for line in lines {
                check_part(&comodel, &line_schema, line)?;
            }
        }
        Ok(())
    }

    /// The plan as Odoo values: references resolved to ids, lines as
    /// command triples (replacing the record's lines on a write).
    async fn resolve(
        &self,
        model: &str,
        schema: &Fields,
        plan: &Plan,
        writing: bool,
    ) -> Result<Map<String, Value>, ApplyError> {
        // Lines first: an unknown product refuses the command before a new
        // customer is made for it.
        let mut values = Map::new();
        for (field, lines) in &plan.lines {
            let comodel = relation(model, schema, field, "one2many")?;
            let line_schema = self.schema(&comodel).await?;
            let mut commands = Vec::with_capacity(lines.len() + 1);
            if writing {
                commands.push(json!([5, 0, 0]));
            }
            for line in lines {
                let line_values = self.resolve_part(&comodel, &line_schema, line).await?;
                commands.push(json!([0, 0, line_values]));
            }
            values.insert(field.clone(), Value::Array(commands));
        }
        values.extend(self.resolve_part(model, schema, &plan.record).await?);
        Ok(values)
    }

    async fn resolve_part(
        &self,
        model: &str,
        schema: &Fields,
        part: &Part,
    ) -> Result<Map<String, Value>, ApplyError> {
        let mut values = part.values.clone();
        for reference in &part.references {
            let comodel = relation(model, schema, &reference.field, "many2one")?;
            let id = self.find_or_create(&comodel, reference).await?;
            values.insert(reference.field.clone(), json!(id));
        }
        Ok(values)
    }

    /// The oldest `comodel` record whose key field holds the key; created
    /// from the reference's fields when there is none and it has some.
    ///
    /// A reference that may be created is searched under its gate, one
    /// command at a time per key in this process: the first makes it, the
    /// ones that waited find it remembered. Searched before the gate, a new
    /// customer cost two searches (before, and again under the gate).
    async fn find_or_create(
        &self,
        comodel: &str,
        reference: &Reference,
    ) -> Result<i64, ApplyError> {
        let (key, value) = &reference.key;
        let remembered = reference_key(comodel, reference);
        if let Some(id) = self.remembered(&remembered) {
            return Ok(id);
        }
        if reference.create.is_empty() {
            return self
                .find(comodel, key, value, &remembered)
                .await?
                .ok_or_else(|| ApplyError::UnknownReference {
                    model: comodel.to_owned(),
                    field: key.clone(),
                    value: value.clone(),
                });
        }
        let gate = self.gate(&remembered);
        let _held = gate.held.lock().await;
        // The command that held the gate before may have made it.
        if let Some(id) = self.remembered(&remembered) {
            return Ok(id);
        }
        if let Some(id) = self.find(comodel, key, value, &remembered).await? {
            return Ok(id);
        }
        let mut values = reference.create.clone();
        values.insert(key.clone(), value.clone());
        let id = self.client.create(comodel, &values).await?;
        gate.made.fetch_add(1, Ordering::AcqRel);
        self.remember(&remembered, id);
        Ok(id)
    }

    /// The gate of `key`, seen now.
    fn seen(&self, key: String) -> Seen {
        let gate = self.gate(&key);
        let made = gate.made.load(Ordering::Acquire);
        Seen { key, gate, made }
    }

    /// The gate of creations under `key` (see `creating`).
    fn gate(&self, key: &str) -> Arc<Gate> {
        let mut creating = lock(&self.creating);
        if creating.len() > 10_000 {
            creating.retain(|_, gate| Arc::strong_count(gate) > 1);
        }
        Arc::clone(creating.entry(key.to_owned()).or_default())
    }

    /// The first `comodel` record whose `key` holds `value`, remembered
    /// under `remembered`.
    async fn find(
        &self,
        comodel: &str,
        key: &str,
        value: &Value,
        remembered: &str,
    ) -> Result<Option<i64>, ApplyError> {
        let found = self
            .client
            .search_read(comodel, &[(key, value.clone())], &["id"])
            .await?;
        let id = found
            .first()
            .and_then(|r| r.get("id"))
            .and_then(Value::as_i64);
        if let Some(id) = id {
            self.remember(remembered, id);
        }
        Ok(id)
    }

    fn remembered(&self, key: &str) -> Option<i64> {
        lock(&self.known).get(key).copied()
    }

    fn remember(&self, key: &str, id: i64) {
        let mut known = lock(&self.known);
        if known.len() >= KNOWN_REFERENCES {
            known.clear();
        }
        known.insert(key.to_owned(), id);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unknown(model: &str, field: &str, kind: &'static str) -> ApplyError {
    ApplyError::UnknownField {
        model: model.to_owned(),
        field: field.to_owned(),
        kind,
    }
}

/// The comodel of `model`'s relational `field` of type `kind`.
fn relation(
    model: &str,
    schema: &Fields,
    field: &str,
    kind: &'static str,
) -> Result<String, ApplyError> {
    let description = schema
        .get(field)
        .ok_or_else(|| unknown(model, field, kind))?;
    if description.get("type").and_then(Value::as_str) != Some(kind) {
        return Err(unknown(model, field, kind));
    }
    description
        .get("relation")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| unknown(model, field, kind))
}

fn check_part(model: &str, schema: &Fields, part: &Part) -> Result<(), ApplyError> {
    if let Some(field) = part
        .values
        .keys()
        .find(|f| !schema.contains_key(f.as_str()))
    {
        return Err(unknown(model, field, ""));
    }
    for reference in &part.references {
        relation(model, schema, &reference.field, "many2one")?;
    }
    Ok(())
}

/// The command's fields as Odoo values (null clears a field).
fn values_of(command: &ErpCommand) -> Vec<(String, Value)> {
    command
        .fields
        .iter()
        .map(|field| {
            let value = match &field.value {
                ScalarValue::Null => Value::Bool(false),
                ScalarValue::String(text) => json!(text),
                ScalarValue::Long(n) => json!(n),
                ScalarValue::Double(x) => json!(x),
                ScalarValue::Boolean(b) => json!(b),
            };
            (field.name.clone(), value)
        })
        .collect()
}

/// `applied` with `command_id` added, keeping the latest ids only.
fn remember(applied: &str, command_id: &str) -> String {
    let ids: Vec<&str> = applied.split_whitespace().collect();
    let keep = ids.len().saturating_sub(REMEMBERED_COMMANDS - 1);
    let mut kept: Vec<&str> = ids[keep..].to_vec();
    kept.push(command_id);
    kept.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_remembers_the_latest_commands() {
        assert_eq!(remember("", "a"), "a");
        assert_eq!(remember("a b", "c"), "a b c");
        let many: Vec<String> = (0..60).map(|n| n.to_string()).collect();
        let kept = remember(&many.join(" "), "new");
        let ids: Vec<&str> = kept.split(' ').collect();
        assert_eq!(ids.len(), REMEMBERED_COMMANDS);
        assert_eq!(ids.first(), Some(&"11"));
        assert_eq!(ids.last(), Some(&"new"));
    }
}
