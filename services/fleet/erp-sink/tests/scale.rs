//! Scaling out mid-load against a slow Odoo: two replicas of one group are
//! applying commands when a third joins and takes partitions from both. A
//! revoked partition's batch in hand settles before its new owner starts
//! it, so every sale order is made once. The third replica's audit records
//! show it joined while work was left: it made sale orders itself.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Topics, Tuning, by_ref, command, faults, records, sandbox, send, start};
use rdkafka::Message;
use serde_json::json;
use sluice_avro::AvroCodec;
use sluice_contracts::types::{AuditRecord, ErpCommand, ErpOperation};
use sluice_testkit::{Stack, committed_messages, eventually, unique_name};

const COMMANDS: u32 = 180;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_scaled_to_three_mid_load_make_each_sale_order_once() {
    let base = sandbox().await;
    // A slow Odoo: every call takes 150 ms, so batches are in hand when
    // the third replica joins.
    faults(&base, json!({"latency_ms": 150})).await;
    let topics = Topics::create("erp-scale", 6).await;
    let group = unique_name("erp-scale");
    let tuning = |actor: &str| Tuning {
        group: group.clone(),
        actor: actor.to_owned(),
        ..Tuning::quick()
    };
    let mut replicas = vec![
        start(&base, &topics, tuning("first")),
        start(&base, &topics, tuning("second")),
    ];
    let commands: Vec<ErpCommand> = (1..=COMMANDS)
        .map(|n| command(n, ErpOperation::Create, &format!("so-{n}"), 1.0, "c"))
        .collect();
    send(&topics.commands.name, &commands).await;
    let base = &base;
    eventually(
        "a sixth of the sale orders made",
        Duration::from_secs(120),
        || async move { (records(base).await.len() >= (COMMANDS / 6) as usize).then_some(()) },
    )
    .await;
    replicas.push(start(base, &topics, tuning("third")));
    let made = eventually(
        "every sale order made",
        Duration::from_secs(180),
        || async move {
            let made = records(base).await;
            (made.len() >= COMMANDS as usize).then_some(made)
        },
    )
    .await;
    // Anything applied twice would have come by now: the last commands are
    // made, and each replica's batch in hand with them.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let made = records(base).await.len().max(made.len());
    for stop in replicas {
        stop.send(()).unwrap();
    }
    let orders = by_ref(&records(base).await);
    assert_eq!((orders.len(), made), (COMMANDS as usize, COMMANDS as usize));
    // The third replica came while there was work to take over.
    let codec = AvroCodec::new(Stack::get().registry_settings());
    let mut by_third = 0;
    for message in committed_messages(&topics.audit.name).await {
        let record: AuditRecord = codec.decode(message.payload().unwrap()).await.unwrap();
        by_third += usize::from(record.actor == "third" && record.outcome == "APPLIED");
    }
    println!("the third replica made {by_third} of the {COMMANDS} sale orders");
    assert!(
        by_third > 0,
        "the third replica applied nothing: it joined too late"
    );
}
