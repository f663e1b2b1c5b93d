//! A rolling upgrade with a new optional field on an event and on a
//! command. Generation 1 (ingest, the transformer, sheets-sink) runs on its
//! contracts; provisioning registers generation 2's: a `tickets` event with
//! `channel` added, and SheetRowUpsert with `note` added, both optional. The
//! new ingest and transformer start beside the old ones (the transformers
//! share the group, so each reads the other generation's events), the old
//! sink reads the new transformer's commands, then hands over to the new
//! sink, which reads the old transformer's; each transformer is SIGKILLed
//! and restarted once on the way. Nothing is refused, dead-lettered or
//! lost; the new rule maps `channel` on new events and leaves it at its
//! default on old ones. (`cargo build --workspace` first.)
// A test fails by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{add_aggregate, envelope, post, provision, sheet, start};
use rdkafka::Message;
use serde_json::{Value, json};
use sluice_fleet::{Place, Sandbox, scrape_sum, wait_ready};
use sluice_testkit::{
    KillOnDrop, Stack, TestTopic, committed_messages, eventually, free_port, message_count,
    token_sha256, unique_name,
};

/// The tickets contract; generation 2 adds `channel`.
fn tickets(generation: u8) -> Value {
    let mut opened = vec![json!({"name": "subject", "type": "string", "doc": "What it is about."})];
    if generation == 2 {
        opened.push(
            json!({"name": "channel", "type": ["null", "string"], "default": null,
            "doc": "Where the customer wrote from."}),
        );
    }
    envelope(
        "com.example.tickets",
        "TicketEvent",
        vec![
            json!({"type": "record", "name": "TicketOpened", "doc": "A ticket was opened.", "fields": opened}),
        ],
    )
}

/// A generation's contracts: the shipped ones with the test's row topic in
/// place of sheets.rows.v1 (generation 2 adds `note` to its commands), and
/// the tickets aggregate.
fn contracts(generation: u8, aggregate: &str, rows_topic: &str) -> PathBuf {
    let dir = Stack::get().contracts_copy();
    let map = std::fs::read_to_string(dir.join("topics.toml")).unwrap();
    let shipped = "name = \"sheets.rows.v1\"";
    assert!(
        map.contains(shipped),
        "topics.toml no longer says {shipped}"
    );
    let map = map.replace(shipped, &format!("name = \"{rows_topic}\""));
    std::fs::write(dir.join("topics.toml"), map).unwrap();
    if generation == 2 {
        let file = dir.join("sheets/SheetRowUpsert.avsc");
        let mut schema: Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        schema["fields"].as_array_mut().unwrap().push(json!(
            {"name": "note", "type": ["null", "string"], "default": null, "doc": "A remark for people."}));
        std::fs::write(&file, schema.to_string()).unwrap();
    }
    add_aggregate(&dir, aggregate, &tickets(generation));
    dir
}

/// A generation's rules: generation 2 also maps `channel`.
fn rules(generation: u8, aggregate: &str) -> String {
    let channel = if generation == 2 {
        r#"  { column = "Channel", value = { copy = "payload.channel" } },"#
    } else {
        ""
    };
    format!(
        r#"
[[rules]]
id = "tickets-opened"
aggregate = "{aggregate}"
event_type = "TicketOpened"
[rules.sheet]
spreadsheet = "support"
sheet = "Tickets"
key = {{ copy = "aggregate_id" }}
columns = [
  {{ column = "Ticket", value = {{ copy = "aggregate_id" }} }},
  {{ column = "Subject", value = {{ copy = "payload.subject" }} }},
{channel}
]
"#
    )
}

/// One generation's files and flags.
struct Generation {
    contracts: PathBuf,
    rules: PathBuf,
}

/// Everything the services of the test share.
struct Rig {
    logs: PathBuf,
    aggregate: String,
    rows: String,
    group: String,
    dlq: BTreeMap<&'static str, String>,
    sandbox: String,
    key: PathBuf,
    token: String,
}

impl Rig {
    fn env(generation: &Generation) -> (&'static str, String) {
        (
            "SLUICE_CONTRACTS_DIR",
            generation.contracts.display().to_string(),
        )
    }

    async fn ingest(&self, label: &str, generation: &Generation) -> (KillOnDrop, String) {
        let api = free_port();
        let (child, port) = start(
            &self.logs,
            "ingest",
            label,
            &[],
            &[
                Self::env(generation),
                ("SLUICE_INGEST_LISTEN", format!("127.0.0.1:{api}")),
                ("SLUICE_INGEST_TOKEN_SHA256", token_sha256(&self.token)),
            ],
        );
        ready(port).await;
        (child, format!("http://127.0.0.1:{api}"))
    }

