//! A producer that is not Sluice: Confluent's Python client (the virtualenv
//! `deploy/local/interop.sh` makes), writing records as a user's service would.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::Stack;

/// Produces `records` (`{"key", "value", "compression"}` each) to `topic`
/// with Confluent's client, in order; with `schema` (an `.avsc`), values are
/// Avro records its serializer registers and writes. Returns the schema id it
/// wrote, if any.
pub fn confluent_produce(topic: &str, schema: Option<&Path>, records: &[Value]) -> Option<u32> {
    let stack = Stack::get();
    let python = stack.local_dir.join("venv/bin/python");
    assert!(
        python.exists(),
        "{} missing: run deploy/local/interop.sh (make test does)",
        python.display()
    );
    let mut command = Command::new(python);
    command
        .arg(stack.path("deploy/local/interop/confluent_produce.py"))
        .args(["--bootstrap", &stack.kafka_bootstrap])
        .args(["--registry", &stack.schema_registry_url])
        .args(["--topic", topic]);
    if let Some(schema) = schema {
        command.arg("--schema").arg(schema);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting Confluent's producer");
    let mut stdin = child.stdin.take().expect("its stdin");
    for record in records {
        writeln!(stdin, "{record}").expect("writing a record to it");
    }
    drop(stdin);
    let output = child.wait_with_output().expect("Confluent's producer");
    assert!(
        output.status.success(),
        "Confluent's producer failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).expect("its JSON answer");
    answer["schema_id"]
        .as_u64()
        .map(|id| u32::try_from(id).expect("a 32-bit schema id"))
}

/// The value schema of `contract` (a topic of schemas/topics.toml) with an
/// optional string field (default null) appended for each of `fields`,
/// written to a new `.avsc` file: the next version another team registers.
pub fn evolved_schema(contract: &str, fields: &[&str]) -> std::path::PathBuf {
    let catalog = sluice_contracts::Catalog::embedded().expect("the built-in contracts");
    let json = catalog
        .topic(contract)
        .expect("a topic of topics.toml")
        .value_schema_json();
    let mut schema: Value = serde_json::from_str(json).expect("schema JSON");
    let list = schema["fields"].as_array_mut().expect("a record");
    for field in fields {
        list.push(
            serde_json::json!({ "name": field, "type": ["null", "string"], "default": null }),
        );
    }
    let path = std::env::temp_dir().join(format!("{}.avsc", crate::unique_name("evolved")));
    std::fs::write(&path, schema.to_string()).expect("writing the schema");
    path
}
