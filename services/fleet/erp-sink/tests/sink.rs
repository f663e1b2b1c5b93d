//! erp-sink against the sandbox's Odoo over HTTP: upsert by external
//! reference, a redelivered command applied once, and each permanent refusal
//! (a validation error, an update of a missing record, an unknown operation)
//! reported as REJECTED and dead-lettered alone while the rest flow; every
//! outcome on the audit trail, and the flow carried onto every result.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{
    Topics, Tuning, audit_trail, by_ref, command, event_of, faults, id, records, request_log,
    results, sandbox, send, send_to, start,
};
use rdkafka::Message;
use serde_json::json;
use sluice_avro::AvroCodec;
use sluice_contracts::types::{
    AuditAction, DeadLetter, DeadLetterClass, ErpCommand, ErpOperation, ErpOutcome,
};
use sluice_erp_sink::odoo::Protocol;
use sluice_resilience::FailureRate;
use sluice_testkit::{Stack, consume_exactly, message_count};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_applied_once_and_refusals_are_reported_and_dead_lettered() {
    applied_once_and_refusals_reported(Protocol::JsonRpc).await;
}

/// The same over Odoo 19's JSON-2 API: its HTTP statuses (422 for a
/// validation error, 404 for a missing record) name the same exceptions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_json_2_commands_are_applied_once_and_refusals_are_reported() {
    applied_once_and_refusals_reported(Protocol::Json2).await;
}