    async fn transformer(&self, label: &str, generation: &Generation) -> (KillOnDrop, u16) {
        let rules = generation.rules.display().to_string();
        let (group, id) = (
            format!("{}-transform", self.group),
            format!("{}-{label}", self.group),
        );
        let (child, port) = start(
            &self.logs,
            "transformer",
            label,
            &[
                "--rules",
                &rules,
                "--sheets-topic",
                &self.rows,
                "--dlq-topic",
                &self.dlq["transformer"],
                "--group-id",
                &group,
                "--transactional-id",
                &id,
            ],
            &[
                Self::env(generation),
                ("SLUICE_KAFKA_PROPERTIES", "session.timeout.ms=6000".into()),
            ],
        );
        ready(port).await;
        (child, port)
    }

    async fn sink(&self, label: &str, generation: &Generation) -> KillOnDrop {
        let (key, group) = (
            self.key.display().to_string(),
            format!("{}-sink", self.group),
        );
        let (child, port) = start(
            &self.logs,
            "sheets-sink",
            label,
            &[
                "--service-account",
                &key,
                "--sheets-base-url",
                &self.sandbox,
                "--topic",
                &self.rows,
                "--dlq-topic",
                &self.dlq["sheets"],
                "--group-id",
                &group,
                "--requests-per-second",
                "50",
            ],
            &[Self::env(generation)],
        );
        ready(port).await;
        child
    }

    /// Posts ticket `id` through the ingest at `api`; generation 2's carry
    /// a channel.
    async fn open(&self, api: &str, id: &str, generation: u8) {
        let mut payload = json!({"subject": format!("about {id}")});
        if generation == 2 {
            payload["channel"] = json!("email");
        }
        let event = json!({"aggregate_type": self.aggregate, "aggregate_id": id,
            "event_type": "TicketOpened", "payload": payload});
        let (status, body) = post(api, &self.token, event).await;
        assert_eq!(status, 202, "ticket {id} through {api}: {body}");
    }
}

async fn ready(port: u16) {
    wait_ready(&format!("http://127.0.0.1:{port}"), Duration::from_secs(90))
        .await
        .unwrap();
}

