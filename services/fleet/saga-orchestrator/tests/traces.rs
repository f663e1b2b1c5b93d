//! One order's trace, read back from the stack's Jaeger: the request ingest
//! took it in with, the saga that ran it, and the ERP and sheet writes of
//! erp-sink and sheets-sink, all under the trace id the client sent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::Fleet;
use rdkafka::Message;
use sluice_avro::AvroCodec;
use sluice_contracts::types::{AuditAction, AuditRecord};
use sluice_testkit::{Stack, committed_messages, eventually, trace_spans};

const TOKEN: &str = "traces-token-5e1b";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_orders_trace_spans_ingest_the_saga_and_both_sinks() {
    let fleet = Fleet::new("traces").await;
    let (_orchestrator, _) = fleet.orchestrator("orchestrator", &[]).await;
    let relay = fleet.relay().await;
    let _erp = fleet.erp_sink(100).await;
    let _sheets = fleet.sheets_sink().await;
    let (_ingest, api) = fleet.ingest(TOKEN).await;

    let trace_id = format!("{:032x}", fastrand::u128(1..));
    let traceparent = format!("00-{trace_id}-b7ad6b7169203331-01");
    fleet
        .take_in(
            &api,
            TOKEN,
            "order-traced",
            &[("traceparent", &traceparent)],
        )
        .await;
    let states = fleet.until_finished(1, Duration::from_secs(60)).await;
    assert_eq!(states.get("COMPLETED"), Some(&1), "{states:?}");

    let services = ["ingest", "saga-orchestrator", "erp-sink", "sheets-sink"];
    let spans = trace_spans(&trace_id, &services, Duration::from_secs(30)).await;
    let seen: BTreeSet<&str> = spans.iter().map(|span| span.service.as_str()).collect();
    println!("trace {trace_id}: {seen:?}, {} spans", spans.len());
    for service in services {
        assert!(seen.contains(service), "no span of {service} in {spans:?}");
    }

    // The JSON log lines written while handling the order's messages carry
    // its trace id, its flow's correlation id and the message's coordinates.
    for (label, topic) in [
        ("orchestrator", &fleet.topics.orders),
        ("erp-sink", &fleet.topics.erp_commands),
        ("sheets-sink", &fleet.topics.sheet_rows),
    ] {
        let log = fleet.log(label);
        let line = log
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|line| line["span"]["trace_id"] == trace_id.as_str())
            .unwrap_or_else(|| panic!("no {label} log line with trace id {trace_id}:\n{log}"));
        let span = &line["span"];
        assert_eq!(span["topic"], topic.as_str(), "{line}");
        assert_eq!(span["correlation_id"], "checkout-order-traced", "{line}");
        assert!(
            span["partition"].is_u64() && span["offset"].is_u64(),
            "{line}"
        );
        println!("{label}: {line}");
    }
    // Ingest and the relay write their debug line per event with the same
    // fields: the flow and the trace of what they took in and passed on.
    for (label, message) in [("ingest", "accepted"), ("relay", "relaying")] {
        let log = fleet.log(label);
        let line = log
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|line| {
                line["fields"]["message"] == message
                    && line["fields"]["trace_id"] == trace_id.as_str()
            })
            .unwrap_or_else(|| {
                panic!("no {label} {message:?} line with trace id {trace_id}:\n{log}")
            });
        let fields = &line["fields"];
        assert_eq!(fields["correlation_id"], "checkout-order-traced", "{line}");
        assert!(fields["topic"].is_string(), "{line}");
        println!("{label}: {line}");
    }
    // The audit trail names the flow and the trace too: the ERP writes, and
    // the sheet row (in its batch's record).
    let codec = AvroCodec::new(Stack::get().registry_settings());
    let entries = eventually(
        "the order's writes audited",
        Duration::from_secs(30),
        || {
            let codec = &codec;
            let topic = &fleet.topics.audit;
            async move {
                let mut entries: Vec<AuditRecord> = Vec::new();
                for message in committed_messages(topic).await {
                    let record: AuditRecord =
                        codec.decode(message.payload().unwrap()).await.unwrap();
                    entries.extend(record.entries());
                }
                let written = |action| entries.iter().any(|e: &AuditRecord| e.action == action);
                (written(AuditAction::ErpWrite) && written(AuditAction::SheetRowWrite))
                    .then_some(entries)
            }
        },
    )
    .await;
    for entry in &entries {
        assert_eq!(
            entry.trace_id.as_deref(),
            Some(trace_id.as_str()),
            "{entry:?}"
        );
        assert_eq!(
            entry.correlation_id.as_deref(),
            Some("checkout-order-traced"),
            "{entry:?}"
        );
    }
    fleet.finish(relay).await;
}