async fn applied_once_and_refusals_reported(protocol: Protocol) {
    let base = sandbox().await;
    let topics = Topics::create("erp-sink", 3).await;
    faults(&base, json!({"reject_value": "NOT-A-PARTNER"})).await;
    let mut unknown = command(8, ErpOperation::Unknown, "so-F", 1.0, "");
    unknown.fields.clear();
    let commands = [
        command(1, ErpOperation::Create, "so-A", 10.0, "placed"),
        command(2, ErpOperation::Update, "so-A", 20.0, "amended"),
        command(3, ErpOperation::Create, "so-B", 5.0, "placed"),
        // The update again, as a redelivery brings it.
        command(2, ErpOperation::Update, "so-A", 20.0, "amended"),
        command(
            4,
            ErpOperation::Cancel,
            "so-B",
            5.0,
            "customer changed their mind",
        ),
        command(5, ErpOperation::Update, "so-C", 1.0, "no such order"),
        command(6, ErpOperation::Create, "so-D", 1.0, "NOT-A-PARTNER"),
        command(7, ErpOperation::Upsert, "so-E", 7.5, "upserted"),
        unknown,
    ];
    send(&topics.commands.name, &commands).await;
    let tuning = Tuning {
        protocol,
        ..Tuning::quick()
    };
    let stop = start(&base, &topics, tuning);
    let results = results(&topics.results.name, commands.len()).await;
    let letters = consume_exactly(&topics.dlq.name, 3, common::WAIT).await;
    let trail = audit_trail(&topics.audit.name, commands.len()).await;
    stop.send(()).unwrap();

    // Every command has its result; the duplicate finds itself applied.
    let mut outcomes: BTreeMap<(String, String), usize> = BTreeMap::new();
    for result in &results {
        *outcomes
            .entry((result.command_id.clone(), format!("{:?}", result.outcome)))
            .or_default() += 1;
    }
    let expected: BTreeMap<(String, String), usize> = [
        (1, ErpOutcome::Applied),
        (2, ErpOutcome::Applied),
        (2, ErpOutcome::AlreadyApplied),
        (3, ErpOutcome::Applied),
        (4, ErpOutcome::Applied),
        (5, ErpOutcome::Rejected),
        (6, ErpOutcome::Rejected),
        (7, ErpOutcome::Applied),
        (8, ErpOutcome::Rejected),
    ]
    .into_iter()
    .map(|(n, outcome)| ((id(n), format!("{outcome:?}")), 1))
    .collect();
    assert_eq!(outcomes, expected);
    let codes: BTreeMap<String, String> = results
        .iter()
        .filter_map(|r| Some((r.external_ref.clone(), r.error.clone()?.code)))
        .collect();
    assert_eq!(codes["so-C"], "not_found");
    assert_eq!(codes["so-D"], "ValidationError");
    assert_eq!(codes["so-F"], "unknown_operation");

    // The ERP: one record per reference, at its last values.
    let erp = by_ref(&records(&base).await);
    assert_eq!(
        erp.keys().map(String::as_str).collect::<Vec<_>>(),
        ["so-A", "so-B", "so-E"]
    );
    assert_eq!(erp["so-A"]["amount_total"], json!(20.0));
    assert_eq!(erp["so-A"]["note"], json!("amended"));
    assert_eq!(
        erp["so-A"]["x_sluice_commands"],
        json!(format!("{} {}", id(1), id(2)))
    );
    assert_eq!(erp["so-B"]["state"], json!("cancel"));
    assert_eq!(erp["so-E"]["amount_total"], json!(7.5));
    let record_ids: Vec<Option<i64>> = results
        .iter()
        .filter(|r| r.external_ref == "so-A")
        .map(|r| r.erp_record_id)
        .collect();
    let so_a = erp["so-A"]["id"].as_i64();
    assert!(record_ids.iter().all(|id| *id == so_a), "{record_ids:?}");

    // Exactly the three refused commands are dead letters, bytes intact.
    let codec = AvroCodec::new(Stack::get().registry_settings());
    let mut dead = BTreeMap::new();
    for letter in letters {
        let letter: DeadLetter = codec.decode(letter.payload().unwrap()).await.unwrap();
        let key = String::from_utf8(letter.original_key.clone().unwrap()).unwrap();
        dead.insert(key, letter);
    }
    assert_eq!(
        dead.keys().map(String::as_str).collect::<Vec<_>>(),
        ["so-C", "so-D", "so-F"]
    );
    assert!(dead["so-D"].error_message.contains("ValidationError"));
    assert!(dead["so-D"].error_message.contains("NOT-A-PARTNER"));
    assert!(dead["so-C"].error_message.contains("no sale.order record"));
    assert_eq!(dead["so-F"].error_class, DeadLetterClass::Validation);
    assert_eq!(dead["so-D"].attempts, 1, "a permanent error is not retried");
    assert_eq!(message_count(&topics.dlq.name), 3);

    // Each result carries its command's flow, and names it as its cause.
    for result in &results {
        let n: u32 = result.command_id[24..].parse().unwrap();
        assert_eq!(result.correlation_id, Some(format!("flow-{n}")));
        assert_eq!(result.causation_id.as_ref(), Some(&result.command_id));
    }
    // The audit trail: one record per outcome, each saying what was written
    // where, from which event, and how it ended.
    assert_eq!(message_count(&topics.audit.name), commands.len() as i64);
    let mut audited: BTreeMap<(String, String), usize> = BTreeMap::new();
    for record in &trail {
        assert_eq!(record.action, AuditAction::ErpWrite);
        assert_eq!(
            (record.service.as_str(), record.actor.as_str()),
            ("erp-sink", "erp-sink@test")
        );
        let command_id = record.command_id.clone().unwrap();
        let n: u32 = command_id[24..].parse().unwrap();
        let sent = commands
            .iter()
            .find(|c| c.command_id == command_id)
            .unwrap();
        assert_eq!(record.subject, format!("sale.order/{}", sent.external_ref));
        assert_eq!(record.source_event_id, Some(event_of(n)));
        assert_eq!(record.correlation_id, Some(format!("flow-{n}")));
        match record.outcome.as_str() {
            "APPLIED" | "ALREADY_APPLIED" => {
                let record_id = erp[&sent.external_ref]["id"].as_i64().unwrap();
                assert_eq!(record.record_id, Some(record_id.to_string()), "{record:?}");
            }
            _ => assert!(record.detail.is_some(), "{record:?}"),
        }
        *audited
            .entry((command_id, record.outcome.clone()))
            .or_default() += 1;
    }
    let expected: BTreeMap<(String, String), usize> = outcomes
        .into_iter()
        .map(|((command_id, outcome), count)| {
            let outcome = match outcome.as_str() {
                "Applied" => "APPLIED",
                "AlreadyApplied" => "ALREADY_APPLIED",
                _ => "REJECTED",
            };
            ((command_id, outcome.to_owned()), count)
        })
        .collect();
    assert_eq!(audited, expected);
    // JSON-2 has no login: its key goes with every call.
    let logins = request_log(&base)
        .await
        .iter()
        .filter(|r| r["operation"] == "authenticate")
        .count();
    assert_eq!(logins > 0, protocol == Protocol::JsonRpc, "{logins} logins");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_out_of_retries_is_answered_rejected_and_dead_lettered() {
    let base = sandbox().await;
    let topics = Topics::create("erp-exhausted", 1).await;
    faults(&base, json!({"error_rates": {"500": 1.0}})).await;
    let commands = [
        command(1, ErpOperation::Create, "so-X", 1.0, "never"),
        command(2, ErpOperation::Create, "so-Y", 2.0, "never"),
    ];
    send(&topics.commands.name, &commands).await;
    let mut tuning = Tuning::quick();
    tuning.retry.max_retries = 2;
    let stop = start(&base, &topics, tuning);
    let results = results(&topics.results.name, 2).await;
    let letters = consume_exactly(&topics.dlq.name, 2, common::WAIT).await;
    let trail = audit_trail(&topics.audit.name, 2).await;
    stop.send(()).unwrap();
    assert!(
        trail.iter().all(|r| r.outcome == "RETRIES_EXHAUSTED"
            && r.detail.as_deref().is_some_and(|d| d.contains("HTTP 500"))),
        "{trail:?}"
    );

    for result in &results {
        assert_eq!(result.outcome, ErpOutcome::Rejected, "{result:?}");
        let error = result.error.clone().unwrap();
        assert_eq!(error.code, "retries_exhausted");
        assert!(error.message.contains("HTTP 500"), "{}", error.message);
        assert_eq!(result.attempts, 3, "the first try and two retries");
    }
    let codec = AvroCodec::new(Stack::get().registry_settings());
    for letter in letters {
        let letter: DeadLetter = codec.decode(letter.payload().unwrap()).await.unwrap();
        assert_eq!(letter.error_class, DeadLetterClass::RetriesExhausted);
    }
    assert!(records(&base).await.is_empty());
}

/// An outage longer than a command's whole retry budget: once the breaker
/// opens, the partition is held (a pause spends no retry, and while nothing
/// else is applied a failure does not count against the budget), so nothing
/// is refused or dead-lettered and every command is applied once the ERP is
/// back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_retries_dead_letters_nothing() {
    let base = sandbox().await;
    let topics = Topics::create("erp-outage", 1).await;
    let mut tuning = Tuning::quick();
    // Two retries (about 60 ms) against 3 s of outage; the breaker opens
    // after two failures and tries again every 500 ms.
    tuning.retry.max_retries = 2;
    tuning.breaker.failure_threshold = 2;
    tuning.breaker.open_wait = Duration::from_millis(500);
    let stop = start(&base, &topics, tuning);
    // The sink is up (logged in, partition assigned) before the ERP goes.
    let first = command(0, ErpOperation::Create, "so-0", 0.0, "c");
    send(&topics.commands.name, &[first]).await;
    results(&topics.results.name, 1).await;
    // Every call fails with 500 (no Retry-After to wait out) for 3 s.
    faults(&base, json!({"error_rates": {"500": 1.0}})).await;
    let commands: Vec<ErpCommand> = (1..6)
        .map(|n| {
            command(
                n,
                ErpOperation::Create,
                &format!("so-{n}"),
                f64::from(n),
                "c",
            )
        })
        .collect();
    send(&topics.commands.name, &commands).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    faults(&base, json!({})).await;
    let results = results(&topics.results.name, 6).await;
    stop.send(()).unwrap();

    assert!(
        results.iter().all(|r| r.outcome == ErpOutcome::Applied),
        "{results:?}"
    );
    assert_eq!(records(&base).await.len(), 6);
    assert_eq!(message_count(&topics.dlq.name), 0, "nothing dead-lettered");
    let failed = request_log(&base)
        .await
        .iter()
        .filter(|r| r["status"] == 500)
        .count();
    assert!(failed > 3, "the outage was met ({failed} × 500)");
}

