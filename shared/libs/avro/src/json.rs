//! JSON to Avro, guided by the schema, with errors that name the field.
//!
//! Events arrive as JSON (ingest's HTTP body, the outbox's payload column)
//! and leave as Avro; a client that sent a bad field must be told which one
//! and why (`payload.lines[1].quantity: expected an int, got "two"`), which
//! apache-avro's generic resolution does not say.
//!
//! Rules: records take objects (unknown fields are refused, missing ones take
//! the schema default or null for an optional field); enums take a symbol;
//! `uuid` a UUID string; `timestamp-millis` milliseconds since the epoch; a
//! union of `null` and one type takes null or that type's JSON (a named
//! type's also tagged with its name); a union of several named types takes
//! `{"TypeName": {...}}` (Avro's JSON encoding, short or full name).

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::schema::{Name, RecordSchema, UnionSchema};
use apache_avro::types::Value;
use serde_json::Value as Json;
use sluice_contracts::Topic;

/// A JSON value that does not fit the schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct JsonMismatch {
    /// Where, as `field.list[index].field`; `$` for the whole value.
    pub path: String,
    /// Why it does not fit.
    pub reason: String,
}

/// Converts `json` into an Avro value of `contract`'s value schema.
pub fn json_to_avro(contract: &Topic, json: &Json) -> Result<Value, JsonMismatch> {
    convert(
        contract.value_schema(),
        contract.value_names(),
        json,
        Unknown::Refused,
    )
}

/// Converts `json`, written with an earlier version of `contract`'s value
/// schema, as a reader of the schema reads it: a field the schema no longer
/// has is passed over (Avro's resolution drops it; deleting a field is a
/// BACKWARD change), a field it added takes its default.
pub fn json_to_avro_as_reader(contract: &Topic, json: &Json) -> Result<Value, JsonMismatch> {
    convert(
        contract.value_schema(),
        contract.value_names(),
        json,
        Unknown::Ignored,
    )
}

/// What a record does with a field its schema does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unknown {
    /// A client's mistake: named back to it.
    Refused,
    /// Written with a version that still had it.
    Ignored,
}

/// `schema`'s value for `json`; `names`, the named types its references
/// resolve to.
fn convert(
    schema: &Schema,
    names: &HashMap<Name, Schema>,
    json: &Json,
    unknown: Unknown,
) -> Result<Value, JsonMismatch> {
    Converter { names, unknown }.convert(schema, json, &Path::Root)
}

struct Converter<'s> {
    names: &'s HashMap<Name, Schema>,
    unknown: Unknown,
}

