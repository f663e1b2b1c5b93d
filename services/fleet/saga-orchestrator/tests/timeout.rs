//! A step timeout, with two orchestrator replicas firing deadlines (FOR
//! UPDATE SKIP LOCKED: each fires once): erp-sink is not running, so the reservations get no
//! reply. After each deadline the command is sent again; once the retries
//! are spent the step fails and is compensated itself (its command may yet
//! be applied). When erp-sink comes back it applies the reservation and
//! then its cancellation, and the orders are rejected. The order's flow is
//! on every send, result and audit record.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Fleet, assert_each_once, orders_by};
use rdkafka::Message;
use serde_json::json;
use sluice_avro::AvroCodec;
use sluice_contracts::types::{AuditRecord, ErpResult};
use sluice_testkit::{Stack, committed_messages, eventually};
use sqlx::Row;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_step_without_reply_times_out_and_is_compensated() {
    let fleet = Fleet::new("timeout").await;
    // Two replicas fire deadlines side by side; each fires once.
    let timing = ["--erp-timeout-ms", "3000", "--step-retries", "2"];
    let (_first, _) = fleet.orchestrator("orchestrator-1", &timing).await;
    let (_second, _) = fleet.orchestrator("orchestrator-2", &timing).await;
    let relay = fleet.relay().await;
    let _sheets = fleet.sheets_sink().await;
    let orders = orders_by("order", 20, "Edsger Dijkstra");
    fleet.place(&orders).await;

    // Three sends 3 s apart, then the compensation.
    let states = eventually(
        "every saga compensating",
        Duration::from_secs(60),
        || async {
            let states = fleet.states().await;
            (states.get("COMPENSATING") == Some(&20)).then_some(states)
        },
    )
    .await;
    println!("before erp-sink starts: {states:?}");
    let waited: f64 = sqlx::query(
        "SELECT min(extract(epoch FROM l.at - s.started_at))::float8
         FROM saga.saga_steps l JOIN saga.sagas s USING (saga_id)
         WHERE l.event = 'timed_out' AND l.attempt = 3",
    )
    .fetch_one(&fleet.pool)
    .await
    .unwrap()
    .get(0);
    assert!(waited >= 9.0, "gave up after {waited:.1} s, before 3 × 3 s");
    assert!(fleet.erp_records().await.is_empty());

    let _erp = fleet.erp_sink(500).await;
    let states = fleet.until_finished(20, Duration::from_secs(60)).await;
    assert_eq!(states.get("COMPENSATED"), Some(&20), "{states:?}");
    let outcomes = fleet.outcomes().await;
    let records = fleet.erp_records().await;
    let rows = fleet.sheet_rows().await;
    for (order, _) in &orders {
        let failure = outcomes[order].1.as_ref().unwrap();
        assert_eq!(failure["step"], "reserve-in-erp");
        assert_eq!(failure["reason"], "no reply within 3s after 3 attempt(s)");
        // Applied late, then cancelled: one record, cancelled.
        assert_eq!(records[order].len(), 1, "{order}");
        assert_eq!(records[order][0]["state"], json!("cancel"), "{order}");
        assert_eq!(rows.get(order), None, "{order} reached the sheet");
    }
    let log = fleet.step_log().await;
    assert_each_once(&log);
    let count = |event: &str| log.keys().filter(|(_, _, _, e)| e == event).count();
    assert_eq!(count("timed_out"), 60);
    assert_eq!(count("command_sent"), 60);
    let outbox_reservations: i64 = sqlx::query("SELECT count(*) FROM saga.outbox WHERE topic = $1")
        .bind(&fleet.topics.erp_commands)
        .fetch_one(&fleet.pool)
        .await
        .unwrap()
        .get(0);
    // 3 sends and a cancellation per order, each sent again only after it
    // timed out (erp-sink may take longer to start than the 3 s), nothing
    // twice.
    let cancellations = count("compensation_sent");
    assert_eq!(cancellations, 20 + count("compensation_timed_out"));
    assert_eq!(
        outbox_reservations,
        i64::try_from(60 + cancellations).unwrap()
    );
    assert_eq!(count("compensated"), 20);
    assert_eq!(count("rejected"), 20);
    // Every message the sagas sent carries its order's correlation id: the
    // orders had it in their envelopes only (no header), and most sends
    // were made by timeouts, with no message behind them.
    let (sent, correlated): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (
             WHERE o.headers->>'sluice.correlation_id' = 'checkout-' || s.business_key)
         FROM saga.outbox o JOIN saga.sagas s USING (saga_id)",
    )
    .fetch_one(&fleet.pool)
    .await
    .unwrap();
    assert!(sent > 0);
    assert_eq!(correlated, sent, "sends without the order's correlation id");
    // In the values too: each ERP result names its order's flow and the
    // command it answers, and so does each write on the audit trail.
    let codec = AvroCodec::new(Stack::get().registry_settings());
    for message in committed_messages(&fleet.topics.erp_results).await {
        let result: ErpResult = codec.decode(message.payload().unwrap()).await.unwrap();
        let flow = format!("checkout-{}", result.external_ref);
        assert_eq!(result.correlation_id.as_ref(), Some(&flow), "{result:?}");
        assert_eq!(result.causation_id.as_ref(), Some(&result.command_id));
    }
    let mut audited = 0;
    for message in committed_messages(&fleet.topics.audit).await {
        let record: AuditRecord = codec.decode(message.payload().unwrap()).await.unwrap();
        let Some(order) = record.subject.strip_prefix("sale.order/") else {
            continue;
        };
        assert_eq!(
            record.correlation_id,
            Some(format!("checkout-{order}")),
            "{record:?}"
        );
        audited += 1;
    }
    assert!(
        audited >= 80,
        "3 sends and a cancellation per order: {audited}"
    );
    fleet.finish(relay).await;
}