/// Poison that looks like an outage: one command Odoo fails on every time
/// with a transient error (a serialization failure) while it serves every
/// other command. Its own failures open the breaker (half of the last four
/// calls: a failing create after a search that passes is half), and a hold
/// must not give it its retries afresh: once they are spent while other
/// commands were applied, it is dead-lettered as out of retries and its
/// partition moves on (the upsert behind it is applied).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_failing_transiently_while_others_are_applied_is_dead_lettered() {
    let base = sandbox().await;
    let topics = Topics::create("erp-poison", 2).await;
    faults(&base, json!({"fail_value": "FLAKY"})).await;
    let mut tuning = Tuning::quick();
    tuning.breaker.failure_rate = Some(FailureRate {
        threshold: 0.5,
        window: 4,
        minimum_calls: 4,
    });
    tuning.breaker.open_wait = Duration::from_millis(300);
    tuning.retry.max_retries = 5;
    // One lane at a time: while the poison is held, the other partition runs.
    tuning.max_concurrent = 1;
    let stop = start(&base, &topics, tuning);
    send_to(
        &topics.commands.name,
        Some(0),
        &[
            command(1, ErpOperation::Create, "so-P", 1.0, "FLAKY"),
            command(2, ErpOperation::Upsert, "so-P", 2.0, "after"),
        ],
    )
    .await;
    // Other commands keep coming on the other partition, a few a second,
    // until the poison is given up: they are the sign that the ERP works.
    let (letters, sent) = {
        let letter = consume_exactly(&topics.dlq.name, 1, common::WAIT);
        tokio::pin!(letter);
        let mut sent = 0;
        loop {
            tokio::select! {
                letters = &mut letter => break (letters, sent),
                () = tokio::time::sleep(Duration::from_millis(250)) => {
                    sent += 1;
                    let n = 100 + sent;
                    let good = command(n, ErpOperation::Create, &format!("so-G{n}"), 1.0, "good");
                    send_to(&topics.commands.name, Some(1), &[good]).await;
                }
            }
        }
    };
    let results = results(&topics.results.name, 2 + sent as usize).await;
    stop.send(()).unwrap();

    let codec = AvroCodec::new(Stack::get().registry_settings());
    let letter: DeadLetter = codec.decode(letters[0].payload().unwrap()).await.unwrap();
    assert_eq!(letter.error_class, DeadLetterClass::RetriesExhausted);
    assert!(
        letter.error_message.contains("SerializationFailure"),
        "the command's own failure, not the breaker's: {}",
        letter.error_message
    );
    assert!(letter.attempts >= 6, "{} attempts", letter.attempts);
    let poison = results.iter().find(|r| r.command_id == id(1)).unwrap();
    assert_eq!(poison.outcome, ErpOutcome::Rejected, "{poison:?}");
    assert_eq!(poison.error.as_ref().unwrap().code, "retries_exhausted");
    assert!(
        results
            .iter()
            .filter(|r| r.command_id != id(1))
            .all(|r| r.outcome == ErpOutcome::Applied),
        "{results:?}"
    );
    let erp = by_ref(&records(&base).await);
    assert_eq!(erp.len(), 1 + sent as usize, "so-P and every other command");
    assert_eq!(erp["so-P"]["note"], "after", "the partition moved on");
}

