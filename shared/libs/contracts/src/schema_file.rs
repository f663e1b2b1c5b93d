//! One `.avsc` file: parsed as Avro, checked for documentation, and its named
//! types collected so that the catalog can compare definitions across files.

use std::collections::HashMap;
use std::sync::Arc;

use apache_avro::Schema;
use apache_avro::schema::{Name, ResolvedSchema};
use serde_json::{Map, Value};

use crate::ContractError;

/// A parsed schema file.
#[derive(Debug)]
pub(crate) struct SchemaFile {
    /// Path relative to `schemas/`.
    pub path: String,
    /// The file as compact JSON: what is registered, docs included.
    pub compact_json: String,
    /// Shared, so that readers and writers built on it can keep it.
    pub schema: Arc<Schema>,
    /// Every named type the file defines, by full name, with its definition.
    pub named_types: Vec<(String, Value)>,
    /// Every named type of the schema by full name, its definition copied:
    /// what the schema's references resolve to, resolved once here, as
    /// resolving them for every JSON event converted was 9.7 % of
    /// outbox-relay's CPU in its benchmark (perf, call graphs).
    pub names: HashMap<Name, Schema>,
}

/// Every named type of `schema` by full name, its definition copied: what
/// the schema's references resolve to.
pub fn named_types_of(schema: &Schema) -> apache_avro::AvroResult<HashMap<Name, Schema>> {
    Ok(ResolvedSchema::try_from(schema)?
        .get_names()
        .iter()
        .map(|(name, named)| (name.clone(), (*named).clone()))
        .collect())
}

impl SchemaFile {
    pub fn parse(path: &str, text: &str) -> Result<Self, ContractError> {
        let json: Value =
            serde_json::from_str(text).map_err(|source| ContractError::SchemaJson {
                path: path.to_owned(),
                source,
            })?;
        let schema = Schema::parse(&json).map_err(|source| ContractError::InvalidSchema {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        if !matches!(schema, Schema::Record(_)) {
            return Err(ContractError::NotARecord {
                path: path.to_owned(),
            });
        }
        let mut named_types = Vec::new();
        collect_named_types(path, &json, None, &mut named_types)?;
        // Cannot fail once `Schema::parse` took it (it refuses unknown
        // names); mapped all the same.
        let names = named_types_of(&schema).map_err(|source| ContractError::InvalidSchema {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        Ok(Self {
            path: path.to_owned(),
            compact_json: json.to_string(),
            schema: Arc::new(schema),
            named_types,
            names,
        })
    }
}

/// Walks a schema that Avro already accepted, collecting named types and
/// requiring a `doc` on each record, enum and field.
fn collect_named_types(
    path: &str,
    node: &Value,
    namespace: Option<&str>,
    out: &mut Vec<(String, Value)>,
) -> Result<(), ContractError> {
    match node {
        Value::Array(branches) => branches
            .iter()
            .try_for_each(|branch| collect_named_types(path, branch, namespace, out)),
        Value::Object(map) => match map.get("type") {
            Some(Value::String(kind)) => match kind.as_str() {
                "record" | "error" | "enum" | "fixed" => named_type(path, map, namespace, out),
                "array" => child(path, map, "items", namespace, out),
                "map" => child(path, map, "values", namespace, out),
                _ => Ok(()),
            },
            Some(nested) => collect_named_types(path, nested, namespace, out),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

fn child(
    path: &str,
    map: &Map<String, Value>,
    key: &str,
    namespace: Option<&str>,
    out: &mut Vec<(String, Value)>,
) -> Result<(), ContractError> {
    match map.get(key) {
        Some(node) => collect_named_types(path, node, namespace, out),
        None => Ok(()),
    }
}

fn named_type(
    path: &str,
    map: &Map<String, Value>,
    enclosing_namespace: Option<&str>,
    out: &mut Vec<(String, Value)>,
) -> Result<(), ContractError> {
    let name = map.get("name").and_then(Value::as_str).unwrap_or_default();
    let namespace = map
        .get("namespace")
        .and_then(Value::as_str)
        .or(enclosing_namespace);
    let full_name = match namespace {
        Some(ns) if !name.contains('.') => format!("{ns}.{name}"),
        _ => name.to_owned(),
    };
    // A dotted name carries its own namespace for the types nested in it.
    let inner_namespace = full_name.rsplit_once('.').map(|(ns, _)| ns.to_owned());
    require_doc(path, map, &full_name)?;
    if let Some(Value::Array(fields)) = map.get("fields") {
        for field in fields {
            let field_name = field
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if let Value::Object(field_map) = field {
                require_doc(path, field_map, &format!("{full_name}.{field_name}"))?;
                if let Some(field_type) = field_map.get("type") {
                    collect_named_types(path, field_type, inner_namespace.as_deref(), out)?;
                }
            }
        }
    }
    out.push((full_name, Value::Object(map.clone())));
    Ok(())
}

fn require_doc(path: &str, map: &Map<String, Value>, location: &str) -> Result<(), ContractError> {
    match map.get("doc").and_then(Value::as_str) {
        Some(doc) if !doc.trim().is_empty() => Ok(()),
        _ => Err(ContractError::MissingDoc {
            path: path.to_owned(),
            location: location.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_without_doc_is_named() {
        let text = r#"{"type":"record","name":"A","namespace":"n","doc":"a",
            "fields":[{"name":"x","type":"string"}]}"#;
        let err = SchemaFile::parse("a.avsc", text).unwrap_err();
        assert_eq!(err.to_string(), "schemas/a.avsc: n.A.x has no doc");
    }

    #[test]
    fn nested_types_take_the_enclosing_namespace() {
        let text = r#"{"type":"record","name":"A","namespace":"n","doc":"a","fields":[
            {"name":"b","doc":"b","type":{"type":"record","name":"B","doc":"b","fields":[
              {"name":"e","doc":"e","type":{"type":"enum","name":"E","doc":"e","symbols":["X"]}}]}},
            {"name":"c","doc":"c","type":{"type":"array","items":{"type":"record","name":"o.C","doc":"c","fields":[]}}}]}"#;
        let file = SchemaFile::parse("a.avsc", text).unwrap();
        let names: Vec<&str> = file.named_types.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["n.E", "n.B", "o.C", "n.A"]);
    }

    #[test]
    fn non_record_value_schema_is_refused() {
        let err = SchemaFile::parse("s.avsc", r#""string""#).unwrap_err();
        assert!(matches!(err, ContractError::NotARecord { .. }), "{err}");
    }

    #[test]
    fn invalid_avro_names_the_file() {
        let err = SchemaFile::parse("bad.avsc", r#"{"type":"record","name":"A"}"#).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("schemas/bad.avsc: not a valid Avro schema"),
            "{err}"
        );
    }
}
