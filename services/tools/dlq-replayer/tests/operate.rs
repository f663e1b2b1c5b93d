//! The operator's round trip against a real failing service: erp-sink
//! (against the sandbox's Odoo) dead-letters what the ERP refuses and what
//! is not Avro; the CLI lists, filters and shows them decoded; the cause is
//! fixed; a dry run changes nothing; a filtered replay puts exactly those
//! messages back byte for byte and erp-sink applies them; a second replay
//! is refused, and with --force goes (and the ERP still holds one record
//! each); the audit trail then tells what was written to the ERP for an
//! order, when and from which event, and who replayed it.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{
    command, end_offset, event_of, header, lines_where, read_from, run, sandbox, start_erp_sink,
};
use rdkafka::Message;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde_json::{Value, json};
use sluice_avro::AvroCodec;
use sluice_contracts::types::{AuditAction, AuditRecord, AuditRow, DeadLetter, ErpOperation};
use sluice_testkit::{Stack, TestTopic, eventually, message_count, producer, unique_name};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_shown_and_replayed_once() {
    let sandbox = sandbox().await;
    let base = sandbox.base.clone();
    sandbox
        .set_faults("odoo", &json!({"reject_value": "HOLD"}))
        .await
        .unwrap();
    // One partition, so offsets read simply.
    let commands = TestTopic::with_schema_of("erp.commands.v1", "replayer-commands", 1).await;
    let results = TestTopic::with_schema_of("erp.results.v1", "replayer-results", 1).await;
    let dlq = common::dlq_topic("replayer-erp").await;
    let stop = start_erp_sink(&base, &commands.name, &results.name, &dlq.name).await;

    // 6 the ERP refuses (HOLD), 2 updates of missing orders, 2 fine, 1 not Avro.
    let codec = AvroCodec::new(Stack::get().registry_settings());
    let mut sent = Vec::new();
    for n in 0..6 {
        sent.push(command(
            n,
            ErpOperation::Create,
            &format!("so-hold-{n}"),
            "HOLD",
        ));
    }
    sent.push(command(6, ErpOperation::Update, "so-missing-1", "late"));
    sent.push(command(7, ErpOperation::Update, "so-missing-2", "late"));
    sent.push(command(8, ErpOperation::Create, "so-ok-1", "fine"));
    sent.push(command(9, ErpOperation::Create, "so-ok-2", "fine"));
    for (n, command) in sent.iter().enumerate() {
        let bytes = codec.encode(&commands.name, command).await.unwrap();
        let flow = format!("checkout-{n}");
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "traceparent",
                value: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".as_bytes()),
            })
            .insert(Header {
                key: "sluice.correlation_id",
                value: Some(flow.as_bytes()),
            });
        producer()
            .send(
                FutureRecord::to(&commands.name)
                    .key(&command.external_ref)
                    .payload(&bytes)
                    .headers(headers),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
    }
    producer()
        .send(
            FutureRecord::to(&commands.name)
                .key("so-garbage")
                .payload("{\"not\": \"avro\"}"),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    eventually("9 dead letters", WAIT, || {
        let dlq = &dlq.name;
        async move { (message_count(dlq) == 9).then_some(()) }
    })
    .await;

    // list: all nine, counted by class; filtered by text, class and key.
    let all = run(&["list", "--topic", &dlq.name]).await;
    assert_eq!(all.code, 0, "{}", all.stderr);
    assert!(
        all.stdout.contains("9 dead letters: DECODE 1, PERMANENT 8"),
        "{}",
        all.stdout
    );
    let held = run(&[
        "--output", "json", "list", "--topic", &dlq.name, "--grep", "HOLD",
    ])
    .await;
    let held = held.json_lines();
    assert_eq!(held.len(), 6, "{held:?}");
    assert!(
        held.iter()
            .all(|l| l["service"] == "erp-sink" && l["class"] == "PERMANENT")
    );
    let decode = run(&[
        "--output", "json", "list", "--topic", &dlq.name, "--class", "decode",
    ])
    .await;
    assert_eq!(decode.json_lines().len(), 1);
    assert_eq!(decode.json_lines()[0]["key"], "so-garbage");
    let missing = run(&[
        "--output",
        "json",
        "list",
        "--topic",
        &dlq.name,
        "--key",
        "so-missing-2",
    ])
    .await;
    let missing = missing.json_lines();
    assert_eq!(missing.len(), 1);
    assert!(
        missing[0]["error"]
            .as_str()
            .unwrap()
            .contains("no sale.order record")
    );

    // By the flow its message was part of (its correlation id header).
    let flow = run(&[
        "--output",
        "json",
        "list",
        "--topic",
        &dlq.name,
        "--correlation",
        "checkout-6",
    ])
    .await;
    let flow = flow.json_lines();
    assert_eq!(flow.len(), 1, "{flow:?}");
    assert_eq!(flow[0]["key"], "so-missing-1");

    // show: the original ErpCommand decoded through the registry.
    let coordinate = held[0]["dead_letter"].as_str().unwrap().to_owned();
    let shown = run(&["--output", "json", "show", &coordinate]).await;
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    let shown: Value = serde_json::from_str(shown.stdout.trim()).unwrap();
    assert_eq!(shown["value"]["external_ref"], "so-hold-0");
    assert_eq!(shown["value"]["operation"], "CREATE");
    assert_eq!(shown["headers"][0]["key"], "traceparent");
    assert!(shown["error"].as_str().unwrap().contains("ValidationError"));
    let table = run(&["show", &coordinate]).await;
    assert!(
        table.stdout.contains("\"external_ref\": \"so-hold-0\""),
        "{}",
        table.stdout
    );

    // The cause is fixed; a dry run sends and records nothing.
    sandbox.set_faults("odoo", &json!({})).await.unwrap();
    let commands_end = end_offset(&commands.name);
    // Runs of this test's DLQ only: the other tests of this binary replay
    // meanwhile, into the same log.
    let runs = || async {
        let history = run(&["--output", "json", "history", "--limit", "1000"])
            .await
            .json_lines();
        lines_where(&history, "selection", |s| s.contains(&dlq.name)).len()
    };
    let runs_before = runs().await;
    let dry = run(&[
        "replay",
        "--topic",
        &dlq.name,
        "--grep",
        "HOLD",
        "--dry-run",
    ])
    .await;
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(dry.stdout.contains("6 dead letters"), "{}", dry.stdout);
    assert_eq!(
        end_offset(&commands.name),
        commands_end,
        "the dry run sent nothing"
    );
    let runs_after = runs().await;
    assert_eq!(runs_after, runs_before, "the dry run recorded nothing");

    // The replay: exactly the six, byte for byte, plus replay headers.
    let replayed = run(&[
        "replay", "--topic", &dlq.name, "--grep", "HOLD", "--actor", "alice",
    ])
    .await;
    assert_eq!(replayed.code, 0, "{}", replayed.stderr);
    assert_eq!(end_offset(&commands.name), commands_end + 6);
    let letters: BTreeMap<String, DeadLetter> = {
        let mut letters = BTreeMap::new();
        for message in common::read(&dlq.name, 9).await {
            let letter: DeadLetter = codec.decode(message.payload().unwrap()).await.unwrap();
            let at = format!("{}:{}:{}", dlq.name, message.partition(), message.offset());
            letters.insert(at, letter);
        }
        letters
    };
    let again = read_from(&commands.name, commands_end, 6).await;
    let mut from: Vec<String> = Vec::new();
    for message in &again {
        let origin = header(message, "sluice.replay.from").unwrap();
        let letter = &letters[&origin];
        assert_eq!(
            message.key(),
            letter.original_key.as_deref(),
            "key of {origin}"
        );
        assert_eq!(
            message.payload(),
            letter.original_value.as_deref(),
            "value of {origin}"
        );
        let headers: Vec<(String, Option<Vec<u8>>)> = message
            .headers()
            .unwrap()
            .iter()
            .filter(|h| !h.key.starts_with("sluice.replay."))
            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
            .collect();
        let original: Vec<(String, Option<Vec<u8>>)> = letter
            .original_headers
            .iter()
            .map(|h| (h.key.clone(), h.value.clone()))
            .collect();
        assert_eq!(headers, original, "headers of {origin}");
        assert!(header(message, "sluice.replay.id").is_some());
        from.push(origin);
    }
    from.sort();
    let mut expected: Vec<String> = held
        .iter()
        .map(|l| l["dead_letter"].as_str().unwrap().to_owned())
        .collect();
    expected.sort();
    assert_eq!(from, expected, "exactly the filtered dead letters");

    // erp-sink applies them now.
    eventually("the six orders in the ERP", WAIT, || {
        let sandbox = &sandbox;
        async move {
            let records = sandbox.records("sale.order").await.unwrap();
            let held = records
                .iter()
                .filter(|r| {
                    r["x_sluice_external_ref"]
                        .as_str()
                        .is_some_and(|s| s.starts_with("so-hold-"))
                })
                .count();
            (held == 6).then_some(())
        }
    })
    .await;

    // A second replay of the same set is refused; with --force it goes.
    let refused = run(&["replay", "--topic", &dlq.name, "--grep", "HOLD"]).await;
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("6 of the 6 selected dead letters were replayed before"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("--force"));
    assert_eq!(end_offset(&commands.name), commands_end + 6);
    let forced = run(&["replay", "--topic", &dlq.name, "--grep", "HOLD", "--force"]).await;
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    assert_eq!(end_offset(&commands.name), commands_end + 12);
    // Applied once all the same: the command ids are on the records.
    eventually("the forced replay handled", WAIT, || {
        let results = &results.name;
        // 2 fine + 6 after the fix + 6 already applied + 8 rejected.
        async move { (message_count(results) >= 22).then_some(()) }
    })
    .await;
    stop.send(()).unwrap();
    let records = sandbox.records("sale.order").await.unwrap();
    let held: Vec<&serde_json::Map<String, Value>> = records
        .iter()
        .filter(|r| {
            r["x_sluice_external_ref"]
                .as_str()
                .is_some_and(|s| s.starts_with("so-hold-"))
        })
        .collect();
    assert_eq!(held.len(), 6, "one record per order after two replays");

    // history: both runs, by whom, how they ended.
    let history = run(&["--output", "json", "history", "--limit", "1000"])
        .await
        .json_lines();
    let mine = lines_where(&history, "selection", |s| s.contains(&dlq.name));
    assert_eq!(mine.len(), 2, "{mine:?}");
    assert!(
        mine.iter()
            .all(|h| h["outcome"] == "done" && h["replayed"] == 6)
    );
    assert!(
        mine.iter()
            .any(|h| h["actor"] == "alice" && h["forced"] == false)
    );
    assert!(
        mine.iter()
            .any(|h| h["actor"] == "test-operator" && h["forced"] == true)
    );

    // The audit trail: what Sluice wrote to the ERP for so-hold-0, when and
    // from which event — refused, applied after alice's replay, found
    // applied after the forced one.
    let trail = run(&[
        "--output",
        "json",
        "audit",
        "--subject",
        "so-hold-0",
        "--action",
        "erp-write",
    ])
    .await;
    assert_eq!(trail.code, 0, "{}", trail.stderr);
    let trail = trail.json_lines();
    let outcomes: Vec<&str> = trail
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["REJECTED", "APPLIED", "ALREADY_APPLIED"],
        "{trail:#?}"
    );
    let record_id = held
        .iter()
        .find(|r| r["x_sluice_external_ref"] == "so-hold-0")
        .unwrap()["id"]
        .to_string();
    for record in &trail {
        assert_eq!(record["subject"], "sale.order/so-hold-0");
        assert_eq!(record["source_event_id"], event_of(0));
        assert_eq!(record["correlation_id"], "checkout-0");
        assert_eq!(
            record["command_id"],
            command(0, ErpOperation::Create, "", "").command_id
        );
        assert_eq!(
            (&record["service"], &record["actor"]),
            (&json!("erp-sink"), &json!("erp-sink@test"))
        );
    }
    assert!(
        trail[0]["detail"]
            .as_str()
            .unwrap()
            .contains("ValidationError"),
        "{trail:#?}"
    );
    assert_eq!(trail[1]["record_id"].as_str(), Some(record_id.as_str()));
    assert_eq!(trail[2]["record_id"].as_str(), Some(record_id.as_str()));
    // kcat reads the trail too: keyed by subject, the flow in a header (its
    // Debian build has no Avro: the values are for `dlq-replayer audit`).
    let kcat = std::process::Command::new("kcat")
        .args(["-b", &Stack::get().kafka_bootstrap, "-C", "-t"])
        .arg(common::audit_topic().await)
        .args(["-o", "beginning", "-e", "-q", "-f", "%k %h\n"])
        .output()
        .unwrap();
    let lines = String::from_utf8_lossy(&kcat.stdout);
    let so_hold_0 = lines
        .lines()
        .filter(|l| {
            l.starts_with("sale.order/so-hold-0 ") && l.contains("sluice.correlation_id=checkout-0")
        })
        .count();
    assert_eq!(so_hold_0, 3, "{lines}");
    // And who put its dead letter back, twice.
    let replays = run(&[
        "--output",
        "json",
        "audit",
        "--action",
        "dlq-replay",
        "--correlation",
        "checkout-0",
    ])
    .await
    .json_lines();
    let replays = lines_where(&replays, "subject", |s| s.starts_with(&dlq.name));
    let actors: Vec<&str> = replays
        .iter()
        .map(|r| r["actor"].as_str().unwrap())
        .collect();
    assert_eq!(actors, ["alice", "test-operator"], "{replays:#?}");
    assert!(replays.iter().all(|r| r["outcome"] == "REPLAYED"
        && r["service"] == "dlq-replayer"
        && r["detail"].as_str().unwrap().contains(&commands.name)));
}