/// Where the walk is: links on the stack, spelled out only for an error
/// (a string built for every field cost an allocation each on the path
/// every valid event takes).
enum Path<'a> {
    Root,
    Field(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
    Key(&'a Path<'a>, &'a str),
}

impl<'a> Path<'a> {
    fn field(&'a self, name: &'a str) -> Self {
        Self::Field(self, name)
    }

    fn index(&'a self, index: usize) -> Self {
        Self::Index(self, index)
    }

    fn key(&'a self, key: &'a str) -> Self {
        Self::Key(self, key)
    }

    /// As `field.list[index].field`; empty at the root.
    fn spelled(&self) -> String {
        match self {
            Self::Root => String::new(),
            Self::Field(parent, name) => match parent.spelled() {
                parent if parent.is_empty() => (*name).to_owned(),
                parent => format!("{parent}.{name}"),
            },
            Self::Index(parent, index) => format!("{}[{index}]", parent.spelled()),
            Self::Key(parent, key) => format!("{}[{key:?}]", parent.spelled()),
        }
    }

    fn mismatch(&self, reason: impl Into<String>) -> JsonMismatch {
        let path = match self.spelled() {
            path if path.is_empty() => "$".to_owned(),
            path => path,
        };
        JsonMismatch {
            path,
            reason: reason.into(),
        }
    }
}

impl<'s> Converter<'s> {
    fn convert(
        &self,
        schema: &Schema,
        json: &Json,
        path: &Path<'_>,
    ) -> Result<Value, JsonMismatch> {
        let expected =
            |what: &str| path.mismatch(format!("expected {what}, got {}", describe(json)));
        match schema {
            Schema::Null => json
                .is_null()
                .then_some(Value::Null)
                .ok_or_else(|| expected("null")),
            Schema::Boolean => json
                .as_bool()
                .map(Value::Boolean)
                .ok_or_else(|| expected("true or false")),
            Schema::Int => json
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .map(Value::Int)
                .ok_or_else(|| expected("an int (32-bit whole number)")),
            Schema::Long => json
                .as_i64()
                .map(Value::Long)
                .ok_or_else(|| expected("a long (whole number)")),
            Schema::Float => json
                .as_f64()
                .map(|x| Value::Float(x as f32))
                .ok_or_else(|| expected("a number")),
            Schema::Double => json
                .as_f64()
                .map(Value::Double)
                .ok_or_else(|| expected("a number")),
            Schema::String => json
                .as_str()
                .map(|s| Value::String(s.to_owned()))
                .ok_or_else(|| expected("a string")),
            Schema::Bytes => json
                .as_str()
                .map(|s| Value::Bytes(s.as_bytes().to_vec()))
                .ok_or_else(|| expected("a string")),
            Schema::Uuid(_) => json
                .as_str()
                .and_then(|s| uuid::Uuid::parse_str(s).ok())
                .map(Value::Uuid)
                .ok_or_else(|| expected("a UUID string")),
            Schema::TimestampMillis => json
                .as_i64()
                .map(Value::TimestampMillis)
                .ok_or_else(|| expected("milliseconds since the epoch")),
            Schema::Enum(enum_schema) => match json.as_str() {
                Some(symbol) => match enum_schema.symbols.iter().position(|s| s == symbol) {
                    Some(index) => Ok(Value::Enum(
                        u32::try_from(index).unwrap_or(u32::MAX),
                        symbol.to_owned(),
                    )),
                    None => Err(path.mismatch(format!(
                        "{symbol:?} is not one of {}",
                        enum_schema.symbols.join(", ")
                    ))),
                },
                None => Err(expected("a string")),
            },
            Schema::Array(array) => match json.as_array() {
                Some(items) => items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.convert(&array.items, item, &path.index(i)))
                    .collect::<Result<_, _>>()
                    .map(Value::Array),
                None => Err(expected("an array")),
            },
            Schema::Map(map) => match json.as_object() {
                Some(entries) => entries
                    .iter()
                    .map(|(key, item)| {
                        Ok((key.clone(), self.convert(&map.types, item, &path.key(key))?))
                    })
                    .collect::<Result<_, _>>()
                    .map(Value::Map),
                None => Err(expected("an object")),
            },
            Schema::Record(record) => self.record(record, json, path),
            Schema::Union(union) => self.union(union, json, path),
            Schema::Ref { name } => match self.names.get(name) {
                Some(named) => self.convert(named, json, path),
                None => {
                    Err(path.mismatch(format!("schema names unknown type {}", name.fullname(None))))
                }
            },
            other => Err(path.mismatch(format!(
                "the schema type {other:?} is not accepted from JSON"
            ))),
        }
    }

    fn record(
        &self,
        record: &RecordSchema,
        json: &Json,
        path: &Path<'_>,
    ) -> Result<Value, JsonMismatch> {
        let Some(object) = json.as_object() else {
            return Err(path.mismatch(format!("expected an object, got {}", describe(json))));
        };
        let unknown = object
            .keys()
            .find(|key| !record.fields.iter().any(|f| &f.name == *key));
        if let (Some(unknown), Unknown::Refused) = (unknown, self.unknown) {
            return Err(path
                .field(unknown)
                .mismatch(format!("is not a field of {}", record.name.name())));
        }
        let mut fields = Vec::with_capacity(record.fields.len());
        for field in &record.fields {
            let field_path = path.field(&field.name);
            let value = match object.get(&field.name) {
                Some(value) => self.convert(&field.schema, value, &field_path)?,
                None => match &field.default {
                    Some(default) => self.convert(&field.schema, default, &field_path)?,
                    None => return Err(field_path.mismatch("is required")),
                },
            };
            fields.push((field.name.clone(), value));
        }
        Ok(Value::Record(fields))
    }

    fn union(
        &self,
        union: &UnionSchema,
        json: &Json,
        path: &Path<'_>,
    ) -> Result<Value, JsonMismatch> {
        let variants = union.variants();
        let branch = |index: usize, value: Value| {
            Value::Union(u32::try_from(index).unwrap_or(u32::MAX), Box::new(value))
        };
        let null = variants.iter().position(|v| matches!(v, Schema::Null));
        if json.is_null() {
            return null
                .map(|i| branch(i, Value::Null))
                .ok_or_else(|| path.mismatch("must not be null"));
        }
        let others = || (0..variants.len()).filter(move |i| Some(*i) != null);
        // Avro's JSON encoding names the branch: `{"TypeName": {...}}`.
        let tagged = json
            .as_object()
            .filter(|object| object.len() == 1)
            .and_then(|object| object.iter().next());
        let names = |index: usize, tag: &str| {
            branch_name(&variants[index]).is_some_and(|name| is_named(name, tag))
        };
        let mut not_null = others();
        if let (Some(only), None) = (not_null.next(), not_null.next()) {
            // One type (an optional field, or an aggregate's only event
            // type so far): its JSON as it is, or tagged with its name.
            return match tagged {
                Some((tag, inner)) if names(only, tag) => Ok(branch(
                    only,
                    self.convert(&variants[only], inner, &path.field(tag))?,
                )),
                _ => Ok(branch(only, self.convert(&variants[only], json, path)?)),
            };
        }
        let Some((tag, inner)) = tagged else {
            return Err(path.mismatch(format!(
                "expected {{\"<type>\": {{...}}}} naming one of {}",
                branch_names(union).join(", ")
            )));
        };
        let chosen = others().find(|&i| names(i, tag));
        match chosen {
            Some(index) => Ok(branch(
                index,
                self.convert(&variants[index], inner, &path.field(tag))?,
            )),
            None => Err(path.mismatch(format!(
                "{tag:?} is not one of {}",
                branch_names(union).join(", ")
            ))),
        }
    }
}