/// An ERP that answers a refusal with megabytes of message (a validation
/// error listing every record it found, a proxy's page): the result, the
/// audit record and the dead letter carry it cut to size, and are written
/// (whole, Kafka refused them as too large and the partition stood still).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_with_megabytes_of_message_is_reported_cut_to_size() {
    let base = sandbox().await;
    let topics = Topics::create("erp-long-error", 1).await;
    faults(
        &base,
        json!({"reject_value": "LONG", "error_message_bytes": 2_000_000}),
    )
    .await;
    send(
        &topics.commands.name,
        &[
            command(1, ErpOperation::Create, "so-L", 1.0, "LONG"),
            command(2, ErpOperation::Create, "so-M", 2.0, "after"),
        ],
    )
    .await;
    let stop = start(&base, &topics, Tuning::quick());
    let results = results(&topics.results.name, 2).await;
    let letters = consume_exactly(&topics.dlq.name, 1, common::WAIT).await;
    let trail = audit_trail(&topics.audit.name, 2).await;
    stop.send(()).unwrap();

    let refused = results.iter().find(|r| r.command_id == id(1)).unwrap();
    let message = &refused.error.as_ref().unwrap().message;
    assert!(
        message
            .starts_with("odoo sale.order.create: odoo.exceptions.ValidationError: The value LONG"),
        "{}",
        &message[..200.min(message.len())]
    );
    assert!(message.len() <= 8 * 1024, "{} bytes", message.len());
    assert!(
        message.contains("bytes cut"),
        "says it was cut: …{}",
        &message[message.len().saturating_sub(100)..]
    );
    let letter: DeadLetter = AvroCodec::new(Stack::get().registry_settings())
        .decode(letters[0].payload().unwrap())
        .await
        .unwrap();
    assert!(
        letter.error_message.len() <= 8 * 1024,
        "{} bytes",
        letter.error_message.len()
    );
    let detail = trail
        .iter()
        .find(|r| r.command_id == Some(id(1)))
        .and_then(|r| r.detail.clone())
        .unwrap();
    assert!(detail.len() <= 8 * 1024, "{} bytes", detail.len());
    let after = results.iter().find(|r| r.command_id == id(2)).unwrap();
    assert_eq!(after.outcome, ErpOutcome::Applied, "the partition moved on");
}