#[tokio::test]
async fn errors_name_their_cause() {
    let unknown = run(&["list", "--topic", "dlq.no-such-topic.v1"]).await;
    assert_eq!(unknown.code, 1);
    assert!(
        unknown
            .stderr
            .contains("unknown topic dlq.no-such-topic.v1"),
        "{}",
        unknown.stderr
    );
    let not_dlq = run(&["list", "--topic", "__consumer_offsets"]).await;
    assert_eq!(not_dlq.code, 1);
    assert!(
        not_dlq.stderr.contains("is not a dead-letter topic"),
        "{}",
        not_dlq.stderr
    );
    let bad = run(&["show", "dlq.x.v1:zero:1"]).await;
    assert_eq!(bad.code, 2, "a usage error");
    assert!(
        bad.stderr.contains("the partition is not a number"),
        "{}",
        bad.stderr
    );
    let dlq = common::dlq_topic("replayer-errors").await;
    let past_end = run(&["show", &format!("{}:0:5", dlq.name)]).await;
    assert_eq!(past_end.code, 1);
    assert!(
        past_end.stderr.contains("bad coordinates"),
        "{}",
        past_end.stderr
    );
    let source = TestTopic::create("replayer-errors-source", 1).await;
    common::dead_letters(&source.name, &dlq.name, 1).await;
    let away = common::run_with(
        &["list", "--topic", &dlq.name],
        &[(
            "SLUICE_SCHEMA_REGISTRY_URL",
            "http://127.0.0.1:9/apis/ccompat/v7",
        )],
    )
    .await;
    assert_eq!(away.code, 1);
    assert!(
        away.stderr.contains("schema registry unreachable"),
        "{}",
        away.stderr
    );
    let nowhere = run(&[
        "replay",
        "--topic",
        &dlq.name,
        "--to",
        "no-such-target-topic",
    ])
    .await;
    assert_eq!(nowhere.code, 1);
    assert!(
        nowhere
            .stderr
            .contains("unknown topic no-such-target-topic"),
        "{}",
        nowhere.stderr
    );
    let rate = run(&["replay", "--rate", "fast"]).await;
    assert_eq!(rate.code, 2);
    assert!(
        rate.stderr.contains("is not a rate like 50/s"),
        "{}",
        rate.stderr
    );
}

