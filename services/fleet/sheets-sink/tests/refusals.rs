//! Google's refusals that no retry of one command cures: a 429 without
//! Retry-After (Google sends none) is backed off exponentially, and a sheet
//! not shared with the account (403 PERMISSION_DENIED) or a key the token
//! endpoint refuses holds the stream until it is fixed: nothing is
//! dead-lettered, and every command lands once it is.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{
    Tuning, WAIT, command, faults, grid, http, id, paced, request_log, sandbox, send, sink_key,
    start_with, upserter, upserter_with,
};
use serde_json::{Value, json};
use sluice_contracts::types::SheetRowUpsert;
use sluice_resilience::{Classified, ErrorClass};
use sluice_sandbox::Local;
use sluice_sheets_sink::google::TokenSource;
use sluice_testkit::{TestTopic, eventually, message_count};

fn one_at_a_time() -> Tuning {
    Tuning {
        max_batch: 1,
        ..Tuning::quick()
    }
}

async fn until_rows(base: &str, rows: usize) {
    eventually("every row", WAIT, || async move {
        (grid(base).await.len() == rows + 1).then_some(())
    })
    .await;
}

fn three_commands() -> Vec<SheetRowUpsert> {
    (0..3u32)
        .map(|n| command(&id(300 + n), &format!("k-{n}"), "9.99", None))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_without_retry_after_is_backed_off_exponentially() {
    let (base, key) = sandbox().await;
    let topic = TestTopic::with_schema_of("sheets.rows.v1", "sheets-bare-429", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.sheets-sink.v1", "sheets-bare-429-dlq", 1).await;
    faults(&base, json!({"burst_429": 4, "bare_429": true})).await;
    let stop = start_with(&base, &key, &topic.name, &dlq.name, one_at_a_time());
    send(&topic.name, &[command(&id(1), "o-1", "1.00", None)]).await;
    until_rows(&base, 1).await;
    stop.send(()).unwrap();
    let log = request_log(&base).await;
    let calls: Vec<&Value> = log.iter().filter(|r| r["operation"] != "token").collect();
    let statuses: Vec<i64> = calls
        .iter()
        .map(|r| r["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses[..5], [429, 429, 429, 429, 200], "{statuses:?}");
    let at: Vec<i64> = calls.iter().map(|r| r["at_ms"].as_i64().unwrap()).collect();
    let gaps: Vec<i64> = at.windows(2).take(4).map(|w| w[1] - w[0]).collect();
    println!("gaps after each bare 429: {gaps:?} ms");
    for (n, gap) in gaps.iter().enumerate() {
        let floor = 1000 << n;
        assert!(
            *gap >= floor * 9 / 10 && *gap <= floor + 4000,
            "gap {n} is {gap} ms, not about {floor} ms: {gaps:?}"
        );
    }
    assert_eq!(message_count(&dlq.name), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sheet_not_shared_holds_the_stream_instead_of_dead_lettering_it() {
    let (base, key) = sandbox().await;
    let topic = TestTopic::with_schema_of("sheets.rows.v1", "sheets-denied", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.sheets-sink.v1", "sheets-denied-dlq", 1).await;
    // Unshared for 5 s, then someone shares it.
    faults(&base, json!({"denied_secs": 5})).await;
    let stop = start_with(&base, &key, &topic.name, &dlq.name, one_at_a_time());
    send(&topic.name, &three_commands()).await;
    until_rows(&base, 3).await;
    stop.send(()).unwrap();
    let statuses: Vec<i64> = request_log(&base)
        .await
        .iter()
        .map(|r| r["status"].as_i64().unwrap())
        .collect();
    assert!(
        statuses.contains(&403),
        "the sheet was refused: {statuses:?}"
    );
    assert_eq!(message_count(&dlq.name), 0, "a refusal was dead-lettered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_holds_the_stream_until_the_token_endpoint_takes_it() {
    let (base, key) = sandbox().await;
    let topic = TestTopic::with_schema_of("sheets.rows.v1", "sheets-no-token", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.sheets-sink.v1", "sheets-no-token-dlq", 1).await;
    let sandbox = Local::at(&base);
    sandbox
        .set_faults("oauth", &json!({"error_rates": {"400": 1.0}}))
        .await
        .unwrap();
    let stop = start_with(&base, &key, &topic.name, &dlq.name, one_at_a_time());
    send(&topic.name, &three_commands()).await;
    // Held and tried again: three refusals, a second and two apart.
    eventually("the token refused three times", WAIT, || async {
        let refused = sandbox.requests("oauth").await.ok()?;
        (refused.iter().filter(|r| r["status"] == 400).count() >= 3).then_some(())
    })
    .await;
    assert_eq!(
        message_count(&dlq.name),
        0,
        "a token refusal was dead-lettered"
    );
    sandbox.set_faults("oauth", &json!({})).await.unwrap();
    until_rows(&base, 3).await;
    stop.send(()).unwrap();
    assert_eq!(message_count(&dlq.name), 0);
}

/// A remote's Retry-After is not trusted: a day-long one holds the account
/// for the operator's bound (`--max-retry-after-secs`, here 1 s), and the
/// next call goes through. Before, the bound was a constant 15 minutes.
#[tokio::test]
async fn a_day_long_retry_after_holds_the_account_for_the_configured_bound_only() {
    let (base, key) = sandbox().await;
    faults(&base, json!({"burst_429": 1, "retry_after_secs": 86_400})).await;
    let tuning = Tuning::quick();
    let bound = Duration::from_secs(1);
    let upserter = upserter_with(
        &base,
        TokenSource::new(sink_key(&key), None, http()).unwrap(),
        paced(tuning.limiter).with_max_wait(bound),
        tuning.breaker,
    );
    let rows = [command(&id(1), "k-1", "1.00", None)];
    let err = upserter.upsert(&rows).await.unwrap_err();
    assert_eq!(
        (err.status, err.retry_after),
        (Some(429), Some(bound)),
        "{err}"
    );
    tokio::time::timeout(WAIT, upserter.upsert(&rows))
        .await
        .expect("the account was held past the bound")
        .unwrap();
    assert_eq!(grid(&base).await[1][0], "k-1");
}

/// A proxy's error page that never ends is read only so far: the error
/// carries what it began with, cut to size. Before, the page was read to
/// the call's timeout and the error said `null`.
#[tokio::test]
async fn an_error_page_that_never_ends_is_read_only_so_far() {
    let (base, key) = sandbox().await;
    faults(
        &base,
        json!({"error_rates": {"502": 1.0}, "endless_error_body": true}),
    )
    .await;
    let tuning = Tuning::quick();
    let upserter = upserter(&base, &key, tuning.limiter, tuning.breaker);
    let err = upserter
        .upsert(&[command(&id(1), "k-1", "1.00", None)])
        .await
        .unwrap_err();
    assert_eq!(err.status, Some(502), "{err}");
    assert!(
        err.message
            .starts_with("<html><head><title>502 Bad Gateway"),
        "{}",
        &err.message[..200.min(err.message.len())]
    );
    assert!(
        err.message.ends_with("bytes cut)") && err.message.len() < 5_000,
        "{} bytes: …{}",
        err.message.len(),
        &err.message[err.message.len().saturating_sub(100)..]
    );
}

/// An answer that is not what was asked (a 200 carrying something else, a
/// 200 whose body never ends) is an error that holds the stream (a proxy in
/// the way answers every call so), never an empty sheet: read as one, every
/// key looked new and was appended again.
#[tokio::test]
async fn a_nonsense_answer_to_a_read_appends_nothing() {
    let (base, key) = sandbox().await;
    let tuning = Tuning::quick();
    let upserter = upserter(&base, &key, tuning.limiter, tuning.breaker);
    upserter
        .upsert(&[command(&id(1), "k-1", "1.00", None)])
        .await
        .unwrap();
    let update = [command(&id(2), "k-1", "2.00", None)];
    for nonsense in [
        json!({"error_rates": {"200": 1.0}}),
        json!({"error_rates": {"200": 1.0}, "endless_error_body": true}),
    ] {
        faults(&base, nonsense.clone()).await;
        let err = upserter.upsert(&update).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Pause, "{nonsense}: {err}");
        faults(&base, json!({})).await;
        let rows = grid(&base).await;
        assert_eq!(rows.len(), 2, "{nonsense}: a row appended again: {rows:?}");
    }
    upserter.upsert(&update).await.unwrap();
    let rows = grid(&base).await;
    assert_eq!(rows[1][..2], [json!("k-1"), json!("2.00")], "{rows:?}");
    assert_eq!(rows.len(), 2, "{rows:?}");
}