/// The schema ids `topic`'s messages were written with, by partition.
async fn writer_ids(topic: &str) -> BTreeMap<i32, BTreeSet<u32>> {
    let mut ids: BTreeMap<i32, BTreeSet<u32>> = BTreeMap::new();
    for message in committed_messages(topic).await {
        let bytes = message.payload().unwrap();
        let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        ids.entry(message.partition()).or_default().insert(id);
    }
    ids
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_generations_read_each_other_through_a_rolling_upgrade() {
    let aggregate = format!("tickets{}", fastrand::u32(..));
    let work = std::env::temp_dir().join(unique_name("rolling"));
    std::fs::create_dir_all(&work).unwrap();
    let rows = format!("{}.v1", unique_name("ticket-rows"));
    let old = Generation {
        contracts: contracts(1, &aggregate, &rows),
        rules: write(&work, "rules-1.toml", &rules(1, &aggregate)),
    };
    let new = Generation {
        contracts: contracts(2, &aggregate, &rows),
        rules: write(&work, "rules-2.toml", &rules(2, &aggregate)),
    };
    let provisioned = provision(&old.contracts);
    assert!(
        provisioned.status.success(),
        "{}",
        String::from_utf8_lossy(&provisioned.stderr)
    );

    let place = Place {
        bin_dir: common::bin_dir(),
        logs: work.join("logs"),
        pids: work.join("pids"),
        stack_env: common::stack_env(),
        kill_on_drop: true,
    };
    let key = work.join("service-account.json");
    let sandbox = Sandbox::start(&place, &key, "support=Tickets", json!({}), json!({}))
        .await
        .unwrap();
    let mut dlq = BTreeMap::new();
    for (service, contract) in [
        ("transformer", "dlq.transformer.v1"),
        ("sheets", "dlq.sheets-sink.v1"),
    ] {
        dlq.insert(
            service,
            TestTopic::with_schema_of(contract, &format!("rolling-{service}-dlq"), 1)
                .await
                .name,
        );
    }
    let rig = Rig {
        logs: place.logs.clone(),
        aggregate: aggregate.clone(),
        rows,
        group: unique_name("rolling"),
        dlq,
        sandbox: sandbox.url.clone(),
        key,
        token: "rolling-token".into(),
    };

    // Generation 1 alone.
    let (ingest_1, api_1) = rig.ingest("ingest-1", &old).await;
    let mut transformer_1 = rig.transformer("transformer-1", &old).await;
    let sink_1 = rig.sink("sink-1", &old).await;
    let mut tickets: Vec<(String, u8)> = Vec::new();
    for n in 0..5 {
        let id = format!("A-{n}");
        rig.open(&api_1, &id, 1).await;
        tickets.push((id, 1));
    }

    // Generation 2's contracts registered while generation 1 runs; its
    // ingest and transformer start beside the old ones.
    let provisioned = provision(&new.contracts);
    assert!(
        provisioned.status.success(),
        "{}",
        String::from_utf8_lossy(&provisioned.stderr)
    );
    let (ingest_2, api_2) = rig.ingest("ingest-2", &new).await;
    let mut transformer_2 = rig.transformer("transformer-2", &new).await;
    for n in 0..30 {
        for (api, generation, prefix) in [(&api_1, 1, "B"), (&api_2, 2, "C")] {
            let id = format!("{prefix}-{n}");
            rig.open(api, &id, generation).await;
            tickets.push((id, generation));
        }
        // Each transformer SIGKILLed once mid-stream, and started again.
        if n == 10 {
            transformer_1.0.0.kill().unwrap();
            transformer_1 = rig.transformer("transformer-1", &old).await;
        }
        if n == 20 {
            transformer_2.0.0.kill().unwrap();
            transformer_2 = rig.transformer("transformer-2", &new).await;
        }
    }
    // Both transformers have been consuming, and every partition holds both
    // generations' events: each transformer read the other's.
    for (name, (_, port)) in [
        ("transformer-1", &transformer_1),
        ("transformer-2", &transformer_2),
    ] {
        let base = format!("http://127.0.0.1:{port}");
        eventually(
            &format!("{name} to consume"),
            Duration::from_secs(60),
            || {
                let base = base.clone();
                async move {
                    let consumed = scrape_sum(&base, "sluice_consumed_total").await?;
                    (consumed > 0.0).then_some(())
                }
            },
        )
        .await;
    }
    let events = writer_ids(&format!("{aggregate}.events.v1")).await;
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(
        events.values().all(|ids| ids.len() == 2),
        "both versions on every partition: {events:?}"
    );
    // The old sink has read the new transformer's commands; now the new one
    // takes over and reads what the old transformer still makes.
    // The sheet once every ticket in `ids` has its row (the key is column A).
    let settled = |ids: Vec<String>| {
        let sandbox = sandbox.url.clone();
        move || {
            let (sandbox, ids) = (sandbox.clone(), ids.clone());
            async move {
                let rows = sheet(&sandbox, "support", "Tickets").await?;
                let keys: std::collections::BTreeSet<&str> = rows
                    .iter()
                    .filter_map(|row| row.first().map(String::as_str))
                    .collect();
                ids.iter()
                    .all(|id| keys.contains(id.as_str()))
                    .then_some(rows)
            }
        }
    };
    let ids = |tickets: &[(String, u8)]| tickets.iter().map(|(id, _)| id.clone()).collect();
    eventually(
        "generation 1's sink to write every ticket so far",
        Duration::from_secs(120),
        settled(ids(&tickets)),
    )
    .await;
    drop(sink_1);
    let sink_2 = rig.sink("sink-2", &new).await;
    for n in 0..10 {
        let id = format!("D-{n}");
        rig.open(&api_1, &id, 1).await;
        tickets.push((id, 1));
    }

    // Generation 1 goes: its transformer first, so the new one maps the
    // old ingest's last events; then the old ingest.
    drop(transformer_1);
    rig.open(&api_1, "E-old", 1).await;
    tickets.push(("E-old".into(), 1));
    drop(ingest_1);
    rig.open(&api_2, "E-new", 2).await;
    tickets.push(("E-new".into(), 2));

    let rows = eventually(
        "every ticket on the sheet",
        Duration::from_secs(120),
        settled(ids(&tickets)),
    )
    .await;
    assert_eq!(
        rows.len(),
        tickets.len() + 1,
        "one row per ticket, and the header"
    );
    let header = &rows[0];
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (ticket, subject, channel) = (column("Ticket"), column("Subject"), column("Channel"));
    let by_ticket: BTreeMap<&str, &Vec<String>> = rows[1..]
        .iter()
        .map(|row| (row[ticket].as_str(), row))
        .collect();
    assert_eq!(by_ticket.len(), tickets.len(), "one row per ticket");
    for (id, _) in &tickets {
        let row = by_ticket
            .get(id.as_str())
            .unwrap_or_else(|| panic!("no row for {id}"));
        assert_eq!(row[subject], format!("about {id}"));
    }
    let cell = |id: &str| by_ticket[id].get(channel).cloned().unwrap_or_default();
    assert_eq!(cell("E-new"), "email", "the new rule maps the new field");
    assert_eq!(cell("E-old"), "", "an old event takes the field's default");
    let commands: BTreeSet<u32> = writer_ids(&rig.rows)
        .await
        .into_values()
        .flatten()
        .collect();
    assert_eq!(commands.len(), 2, "commands of both versions: {commands:?}");
    for (service, topic) in &rig.dlq {
        assert_eq!(message_count(topic), 0, "{service} dead-lettered something");
    }
    drop((ingest_2, transformer_2, sink_2));
    sandbox.stop().await;
}
