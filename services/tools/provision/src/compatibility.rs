//! Schema compatibility as Confluent defines its modes, checked here with
//! apache-avro's resolution rules so that a refusal names the field, and
//! before anything is written.

use apache_avro::Schema;
use apache_avro::schema::SchemaKind;
use apache_avro::schema_compatibility::{Compatibility as Resolution, SchemaCompatibility};

/// A subject's compatibility mode: which registered versions a new schema
/// is checked against, and in which direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Compatibility {
    /// Readers on the new schema read data of the latest version.
    Backward,
    /// … of every version.
    BackwardTransitive,
    /// Readers on the latest version read data of the new schema.
    Forward,
    /// … readers on every version.
    ForwardTransitive,
    /// Both ways, with the latest version.
    Full,
    /// Both ways, with every version.
    FullTransitive,
}

impl Compatibility {
    /// The mode's name in the registry's API.
    pub fn as_registry(self) -> &'static str {
        match self {
            Self::Backward => "BACKWARD",
            Self::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Self::Forward => "FORWARD",
            Self::ForwardTransitive => "FORWARD_TRANSITIVE",
            Self::Full => "FULL",
            Self::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// Whether every registered version is checked, not only the latest.
    pub fn transitive(self) -> bool {
        matches!(
            self,
            Self::BackwardTransitive | Self::ForwardTransitive | Self::FullTransitive
        )
    }

    /// Why `new` breaks this mode against `old`, if it does.
    pub fn violation(self, old: &Schema, new: &Schema) -> Option<String> {
        let backward = matches!(
            self,
            Self::Backward | Self::BackwardTransitive | Self::Full | Self::FullTransitive
        );
        let forward = !matches!(self, Self::Backward | Self::BackwardTransitive);
        let broken = |writer, reader, who: &str| {
            unreadable(writer, reader).map(|why| format!("{who}: {why}"))
        };
        let mut why = Vec::new();
        if backward {
            why.extend(broken(
                old,
                new,
                "readers on the new schema cannot read old data",
            ));
        }
        if forward {
            why.extend(broken(
                new,
                old,
                "readers on the old schema cannot read new data",
            ));
        }
        (!why.is_empty()).then(|| why.join("; "))
    }
}

/// Why data written with `writer` cannot all be read with `reader`, if so.
/// apache-avro calls a union whose writer has a branch no reader branch can
/// read "partially" compatible; a registry refuses it (some events already
/// written could not be read), so it is refused here too, naming the branch
/// and what in it does not resolve.
fn unreadable(writer: &Schema, reader: &Schema) -> Option<String> {
    match SchemaCompatibility::can_read(writer, reader) {
        Ok(Resolution::Full) => None,
        Ok(Resolution::Partial) => Some(partial(writer, reader).unwrap_or_else(|| {
            "some values of the old schema cannot be read with the new one (a removed enum symbol or union branch, say)".into()
        })),
        Err(err) => Some(err.to_string()),
    }
}

/// Where a partially readable pair stops resolving: the field, then the
/// union branch, that cannot be read.
fn partial(writer: &Schema, reader: &Schema) -> Option<String> {
    match (writer, reader) {
        (Schema::Record(writer), Schema::Record(reader)) => {
            reader.fields.iter().find_map(|field| {
                let written = writer.fields.get(*writer.lookup.get(&field.name)?)?;
                unreadable(&written.schema, &field.schema)
                    .map(|why| format!("field '{}': {why}", field.name))
            })
        }
        (Schema::Union(writer), Schema::Union(reader)) => {
            writer.variants().iter().find_map(|branch| {
                let name = branch.name().map_or_else(
                    || format!("{:?}", SchemaKind::from(branch)),
                    |n| n.name().to_owned(),
                );
                let same = reader.variants().iter().find(|candidate| {
                    match (branch.name(), candidate.name()) {
                        (Some(w), Some(r)) => w.name() == r.name(),
                        (None, None) => SchemaKind::from(*candidate) == SchemaKind::from(branch),
                        _ => false,
                    }
                });
                match same {
                    None => Some(format!("branch {name} is gone from the union")),
                    Some(same) => {
                        unreadable(branch, same).map(|why| format!("branch {name}: {why}"))
                    }
                }
            })
        }
        _ => None,
    }
}

impl std::fmt::Display for Compatibility {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_registry())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &str) -> Schema {
        Schema::parse_str(&format!(
            r#"{{"type": "record", "name": "E", "fields": [{fields}]}}"#
        ))
        .unwrap()
    }

    #[test]
    fn each_mode_checks_its_own_direction_and_names_the_field() {
        let old = record(r#"{"name": "reason", "type": "string"}"#);
        // Dropping a field without a default: new readers ignore it, old
        // readers miss it.
        let dropped = record("");
        assert_eq!(Compatibility::Backward.violation(&old, &dropped), None);
        let forward = Compatibility::Forward.violation(&old, &dropped).unwrap();
        assert!(forward.contains("Field 'reason'"), "{forward}");
        assert!(Compatibility::Full.violation(&old, &dropped).is_some());
        // Adding one without a default: the other way round.
        let added = record(
            r#"{"name": "reason", "type": "string"}, {"name": "channel", "type": "string"}"#,
        );
        let backward = Compatibility::Backward.violation(&old, &added).unwrap();
        assert!(backward.contains("Field 'channel'"), "{backward}");
        assert_eq!(Compatibility::Forward.violation(&old, &added), None);
    }

    #[test]
    fn a_field_added_inside_a_union_branch_is_named() {
        // Events are an envelope around a union of records: the check has
        // to go into the branch a writer used.
        let envelope = |issued_fields: &str| {
            Schema::parse_str(&format!(
                r#"{{"type": "record", "name": "InvoiceEvent", "fields": [
                    {{"name": "event_id", "type": "string"}},
                    {{"name": "payload", "type": [
                        {{"type": "record", "name": "InvoiceIssued", "fields": [{issued_fields}]}},
                        {{"type": "record", "name": "InvoicePaid", "fields": []}}]}}]}}"#
            ))
            .unwrap()
        };
        let old = envelope(r#"{"name": "customer", "type": "string"}"#);
        let required = envelope(
            r#"{"name": "customer", "type": "string"}, {"name": "due_date", "type": "string"}"#,
        );
        let backward = Compatibility::Backward.violation(&old, &required).unwrap();
        assert!(
            backward.contains("InvoiceIssued") && backward.contains("due_date"),
            "{backward}"
        );
        let optional = envelope(
            r#"{"name": "customer", "type": "string"},
               {"name": "due_date", "type": ["null", "string"], "default": null}"#,
        );
        assert_eq!(Compatibility::Backward.violation(&old, &optional), None);
    }
}