/// A replay says who ran it: with no --actor, no SLUICE_ACTOR and no login
/// it is refused before anything is sent, as it is without its audit
/// topic; SLUICE_ACTOR names the operator on the audit trail.
#[tokio::test]
async fn a_replay_by_nobody_is_refused_and_sluice_actor_names_the_operator() {
    let source = TestTopic::create("replay-actor-source", 1).await;
    let dlq = common::dlq_topic("replay-actor").await;
    common::dead_letters(&source.name, &dlq.name, 1).await;

    let nobody = common::run_with(&["replay", "--topic", &dlq.name], &[("USER", " ")]).await;
    assert_eq!(nobody.code, 1, "{}", nobody.stderr);
    assert!(nobody.stderr.contains("--actor"), "{}", nobody.stderr);
    assert_eq!(message_count(&source.name), 1, "nothing was sent");

    // Nor does a replay the audit trail could not record.
    let unrecorded = common::run_with(
        &["replay", "--topic", &dlq.name],
        &[("SLUICE_AUDIT_TOPIC", "audit.nowhere.v1")],
    )
    .await;
    assert_eq!(unrecorded.code, 1, "{}", unrecorded.stderr);
    assert!(
        unrecorded.stderr.contains("unknown topic audit.nowhere.v1"),
        "{}",
        unrecorded.stderr
    );
    assert_eq!(message_count(&source.name), 1, "nothing was sent");

    let named = common::run_with(
        &["replay", "--topic", &dlq.name],
        &[("USER", " "), ("SLUICE_ACTOR", "bob@ops")],
    )
    .await;
    assert_eq!(named.code, 0, "{}", named.stderr);
    assert_eq!(message_count(&source.name), 2);
    let trail = run(&["--output", "json", "audit", "--action", "dlq-replay"])
        .await
        .json_lines();
    let mine = lines_where(&trail, "subject", |s| s.starts_with(&dlq.name));
    assert_eq!(mine.len(), 1, "{trail:#?}");
    assert_eq!(mine[0]["actor"], "bob@ops");
}

