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