/// The short names of a union's named branches, for errors.
fn branch_names(union: &UnionSchema) -> Vec<String> {
    union
        .variants()
        .iter()
        .filter_map(branch_name)
        .map(|name| name.name().to_owned())
        .collect()
}

/// The name of a named branch.
fn branch_name(schema: &Schema) -> Option<&Name> {
    match schema {
        Schema::Record(record) => Some(&record.name),
        Schema::Enum(enum_schema) => Some(&enum_schema.name),
        Schema::Fixed(fixed) => Some(&fixed.name),
        Schema::Ref { name } => Some(name),
        _ => None,
    }
}

/// Whether `tag` is `name`, short or full.
fn is_named(name: &Name, tag: &str) -> bool {
    tag == name.name()
        || name.namespace().is_some_and(|namespace| {
            tag.strip_prefix(namespace)
                .and_then(|rest| rest.strip_prefix('.'))
                == Some(name.name())
        })
}

/// A JSON value's kind and, when short, the value, for error messages.
fn describe(json: &Json) -> String {
    match json {
        Json::Null => "null".into(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => n.to_string(),
        Json::String(s) if s.len() <= 40 => format!("{s:?}"),
        Json::String(_) => "a long string".into(),
        Json::Array(_) => "an array".into(),
        Json::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::reader::datum::GenericDatumReader;
    use apache_avro::writer::datum::GenericDatumWriter;
    use serde_json::json;
    use sluice_contracts::Catalog;
    use sluice_contracts::types::{OrderEvent, OrderPayload, OrderStatus};

    fn orders() -> &'static Topic {
        static CATALOG: std::sync::LazyLock<Catalog> =
            std::sync::LazyLock::new(|| Catalog::embedded().unwrap());
        CATALOG.topic("orders.events.v1").unwrap()
    }

    fn placed() -> Json {
        json!({
            "event_id": "6f9619ff-8b86-4d01-b42d-00cf4fc964ff",
            "event_type": "OrderPlaced",
            "occurred_at": 1_763_900_000_000_i64,
            "aggregate_id": "order-1",
            "correlation_id": "corr-1",
            "payload": {"OrderPlaced": {
                "customer": {"customer_id": "c-1", "name": "Ada", "email": "ada@example.org"},
                "lines": [
                    {"sku": "A", "description": "a", "quantity": 1, "unit_price_minor": 100},
                    {"sku": "B", "description": "b", "quantity": 2, "unit_price_minor": 250}
                ],
                "total_minor": 600,
                "currency": "EUR"
            }}
        })
    }

    /// Converts `json`, writes it as Avro and reads it back typed.
    fn through_the_wire(json: &Json) -> OrderEvent {
        let schema = orders().value_schema();
        let value = json_to_avro(orders(), json).unwrap();
        let bytes = GenericDatumWriter::builder(schema)
            .build()
            .unwrap()
            .write_value_to_vec(value)
            .unwrap();
        GenericDatumReader::builder(schema)
            .build()
            .unwrap()
            .read_deser(&mut &bytes[..])
            .unwrap()
    }

    fn mismatch(json: &Json) -> String {
        json_to_avro(orders(), json).unwrap_err().to_string()
    }

    #[test]
    fn a_valid_event_becomes_the_typed_record_on_the_wire() {
        let event = through_the_wire(&placed());
        assert_eq!(event.aggregate_id, "order-1");
        assert_eq!(
            event.causation_id, None,
            "an optional field left out is null"
        );
        let OrderPayload::OrderPlaced(placed) = event.payload else {
            panic!("{:?}", event.payload)
        };
        assert_eq!(
            (placed.lines[1].quantity, placed.shipping_country),
            (2, None)
        );
    }

    #[test]
    fn enums_and_other_union_branches_convert() {
        let mut event = placed();
        event["payload"] =
            json!({"OrderStatusChanged": {"from_status": "PLACED", "to_status": "SHIPPED"}});
        let event = through_the_wire(&event);
        let OrderPayload::OrderStatusChanged(changed) = event.payload else {
            panic!("{:?}", event.payload)
        };
        assert_eq!(
            (changed.from_status, changed.to_status),
            (OrderStatus::Placed, OrderStatus::Shipped)
        );
    }

    #[test]
    fn a_branch_is_named_short_or_full_and_nothing_else() {
        let mut event = placed();
        let payload = event["payload"]["OrderPlaced"].take();
        event["payload"] = json!({"dev.sluice.orders.OrderPlaced": payload.clone()});
        assert!(matches!(
            through_the_wire(&event).payload,
            OrderPayload::OrderPlaced(_)
        ));
        for wrong in [
            "sluice.orders.OrderPlaced",
            "dev.sluice.ordersOrderPlaced",
            "OrderPlace",
        ] {
            event["payload"] = json!({ wrong: payload.clone() });
            assert!(mismatch(&event).starts_with("payload: "), "{wrong}");
        }
    }

    #[test]
    fn a_field_a_later_schema_deleted_is_passed_over_by_its_reader() {
        let mut event = placed();
        event["payload"]["OrderPlaced"]["colour"] = json!("red");
        assert!(json_to_avro(orders(), &event).is_err());
        let read = json_to_avro_as_reader(orders(), &event).unwrap();
        let mut without = placed();
        without["payload"]["OrderPlaced"]
            .as_object_mut()
            .unwrap()
            .remove("colour");
        assert_eq!(read, json_to_avro(orders(), &without).unwrap());
    }

    #[test]
    fn errors_name_the_field_and_the_reason() {
        let mut event = placed();
        event["payload"]["OrderPlaced"]["lines"][1]["quantity"] = json!("two");
        assert_eq!(
            mismatch(&event),
            "payload.OrderPlaced.lines[1].quantity: expected an int (32-bit whole number), got \"two\""
        );

        let mut event = placed();
        event["payload"]["OrderPlaced"]["lines"][0]["quantity"] = json!(5_000_000_000_i64);
        assert!(
            mismatch(&event).starts_with("payload.OrderPlaced.lines[0].quantity: expected an int")
        );

        let mut event = placed();
        event["payload"]["OrderPlaced"]["colour"] = json!("red");
        assert_eq!(
            mismatch(&event),
            "payload.OrderPlaced.colour: is not a field of OrderPlaced"
        );

        let mut event = placed();
        event.as_object_mut().unwrap().remove("aggregate_id");
        assert_eq!(mismatch(&event), "aggregate_id: is required");

        let mut event = placed();
        event["event_id"] = json!("not-a-uuid");
        assert_eq!(
            mismatch(&event),
            "event_id: expected a UUID string, got \"not-a-uuid\""
        );

        let mut event = placed();
        event["payload"] =
            json!({"OrderStatusChanged": {"from_status": "LOST", "to_status": "SHIPPED"}});
        assert_eq!(
            mismatch(&event),
            "payload.OrderStatusChanged.from_status: \"LOST\" is not one of \
             UNKNOWN, PLACED, CONFIRMED, SHIPPED, DELIVERED, CANCELLED, REJECTED"
        );

        let mut event = placed();
        event["payload"] = json!({"OrderShipped": {}});
        assert_eq!(
            mismatch(&event),
            "payload: \"OrderShipped\" is not one of OrderPlaced, OrderStatusChanged, OrderCancelled, \
             OrderConfirmed, OrderRejected"
        );

        let mut event = placed();
        event["occurred_at"] = json!("2026-11-23T12:00:00Z");
        assert_eq!(
            mismatch(&event),
            "occurred_at: expected milliseconds since the epoch, got \"2026-11-23T12:00:00Z\""
        );
        assert_eq!(mismatch(&json!([1])), "$: expected an object, got an array");
    }

    #[test]
    fn a_union_of_one_named_type_takes_its_tagged_form() {
        // An aggregate with one event type so far: its payload union has
        // one branch, and the envelope names it as it names any branch.
        let schema = Schema::parse(&json!({"type": "record", "name": "E", "fields": [
            {"name": "payload", "type": [{"type": "record", "name": "TicketOpened",
                "fields": [{"name": "subject", "type": "string"}]}]}]}))
        .unwrap();
        let tagged = json!({"payload": {"TicketOpened": {"subject": "help"}}});
        let names = sluice_contracts::named_types_of(&schema).unwrap();
        let to_avro = |json| convert(&schema, &names, json, Unknown::Refused);
        let Value::Record(fields) = to_avro(&tagged).unwrap() else {
            panic!("a record")
        };
        assert_eq!(
            fields[0].1,
            Value::Union(
                0,
                Box::new(Value::Record(vec![(
                    "subject".into(),
                    Value::String("help".into())
                )]))
            )
        );
        let wrong = json!({"payload": {"TicketOpened": {"subject": 7}}});
        assert_eq!(
            to_avro(&wrong).unwrap_err().to_string(),
            "payload.TicketOpened.subject: expected a string, got 7"
        );
    }
}
