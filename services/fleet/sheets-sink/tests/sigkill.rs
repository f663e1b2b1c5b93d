//! The sink process SIGKILLed twice mid-stream: after a restart, commands
//! delivered again find the rows their first delivery wrote (the index is
//! read back from the sheet), so every key has one row, at its last value,
//! and the audit trail lists every command's write.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::{
    Tuning, audit_topic, audited, command, grid_of, id, request_log, sandbox, send, start_with,
};
use serde_json::Value;
use sluice_contracts::types::{AuditRecord, SheetRowUpsert};
use sluice_sandbox::ServiceAccountKey;
use sluice_testkit::{KillOnDrop, TestTopic, eventually, unique_name};

const COMMANDS: u32 = 1_500;
const KEYS: u32 = 300;

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"))
}

/// The sink process. Run by the test below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of sigkill_mid_stream_adds_no_second_row"]
async fn sink_child() {
    let key = ServiceAccountKey::read(std::path::Path::new(&var("KEY_FILE"))).unwrap();
    let _stop = start_with(
        &var("BASE"),
        &key,
        &var("TOPIC"),
        &var("DLQ"),
        Tuning {
            group: var("GROUP"),
            // Small batches: many requests, so the kills land mid-stream.
            max_batch: 10,
            ..Tuning::quick()
        },
    );
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_adds_no_second_row() {
    let (base, key) = sandbox().await;
    let topic = TestTopic::with_schema_of("sheets.rows.v1", "sheets-kill", 3).await;
    let dlq = TestTopic::with_schema_of("dlq.sheets-sink.v1", "sheets-kill-dlq", 1).await;
    let dir = std::env::temp_dir().join(unique_name("sheets-kill"));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("key.json");
    key.write(&key_file).unwrap();
    let group = unique_name("sheets-kill");
    let key_file = key_file.to_str().unwrap();
    let audit = audit_topic().await;
    let spawn = || {
        KillOnDrop::test_child(
            "sink_child",
            &[
                ("BASE", &base),
                ("KEY_FILE", key_file),
                ("TOPIC", &topic.name),
                ("DLQ", &dlq.name),
                ("GROUP", &group),
                ("AUDIT", audit),
            ],
        )
    };
    let commands: Vec<SheetRowUpsert> = (0..COMMANDS)
        .map(|n| {
            let key = n % KEYS;
            let mut command = command(&id(n), &format!("k-{key}"), &format!("v{n}"), None);
            command.sheet = format!("Sheet{}", key % 3);
            command
        })
        .collect();
    send(&topic.name, &commands).await;

    for threshold in [40, 120] {
        let child = spawn();
        eventually(&format!("{threshold} requests"), common::WAIT, || {
            let base = &base;
            async move { (request_log(base).await.len() >= threshold).then_some(()) }
        })
        .await;
        drop(child);
    }
    let child = spawn();
    let expected: HashMap<String, String> = (COMMANDS - KEYS..COMMANDS)
        .map(|n| (format!("k-{}", n % KEYS), format!("v{n}")))
        .collect();
    let rows = eventually(
        "every key at its last value",
        Duration::from_secs(180),
        || {
            let base = &base;
            let expected = &expected;
            async move {
                let mut rows = Vec::new();
                for sheet in 0..3 {
                    rows.extend(
                        grid_of(base, &format!("Sheet{sheet}"))
                            .await
                            .into_iter()
                            .skip(1),
                    );
                }
                let current = rows.iter().all(|row| {
                    expected
                        .get(row[0].as_str().unwrap_or_default())
                        .map(String::as_str)
                        == row.get(1).and_then(Value::as_str)
                });
                (rows.len() >= expected.len() && current).then_some(rows)
            }
        },
    )
    .await;
    // Every command written is on the trail, kill -9 or not: its record
    // goes out before its offset is stored.
    let ids: Vec<String> = (0..COMMANDS).map(id).collect();
    eventually(
        "every command's write on the audit trail",
        common::WAIT,
        || {
            let ids = &ids;
            async move {
                let listed: HashSet<String> = audited(ids)
                    .await
                    .into_iter()
                    .flat_map(AuditRecord::entries)
                    .filter_map(|entry| entry.command_id)
                    .collect();
                (listed.len() == ids.len()).then_some(())
            }
        },
    )
    .await;
    drop(child);
    std::fs::remove_dir_all(&dir).unwrap();
    let keys: HashSet<&str> = rows.iter().map(|row| row[0].as_str().unwrap()).collect();
    assert_eq!(
        (rows.len(), keys.len()),
        (KEYS as usize, KEYS as usize),
        "one row per key"
    );
}
