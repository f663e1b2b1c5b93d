//! Duplicated replies change nothing: after 100 sagas finished (10 of them
//! rejected by the ERP), every ErpResult and SheetRowResult is produced a
//! second time, byte for byte. The orchestrator recognises each as a reply
//! to a step already past and ignores it: states, step log, outbox, ERP and
//! sheet stay as they were. A reply naming a saga this orchestrator does
//! not hold (another saga's: the results topics carry every saga's) is
//! passed over too; bytes that are not Avro are dead-lettered.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Fleet, order_ids};
use rdkafka::Message;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde_json::json;
use sluice_avro::AvroCodec;
use sluice_contracts::types::{ErpOperation, ErpOutcome, ErpResult, SagaStep};
use sluice_testkit::{Stack, consume_exactly, eventually, message_count, metric, producer};

const ERP_REFUSES: &str = "Refused By The ERP";

async fn ignored(port: u16) -> f64 {
    let body = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metric(
        &body,
        "sluice_saga_replies_ignored_total",
        &[("saga", "order-fulfilment")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicated_replies_and_other_sagas_replies_change_nothing() {
    let fleet = Fleet::new("duplicates").await;
    fleet
        .sandbox
        .set_faults("odoo", &json!({"reject_value": ERP_REFUSES}))
        .await
        .unwrap();
    let (_orchestrator, port) = fleet.orchestrator("orchestrator", &[]).await;
    let relay = fleet.relay().await;
    let _erp = fleet.erp_sink(500).await;
    let _sheets = fleet.sheets_sink().await;
    let orders: Vec<(String, String)> = order_ids("order", 100)
        .into_iter()
        .enumerate()
        .map(|(i, id)| {
            let customer = if i % 10 == 0 {
                ERP_REFUSES
            } else {
                "Alan Turing"
            };
            (id, customer.to_owned())
        })
        .collect();
    fleet.place(&orders).await;
    let states = fleet.until_finished(100, Duration::from_secs(120)).await;
    assert_eq!(states.get("COMPLETED"), Some(&90), "{states:?}");
    let outcomes = fleet.outcomes().await;
    let log = fleet.step_log().await;
    let outbox = fleet.outbox_rows().await;
    let records = fleet.erp_records().await;
    let rows = fleet.sheet_rows().await;
    let ignored_before = ignored(port).await;

    // Every reply again, byte for byte.
    let erp_results =
        consume_exactly(&fleet.topics.erp_results, 100, Duration::from_secs(30)).await;
    let sheet_results =
        consume_exactly(&fleet.topics.sheet_results, 90, Duration::from_secs(30)).await;
    let producer = producer();
    for reply in erp_results.iter().chain(&sheet_results) {
        let mut headers = OwnedHeaders::new();
        for header in reply.headers().iter().flat_map(|h| h.iter()) {
            headers = headers.insert(Header {
                key: header.key,
                value: header.value,
            });
        }
        let mut record = FutureRecord::to(reply.topic())
            .key(reply.key().unwrap())
            .payload(reply.payload().unwrap());
        record = record.headers(headers);
        producer
            .send(record, Duration::from_secs(30))
            .await
            .unwrap();
    }

    // A reply for a saga this orchestrator does not hold, and bytes that
    // are not Avro.
    let codec = AvroCodec::new(Stack::get().registry_settings());
    let stray = ErpResult {
        command_id: uuid::Uuid::new_v4().to_string(),
        model: "sale.order".into(),
        operation: ErpOperation::Create,
        external_ref: "nobody".into(),
        outcome: ErpOutcome::Applied,
        erp_record_id: Some(1),
        error: None,
        attempts: 1,
        completed_at: 0,
        saga: Some(SagaStep {
            saga_id: uuid::Uuid::new_v4().to_string(),
            step: "reserve-in-erp".into(),
            attempt: 1,
        }),
        correlation_id: None,
        causation_id: None,
    };
    // One whose command id is the one a saga of this type would derive:
    // it waits for no start (none holds its lock) and is passed over too.
    let derived = {
        let saga_id = uuid::Uuid::new_v4();
        ErpResult {
            command_id: uuid::Uuid::new_v5(&saga_id, b"reserve-in-erp/do").to_string(),
            saga: Some(SagaStep {
                saga_id: saga_id.to_string(),
                step: "reserve-in-erp".into(),
                attempt: 1,
            }),
            ..stray.clone()
        }
    };
    let stray = codec
        .encode(&fleet.topics.erp_results, &stray)
        .await
        .unwrap();
    let derived = codec
        .encode(&fleet.topics.erp_results, &derived)
        .await
        .unwrap();
    for payload in [
        stray.as_slice(),
        derived.as_slice(),
        b"not avro at all".as_slice(),
    ] {
        producer
            .send(
                FutureRecord::to(&fleet.topics.erp_results)
                    .key("nobody")
                    .payload(payload),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
    }

    eventually(
        "190 duplicates and two other sagas' replies ignored",
        Duration::from_secs(60),
        || async { (ignored(port).await - ignored_before >= 192.0).then_some(()) },
    )
    .await;
    eventually("the dead letter", Duration::from_secs(60), || async {
        (message_count(&fleet.topics.dlq_saga) == 1).then_some(())
    })
    .await;
    let letters = consume_exactly(&fleet.topics.dlq_saga, 1, Duration::from_secs(30)).await;
    let classes: Vec<String> = letters
        .iter()
        .map(|letter| {
            letter
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "sluice.dlq.error-class"))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(classes, ["DECODE"]);

    assert_eq!(fleet.outcomes().await, outcomes);
    assert_eq!(fleet.step_log().await, log);
    assert_eq!(fleet.outbox_rows().await, outbox);
    assert_eq!(fleet.erp_records().await, records);
    assert_eq!(fleet.sheet_rows().await, rows);
    fleet.finish(relay).await;
}
