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
    let saga = fleet.saga_with_erp_timing("3s", 2);
    let timing = ["--saga", saga.as_str()];
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

/// A saga row this definition cannot read (its step renamed by a deploy
/// while it was in flight), its deadline long passed and so first in line:
/// it held every other saga's timeout (the whole batch failed on it, every
/// tick). Now the orchestrator names it once, and the sagas placed after it
/// time out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_saga_the_definition_cannot_read_holds_back_no_other_timeout() {
    let fleet = Fleet::new("unreadable").await;
    let saga = fleet.saga_with_erp_timing("2s", 0);
    let timing = ["--saga", saga.as_str()];
    let (_orchestrator, _) = fleet.orchestrator("orchestrator", &timing).await;
    let relay = fleet.relay().await;
    let orders = orders_by("order", 3, "Barbara Liskov");
    fleet.place(&orders[..1]).await;
    eventually("the first saga", Duration::from_secs(60), || async {
        (fleet.states().await.values().sum::<i64>() == 1).then_some(())
    })
    .await;
    let unreadable: uuid::Uuid = sqlx::query(
        "UPDATE saga.sagas SET step = 'renamed-step', deadline = now() - interval '1 hour'
         RETURNING saga_id",
    )
    .fetch_one(&fleet.pool)
    .await
    .unwrap()
    .get(0);
    let named = || {
        let log = fleet.log("orchestrator");
        let count = log
            .lines()
            .filter(|line| line.contains("cannot read") && line.contains(&unreadable.to_string()))
            .count();
        (count, log)
    };
    // Orders placed after it: their deadlines pass while it is first in line.
    fleet.place(&orders[1..]).await;
    eventually(
        "the two others timed out",
        Duration::from_secs(60),
        || async {
            let timed_out: i64 = sqlx::query(
                "SELECT count(DISTINCT saga_id) FROM saga.saga_steps
                 WHERE event = 'timed_out' AND saga_id <> $1",
            )
            .bind(unreadable)
            .fetch_one(&fleet.pool)
            .await
            .unwrap()
            .get(0);
            (timed_out == 2).then_some(())
        },
    )
    .await;
    eventually(
        "the orchestrator to name it",
        Duration::from_secs(60),
        || async { (named().0 > 0).then_some(()) },
    )
    .await;

    let (count, log) = named();
    assert_eq!(count, 1, "named once:\n{log}");
    fleet.finish(relay).await;
}

/// An ERP away longer than a reservation's timeouts and its cancellation's:
/// the sagas fail (an operator's to see). When erp-sink comes back it
/// applies the reservation, then the cancellation, and the cancellation's
/// success, late, resumes each saga: it ends compensated and announces the
/// rejection, where it stayed failed with no outcome and the reply was
/// dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancellation_applied_after_it_was_given_up_ends_the_saga() {
    let fleet = Fleet::new("late-cancel").await;
    let saga = fleet.saga_with_erp_timing("2s", 0);
    let timing = ["--saga", saga.as_str()];
    let (_orchestrator, _) = fleet.orchestrator("orchestrator", &timing).await;
    let relay = fleet.relay().await;
    let orders = orders_by("order", 5, "Frances Allen");
    fleet.place(&orders).await;
    let states = fleet.until_finished(5, Duration::from_secs(60)).await;
    assert_eq!(states.get("FAILED"), Some(&5), "{states:?}");

    let _erp = fleet.erp_sink(500).await;
    eventually(
        "every saga compensated",
        Duration::from_secs(60),
        || async { (fleet.states().await.get("COMPENSATED") == Some(&5)).then_some(()) },
    )
    .await;
    let records = fleet.erp_records().await;
    let log = fleet.step_log().await;
    assert_each_once(&log);
    let count = |event: &str| log.keys().filter(|(_, _, _, e)| e == event).count();
    assert_eq!((count("compensated"), count("rejected")), (5, 5));
    for (order, _) in &orders {
        assert_eq!(records[order].len(), 1, "{order}");
        assert_eq!(records[order][0]["state"], json!("cancel"), "{order}");
    }
    fleet.finish(relay).await;
}