/// A create that Odoo commits after the sink stopped waiting for it (a
/// write waiting on a lock past the call's timeout; Odoo finishes the
/// request all the same): the retry looks for it only once Odoo must have
/// finished, so the order has one record, not one per attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_committed_after_its_timeout_is_not_made_again() {
    const LATE: Duration = Duration::from_millis(2_500);
    let base = sandbox().await;
    let topics = Topics::create("erp-late", 1).await;
    faults(&base, json!({"write_latency_ms": LATE.as_millis()})).await;
    let tuning = Tuning {
        call_timeout: Duration::from_secs(1),
        settle: Duration::from_secs(4),
        ..Tuning::quick()
    };
    let stop = start(&base, &topics, tuning);
    send(
        &topics.commands.name,
        &[command(1, ErpOperation::Create, "so-late", 7.0, "late")],
    )
    .await;
    let results = results(&topics.results.name, 1).await;
    // Any create still waiting in the ERP is committed by now.
    tokio::time::sleep(LATE * 2).await;
    stop.send(()).unwrap();

    assert_ne!(results[0].outcome, ErpOutcome::Rejected, "{:?}", results[0]);
    let made = records(&base)
        .await
        .into_iter()
        .filter(|r| r["x_sluice_external_ref"] == "so-late")
        .count();
    let creates = request_log(&base)
        .await
        .into_iter()
        .filter(|r| r["operation"] == "create")
        .count();
    assert_eq!(made, 1, "records of so-late ({creates} creates sent)");
}
