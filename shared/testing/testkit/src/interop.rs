//! A producer that is not Sluice: Confluent's Python client (the virtualenv
//! `deploy/local/interop.sh` makes), writing records as a user's service would.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::Stack;

/// Produces `records` to `topic` with Confluent's client, in order (the
/// record format is in `deploy/local/interop/confluent_produce.py`); with
/// `schema` (an `.avsc`), values are Avro records its serializer registers
/// and writes. Every record must be delivered. Returns the schema id it
/// wrote, if any.
pub fn confluent_produce(topic: &str, schema: Option<&Path>, records: &[Value]) -> Option<u32> {
    let delivery = confluent_send(topic, schema.map(|file| (file, None)), records);
    for (record, error) in records.iter().zip(&delivery.errors) {
        assert!(error.is_none(), "{record} not delivered: {error:?}");
    }
    delivery.schema_id
}

/// What Confluent's client reported of a run.
#[derive(Debug)]
pub struct Delivery {
    /// The id its serializer wrote, if values were Avro.
    pub schema_id: Option<u32>,
    /// The broker's refusal of each record, if it refused it.
    pub errors: Vec<Option<String>>,
}

/// As [`confluent_produce`], reporting each record's refusal instead of
/// failing on it; `avro` is the `.avsc` and, if not `<topic>-value`, the
/// subject its serializer registers it under.
pub fn confluent_send(
    topic: &str,
    avro: Option<(&Path, Option<&str>)>,
    records: &[Value],
) -> Delivery {
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
    if let Some((schema, subject)) = avro {
        command.arg("--schema").arg(schema);
        if let Some(subject) = subject {
            command.args(["--subject", subject]);
        }
    }
    let answer = run_with_input(command, records, "Confluent's producer");
    let answer: Value = serde_json::from_slice(&answer).expect("its JSON answer");
    Delivery {
        schema_id: answer["schema_id"]
            .as_u64()
            .map(|id| u32::try_from(id).expect("a 32-bit schema id")),
        errors: answer["errors"]
            .as_array()
            .expect("an error per record")
            .iter()
            .map(|error| error.as_str().map(str::to_owned))
            .collect(),
    }
}

/// Produces `lines` to `topic` with Kafka's own console producer
/// (`kafka.sh console-producer`), each line a record as its `properties`
/// (`parse.key=true`, `null.marker=…`, …) say to read it.
pub fn console_produce(topic: &str, properties: &[&str], lines: &[&str]) {
    let stack = Stack::get();
    let mut command = Command::new("bash");
    command
        .env("SLUICE_LOCAL", &stack.local_dir)
        .arg(stack.path("deploy/local/kafka.sh"))
        .args(["console-producer", "--topic", topic]);
    for property in properties {
        command.args(["--property", property]);
    }
    run_with_input(command, lines, "Kafka's console producer");
}

/// Produces one record to `topic` with kcat (Debian's), as an operator or a
/// script would: `value` byte for byte, with `key` and `headers` (names and
/// values are bytes, as kcat passes them on: they need not be UTF-8).
pub fn kcat_produce(topic: &str, key: &str, headers: &[(&[u8], &[u8])], value: &[u8]) {
    use std::os::unix::ffi::OsStrExt;
    let stack = Stack::get();
    let file = std::env::temp_dir().join(crate::unique_name("kcat-value"));
    std::fs::write(&file, value).expect("writing the value");
    let mut command = Command::new("kcat");
    command.args(["-b", &stack.kafka_bootstrap, "-P", "-t", topic, "-k", key]);
    for (name, value) in headers {
        let header = [*name, b"=", *value].concat();
        command.arg("-H").arg(std::ffi::OsStr::from_bytes(&header));
    }
    // A file named after -P is one record, whatever bytes it holds.
    command.arg(&file);
    run_with_input::<&str>(command, &[], "kcat");
    std::fs::remove_file(file).expect("removing the value");
}

/// Runs `command` with `lines` on its standard input, one per line; its
/// standard output, or a panic naming `what` with its standard error.
fn run_with_input<T: std::fmt::Display>(mut command: Command, lines: &[T], what: &str) -> Vec<u8> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("starting {what}: {err}"));
    let mut stdin = child.stdin.take().expect("its stdin");
    for line in lines {
        writeln!(stdin, "{line}").unwrap_or_else(|err| panic!("writing to {what}: {err}"));
    }
    drop(stdin);
    let output = child
        .wait_with_output()
        .unwrap_or_else(|err| panic!("{what}: {err}"));
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
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