/// sheets-sink records a batch's rows in one record per spreadsheet;
/// `audit` shows it as an entry per row, found by the row's key, event or
/// flow like any other record.
#[tokio::test]
async fn a_write_of_many_rows_is_an_entry_per_row() {
    let topic = common::audit_topic().await;
    let spreadsheet = unique_name("sheet");
    let row = |key: &str| AuditRow {
        subject: format!("{spreadsheet}/Orders/{key}"),
        command_id: Some(format!("{spreadsheet}-command-{key}")),
        source_event_id: Some(format!("{spreadsheet}-event-{key}")),
        correlation_id: Some(format!("{spreadsheet}-flow")),
        trace_id: Some(format!("trace-{key}")),
    };
    let record = AuditRecord {
        audit_id: uuid::Uuid::new_v4().to_string(),
        recorded_at: sluice_contracts::now_millis(),
        action: AuditAction::SheetRowWrite,
        service: "sheets-sink".into(),
        actor: "sheets-sink@test".into(),
        subject: spreadsheet.clone(),
        outcome: "APPLIED".into(),
        command_id: None,
        source_event_id: None,
        correlation_id: None,
        trace_id: Some("trace-batch".into()),
        record_id: None,
        detail: None,
        rows: Some(vec![row("o-1"), row("o-2")]),
    };
    let bytes = AvroCodec::new(Stack::get().registry_settings())
        .encode(topic, &record)
        .await
        .unwrap();
    producer()
        .send(
            FutureRecord::to(topic).key(&spreadsheet).payload(&bytes),
            Duration::from_secs(30),
        )
        .await
        .unwrap();

    let found = run(&[
        "--output",
        "json",
        "audit",
        "--subject",
        &format!("{spreadsheet}/Orders/o-2"),
        "--action",
        "sheet-row-write",
    ])
    .await
    .json_lines();
    assert_eq!(found.len(), 1, "{found:#?}");
    let entry = &found[0];
    assert_eq!(entry["subject"], format!("{spreadsheet}/Orders/o-2"));
    assert_eq!(entry["command_id"], format!("{spreadsheet}-command-o-2"));
    assert_eq!(entry["source_event_id"], format!("{spreadsheet}-event-o-2"));
    assert_eq!(entry["trace_id"], "trace-o-2");
    assert_eq!(
        (&entry["outcome"], &entry["actor"], &entry["audit_id"]),
        (
            &json!("APPLIED"),
            &json!("sheets-sink@test"),
            &json!(record.audit_id)
        )
    );
    let by_event = run(&[
        "--output",
        "json",
        "audit",
        "--event",
        &format!("{spreadsheet}-event-o-1"),
    ])
    .await
    .json_lines();
    let subjects: Vec<&Value> = by_event.iter().map(|e| &e["subject"]).collect();
    assert_eq!(subjects, [&json!(format!("{spreadsheet}/Orders/o-1"))]);
    let flow = run(&[
        "--output",
        "json",
        "audit",
        "--correlation",
        &format!("{spreadsheet}-flow"),
    ])
    .await
    .json_lines();
    assert_eq!(flow.len(), 2, "{flow:#?}");
}
