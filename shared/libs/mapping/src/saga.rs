//! What a saga's commands and outcome events read besides the event that
//! started it: `saga.id`, and while compensating (and in the rejection)
//! `saga.failed_step` and `saga.reason`. A record of its own, so the same
//! checks and evaluation read it as they read the event; what a step's
//! command reads has no failure to read, so its schema lacks the two.

use std::sync::LazyLock;

use apache_avro::Schema;
use apache_avro::types::Value;

/// The first segment of a path that reads the saga.
pub const ROOT: &str = "saga";

// Constants, not input: the test below parses them.
#[allow(clippy::expect_used)]
static FAILED: LazyLock<Schema> = LazyLock::new(|| {
    Schema::parse_str(
        r#"{"type": "record", "name": "Saga", "fields": [
            {"name": "id", "type": "string"},
            {"name": "failed_step", "type": ["null", "string"]},
            {"name": "reason", "type": ["null", "string"]}
        ]}"#,
    )
    .expect("the saga record's schema parses")
});

#[allow(clippy::expect_used)]
static GOING: LazyLock<Schema> = LazyLock::new(|| {
    Schema::parse_str(
        r#"{"type": "record", "name": "Saga", "fields": [{"name": "id", "type": "string"}]}"#,
    )
    .expect("the saga record's schema parses")
});

/// The saga record's schema: with the failure while `compensating` (a
/// compensation, the rejection), its id alone otherwise.
pub fn schema(compensating: bool) -> &'static Schema {
    if compensating { &FAILED } else { &GOING }
}

/// The saga record of saga `id`, with the step that failed and why while
/// it is compensated.
pub fn value(id: &str, failure: Option<(&str, &str)>) -> Value {
    let text = |text: Option<&str>| match text {
        Some(text) => Value::Union(1, Box::new(Value::String(text.to_owned()))),
        None => Value::Union(0, Box::new(Value::Null)),
    };
    Value::Record(vec![
        ("id".into(), Value::String(id.to_owned())),
        ("failed_step".into(), text(failure.map(|f| f.0))),
        ("reason".into(), text(failure.map(|f| f.1))),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_is_of_the_schema() {
        assert!(matches!(schema(false), Schema::Record(_)));
        for failure in [None, Some(("reserve", "refused"))] {
            assert!(value("s-1", failure).validate(schema(true)));
        }
    }
}
