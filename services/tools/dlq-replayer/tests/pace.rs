//! Replay pace and interruption: `--rate 50/s` on 500 dead letters spreads
//! them over ≥ 9.5 s (read from the replayed messages' Kafka timestamps),
//! and SIGINT mid-replay stops it with exit code 3 and a replay log that
//! names exactly the messages that were sent.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{cli, dead_letters, dlq_topic, end_offset, header, read, run};
use rdkafka::Message;
use sluice_testkit::{TestTopic, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_spreads_the_replay() {
    let source = TestTopic::create("replay-rate-source", 1).await;
    let target = TestTopic::create("replay-rate-target", 1).await;
    let dlq = dlq_topic("replay-rate").await;
    dead_letters(&source.name, &dlq.name, 500).await;

    let replayed = run(&[
        "replay",
        "--topic",
        &dlq.name,
        "--to",
        &target.name,
        "--rate",
        "50/s",
    ])
    .await;
    assert_eq!(replayed.code, 0, "{}", replayed.stderr);
    let messages = read(&target.name, 500).await;
    let stamps: Vec<i64> = messages
        .iter()
        .map(|m| m.timestamp().to_millis().unwrap())
        .collect();
    let span = (stamps[499] - stamps[0]) as f64 / 1000.0;
    eprintln!("500 dead letters at --rate 50/s: {span:.2} s from the first to the last");
    assert!(span >= 9.5, "500 at 50/s took {span:.2} s");
    // In order, each once.
    let order: Vec<String> = messages
        .iter()
        .map(|m| String::from_utf8(m.key().unwrap().to_vec()).unwrap())
        .collect();
    let expected: Vec<String> = (0..500).map(|n| format!("k-{n}")).collect();
    assert_eq!(order, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_and_the_log_names_what_was_sent() {
    let source = TestTopic::create("replay-int-source", 1).await;
    let target = TestTopic::create("replay-int-target", 1).await;
    let dlq = dlq_topic("replay-int").await;
    dead_letters(&source.name, &dlq.name, 300).await;

    common::audit_topic().await;
    let child = cli(&[
        "replay",
        "--topic",
        &dlq.name,
        "--to",
        &target.name,
        "--rate",
        "20/s",
    ])
    .spawn()
    .unwrap();
    let pid = child.id().to_string();
    eventually("some messages replayed", Duration::from_secs(60), || {
        let target = &target.name;
        async move { (end_offset(target) >= 40).then_some(()) }
    })
    .await;
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "a partial replay: {stderr}");
    assert!(stderr.contains("stopped by Ctrl-C"), "{stderr}");

    let sent = usize::try_from(end_offset(&target.name)).unwrap();
    assert!((40..300).contains(&sent), "{sent} sent");
    let on_kafka: BTreeSet<String> = read(&target.name, sent)
        .await
        .iter()
        .map(|m| header(m, "sluice.replay.from").unwrap())
        .collect();
    let replay_id = stderr
        .lines()
        .find_map(|line| line.strip_prefix("replay id "))
        .unwrap()
        .trim()
        .to_owned();
    let logged = run(&["history", "--replay", &replay_id]).await;
    let logged: BTreeSet<String> = logged
        .stdout
        .lines()
        .filter_map(|line| line.split(" -> ").next())
        .map(str::to_owned)
        .collect();
    eprintln!("SIGINT after {sent} of 300: {} logged", logged.len());
    assert_eq!(logged, on_kafka, "the log names exactly what was sent");
    let history = run(&["--output", "json", "history", "--limit", "1000"]).await;
    let run = history
        .json_lines()
        .into_iter()
        .find(|h| h["replay_id"] == replay_id.as_str())
        .unwrap();
    assert_eq!(run["outcome"], "stopped");
    assert_eq!(run["replayed"], sent);
}
