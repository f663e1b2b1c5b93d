//! Schema compatibility as Confluent defines its modes, checked here with
//! apache-avro's resolution rules so that a refusal names the field, and
//! before anything is written.

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;

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
            SchemaCompatibility::can_read(writer, reader)
                .err()
                .map(|err| format!("{who}: {err}"))
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
}
