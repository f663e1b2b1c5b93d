//! The sink process SIGKILLed twice mid-stream: after a restart, commands
//! delivered again find their ids on the records their first delivery
//! wrote, so every reference has one record, at its last values, and every
//! command has its result.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use common::{
    Topics, Tuning, audit_trail, by_ref, command, records, request_log, results, sandbox, send,
};
use serde_json::json;
use sluice_contracts::types::{ErpCommand, ErpOperation, ErpOutcome};
use sluice_testkit::{KillOnDrop, TestTopic, eventually, message_count, unique_name};

const COMMANDS: u32 = 1_500;
const REFS: u32 = 300;

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"))
}

/// The sink process. Run by the test below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of sigkill_mid_stream_applies_nothing_twice"]
async fn sink_child() {
    let topics = Topics {
        commands: TestTopic {
            name: var("COMMANDS"),
        },
        results: TestTopic {
            name: var("RESULTS"),
        },
        dlq: TestTopic { name: var("DLQ") },
        audit: TestTopic { name: var("AUDIT") },
    };
    let _stop = common::start(
        &var("BASE"),
        &topics,
        Tuning {
            group: var("GROUP"),
            ..Tuning::quick()
        },
    );
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_applies_nothing_twice() {
    let base = sandbox().await;
    let topics = Topics::create("erp-kill", 3).await;
    let group = unique_name("erp-kill");
    let spawn = || {
        KillOnDrop::test_child(
            "sink_child",
            &[
                ("BASE", &base),
                ("COMMANDS", &topics.commands.name),
                ("RESULTS", &topics.results.name),
                ("AUDIT", &topics.audit.name),
                ("DLQ", &topics.dlq.name),
                ("GROUP", &group),
            ],
        )
    };
    let commands: Vec<ErpCommand> = (0..COMMANDS)
        .map(|n| {
            let operation = if n < REFS {
                ErpOperation::Create
            } else {
                ErpOperation::Upsert
            };
            command(
                n,
                operation,
                &format!("so-{}", n % REFS),
                f64::from(n),
                "kill",
            )
        })
        .collect();
    send(&topics.commands.name, &commands).await;

    for threshold in [600, 1_800] {
        let child = spawn();
        eventually(&format!("{threshold} requests"), common::WAIT, || {
            let base = &base;
            async move { (request_log(base).await.len() >= threshold).then_some(()) }
        })
        .await;
        drop(child);
    }
    let child = spawn();
    let expected: BTreeMap<String, f64> = (COMMANDS - REFS..COMMANDS)
        .map(|n| (format!("so-{}", n % REFS), f64::from(n)))
        .collect();
    eventually(
        "every reference at its last amount",
        Duration::from_secs(180),
        || {
            let base = &base;
            let expected = &expected;
            async move {
                let erp = by_ref(&records(base).await);
                let current = expected.iter().all(|(reference, amount)| {
                    erp.get(reference)
                        .is_some_and(|r| r["amount_total"] == json!(amount))
                });
                current.then_some(())
            }
        },
    )
    .await;
    // The last results may trail the last write by a moment.
    eventually("a result per command", common::WAIT, || {
        let topic = &topics.results.name;
        async move {
            let count = usize::try_from(message_count(topic)).unwrap();
            let results = results(topic, count).await;
            let answered: HashSet<String> = results.into_iter().map(|r| r.command_id).collect();
            (answered.len() == COMMANDS as usize).then_some(())
        }
    })
    .await;
    // And the audit trail an outcome of each, kill -9 or not.
    eventually("an audit record per command", common::WAIT, || {
        let topic = &topics.audit.name;
        async move {
            let count = usize::try_from(message_count(topic)).unwrap();
            let audited: HashSet<String> = audit_trail(topic, count)
                .await
                .into_iter()
                .filter_map(|r| r.command_id)
                .collect();
            (audited.len() == COMMANDS as usize).then_some(())
        }
    })
    .await;
    drop(child);

    let erp = records(&base).await;
    assert_eq!(erp.len(), REFS as usize, "one record per reference");
    by_ref(&erp);
    let count = usize::try_from(message_count(&topics.results.name)).unwrap();
    let results = results(&topics.results.name, count).await;
    let again = results
        .iter()
        .filter(|r| r.outcome == ErpOutcome::AlreadyApplied)
        .count();
    eprintln!(
        "{COMMANDS} commands, 2 kills: {} records, {} results ({again} for commands found already applied after a kill)",
        erp.len(),
        results.len()
    );
    assert!(results.iter().all(|r| r.outcome != ErpOutcome::Rejected));
    assert_eq!(message_count(&topics.dlq.name), 0);
}
