//! Your own events without a rebuild: a contracts directory that adds an
//! `invoices` aggregate (InvoiceIssued, InvoicePaid, InvoiceCancelled)
//! beside the shipped contracts, given to the built binaries. Provisioning
//! creates its topic and registers its subject; invoices committed to an
//! outbox table are relayed and those posted to ingest accepted; the
//! invoice-booking saga (a file, run by two orchestrator replicas) books
//! each issued invoice in the ERP (`account.move`, posted by erp-sink, told
//! the model's methods by flags) and records it on an Invoices sheet, then
//! announces InvoiceBooked; the transformer maps the other events by a
//! rules file (paid and cancelled rows, the withdrawn invoice cancelled in
//! the ERP). An invoice the ERP will not post, and one it does not answer
//! in time (erp-sink paused), are cancelled in the ERP and announced
//! InvoiceRefused. A contract change that breaks BACKWARD compatibility is
//! refused, naming the field. (`cargo build --workspace` first, as `make
//! test` does.)
// A test fails by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{OutboxCleanup, bin_dir, provision, stack_env, start};
use serde_json::{Map, Value, json};
use sluice_avro::AvroCodec;
use sluice_fleet::topology::sandbox_odoo;
use sluice_fleet::{Place, Sandbox, wait_ready};
use sluice_sandbox::Local;
use sluice_testkit::{
    Stack, TestTopic, committed_messages, eventually, free_port, token_sha256, unique_name,
};
use sqlx::PgPool;

/// The worked example of docs/OPERATIONS.md ("Your own aggregate"): a
/// team's files, as it writes them.
const EXAMPLE: &str = "deploy/examples/invoices";

/// The example's file `name`, its aggregate renamed `aggregate` (each run
/// its own topics and subjects).
fn example(name: &str, aggregate: &str) -> String {
    let text = std::fs::read_to_string(Stack::get().path(format!("{EXAMPLE}/{name}"))).unwrap();
    text.replace("invoices", aggregate)
}

/// The invoices contract of the example; `breaking` adds a field without
/// a default, which no event already written has.
fn invoice_schema(breaking: bool) -> Value {
    let mut schema: Value =
        serde_json::from_str(&example("invoices/InvoiceEvent.avsc", "invoices")).unwrap();
    if breaking {
        let issued = &mut schema["fields"][6]["type"][0]["fields"];
        issued
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "due_date", "type": "string", "doc": "When it is due."}));
    }
    schema
}

/// The shipped contracts plus the example's aggregate as `aggregate`, in a
/// directory of their own: what a team does by hand.
fn contracts_dir(aggregate: &str, breaking: bool) -> PathBuf {
    let dir = Stack::get().contracts_copy();
    std::fs::create_dir_all(dir.join(aggregate)).unwrap();
    let schema = serde_json::to_string_pretty(&invoice_schema(breaking)).unwrap();
    std::fs::write(dir.join(format!("{aggregate}/InvoiceEvent.avsc")), schema).unwrap();
    let map = std::fs::read_to_string(dir.join("topics.toml")).unwrap();
    let entry = example("topics.toml", aggregate);
    std::fs::write(dir.join("topics.toml"), format!("{map}\n{entry}")).unwrap();
    dir
}

/// The rules the example adds.
fn rules(aggregate: &str) -> String {
    example("rules.toml", aggregate)
}

/// The example's saga, its steps waiting `timeout` for each reply, once
/// again before they fail: a paused erp-sink shows within the test.
fn saga(aggregate: &str, timeout: &str) -> String {
    example("saga.toml", aggregate)
        .replace("timeout = \"180s\"", &format!("timeout = \"{timeout}\""))
        .replace("retries = 2", "retries = 1")
}

/// The events of `topic` decoded, as (aggregate id, event type, payload).
async fn events(topic: &str) -> Vec<(String, String, Value)> {
    let codec = AvroCodec::new(Stack::get().registry_settings());
    let mut events = Vec::new();
    for message in committed_messages(topic).await {
        let Some(bytes) = rdkafka::Message::payload(&message) else {
            continue;
        };
        let event = Value::try_from(codec.decode_value(bytes).await.unwrap()).unwrap();
        let of = |field: &str| event[field].as_str().unwrap_or_default().to_owned();
        events.push((
            of("aggregate_id"),
            of("event_type"),
            event["payload"].clone(),
        ));
    }
    events
}

/// Waits for the saga's outcome of each of `invoices` on `topic`: its
/// event type and payload.
async fn outcomes(topic: &str, invoices: &[&str]) -> Vec<(String, String, Value)> {
    eventually(
        &format!("the saga's outcome of {invoices:?}"),
        Duration::from_secs(120),
        || async {
            let outcomes: Vec<_> = events(topic)
                .await
                .into_iter()
                .filter(|(id, kind, _)| {
                    invoices.contains(&id.as_str())
                        && (kind == "InvoiceBooked" || kind == "InvoiceRefused")
                })
                .collect();
            (outcomes.len() >= invoices.len()).then_some(outcomes)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregate_added_by_files_reaches_the_sheet_through_the_built_binaries() {
    let stack = Stack::get();
    let aggregate = format!("invoices{}", fastrand::u32(..));
    let work = std::env::temp_dir().join(unique_name("own-events"));
    let logs = work.join("logs");
    std::fs::create_dir_all(&work).unwrap();
    let contracts = contracts_dir(&aggregate, false);
    std::fs::write(work.join("rules.toml"), rules(&aggregate)).unwrap();

    let provisioned = provision(&contracts);
    assert!(
        provisioned.status.success(),
        "{}",
        String::from_utf8_lossy(&provisioned.stderr)
    );

    let place = Place {
        bin_dir: bin_dir(),
        logs: logs.clone(),
        pids: work.join("pids"),
        stack_env: stack_env(),
        kill_on_drop: true,
    };
    let key = work.join("service-account.json");
    let sandbox = Sandbox::start(&place, &key, "books=Invoices", json!({}), json!({}))
        .await
        .unwrap();
    let rows = TestTopic::with_schema_of("sheets.rows.v1", "invoice-rows", 3).await;
    let commands = TestTopic::with_schema_of("erp.commands.v1", "invoice-erp", 3).await;
    let results = TestTopic::with_schema_of("erp.results.v1", "invoice-results", 3).await;
    let dlq = |name| async move { TestTopic::with_schema_of("dlq.transformer.v1", name, 1).await };
    let (transformer_dlq, sheets_dlq, relay_dlq, erp_dlq) = (
        dlq("invoice-tx-dlq").await,
        dlq("invoice-sheets-dlq").await,
        dlq("invoice-relay-dlq").await,
        dlq("invoice-erp-dlq").await,
    );
    let sheet_results =
        TestTopic::with_schema_of("sheets.results.v1", "invoice-rows-done", 3).await;
    let saga_dlq = dlq("invoice-saga-dlq").await;
    let saga_relay_dlq = dlq("invoice-saga-relay-dlq").await;
    let contracts_env = ("SLUICE_CONTRACTS_DIR", contracts.display().to_string());
    let group = unique_name("invoices");

    // The outbox path: the relay on an outbox table of the team's own.
    let pool = PgPool::connect(&stack.database_url).await.unwrap();
    let table = format!("outbox_{aggregate}");
    let (slot, publication) = (format!("slot_{aggregate}"), format!("pub_{aggregate}"));
    // The sagas in a database of their own, as a deployment may have it.
    let sagas_db = format!("sagas_{aggregate}");
    let saga_slot = format!("saga_slot_{aggregate}");
    let drop_slot = |slot: &str| {
        format!(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{slot}'"
        )
    };
    let _cleanup = OutboxCleanup {
        statements: vec![
            drop_slot(&slot),
            format!("DROP PUBLICATION IF EXISTS {publication}"),
            format!("DROP TABLE IF EXISTS {table}"),
            drop_slot(&saga_slot),
            format!("DROP DATABASE IF EXISTS {sagas_db} WITH (FORCE)"),
        ],
    };
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {sagas_db}")))
        .execute(&pool)
        .await
        .unwrap();
    let (base, _) = stack.database_url.rsplit_once('/').unwrap();
    let sagas_url = format!("{base}/{sagas_db}");
    common::create_outbox(&pool, &table).await;
    let (mut relay, relay_port) = start(
        &logs,
        "outbox-relay",
        "relay",
        &[
            "--outbox-table",
            &table,
            "--outbox-slot",
            &slot,
            "--outbox-publication",
            &publication,
            "--dlq-topic",
            &relay_dlq.name,
        ],
        std::slice::from_ref(&contracts_env),
    );

    let token = "own-events-token";
    let api = free_port();
    let (mut ingest, ingest_port) = start(
        &logs,
        "ingest",
        "ingest",
        &[],
        &[
            contracts_env.clone(),
            ("SLUICE_INGEST_LISTEN", format!("127.0.0.1:{api}")),
            ("SLUICE_INGEST_TOKEN_SHA256", token_sha256(token)),
        ],
    );
    let rules_file = work.join("rules.toml").display().to_string();
    let (mut transformer, transformer_port) = start(
        &logs,
        "transformer",
        "transformer",
        &[
            "--rules",
            &rules_file,
            "--sheets-topic",
            &rows.name,
            "--erp-topic",
            &commands.name,
            "--dlq-topic",
            &transformer_dlq.name,
            "--group-id",
            &format!("{group}-transform"),
            "--transactional-id",
            &group,
        ],
        std::slice::from_ref(&contracts_env),
    );
    let key_file = key.display().to_string();
    let (mut sink, sink_port) = start(
        &logs,
        "sheets-sink",
        "sheets-sink",
        &[
            "--service-account",
            &key_file,
            "--sheets-base-url",
            &sandbox.url,
            "--topic",
            &rows.name,
            "--results-topic",
            &sheet_results.name,
            "--dlq-topic",
            &sheets_dlq.name,
            "--group-id",
            &format!("{group}-sink"),
            "--requests-per-second",
            "50",
        ],
        &[],
    );
    // The ERP's invoices: a model and methods of its own, by flags.
    let erp_group = format!("{group}-erp");
    let mut erp_args = sandbox_odoo(&sandbox.url).to_vec();
    erp_args.extend([
        "--models",
        "account.move",
        "--confirm-on-create",
        "account.move=action_post",
        "--cancel-with",
        "account.move=button_cancel",
        "--topic",
        &commands.name,
        "--results-topic",
        &results.name,
        "--dlq-topic",
        &erp_dlq.name,
        "--group-id",
        &erp_group,
    ]);
    let (mut erp, erp_port) = start(&logs, "erp-sink", "erp-sink", &erp_args, &[]);

    // The invoice-booking saga, by two replicas of the built orchestrator
    // given the example's file; outbox-relay sends what they write.
    std::fs::write(work.join("saga.toml"), saga(&aggregate, "6s")).unwrap();
    let saga_file = work.join("saga.toml").display().to_string();
    let saga_publication = format!("saga_pub_{aggregate}");
    let saga_env = [
        contracts_env.clone(),
        ("SLUICE_DATABASE_URL", sagas_url.clone()),
    ];
    let orchestrator = |label: &str| {
        start(
            &logs,
            "saga-orchestrator",
            label,
            &[
                "run",
                "--saga",
                &saga_file,
                "--erp-topic",
                &commands.name,
                "--erp-results-topic",
                &results.name,
                "--sheets-topic",
                &rows.name,
                "--sheets-results-topic",
                &sheet_results.name,
                "--dlq-topic",
                &saga_dlq.name,
                "--group-id",
                &format!("{group}-saga"),
                "--outbox-slot",
                &saga_slot,
                "--outbox-publication",
                &saga_publication,
                "--timeout-tick-ms",
                "200",
            ],
            &saga_env,
        )
    };
    let (mut first, first_port) = orchestrator("orchestrator-1");
    let (mut second, second_port) = orchestrator("orchestrator-2");
    let events_topic = format!("{aggregate}.events.v1");
    for port in [first_port, second_port] {
        wait_ready(&format!("http://127.0.0.1:{port}"), Duration::from_secs(90))
            .await
            .unwrap();
    }
    let allowed = [rows.name.as_str(), &commands.name, &events_topic].join(",");
    let (mut saga_relay, saga_relay_port) = start(
        &logs,
        "outbox-relay",
        "saga-relay",
        &[
            "--outbox-table",
            "saga.outbox",
            "--outbox-format",
            "addressed",
            "--outbox-slot",
            &saga_slot,
            "--outbox-publication",
            &saga_publication,
            "--dlq-topic",
            &saga_relay_dlq.name,
        ],
        &[
            contracts_env.clone(),
            ("SLUICE_DATABASE_URL", sagas_url.clone()),
            ("SLUICE_OUTBOX_ALLOW_TOPICS", allowed),
        ],
    );
    for port in [
        relay_port,
        ingest_port,
        transformer_port,
        sink_port,
        erp_port,
        saga_relay_port,
    ] {
        wait_ready(&format!("http://127.0.0.1:{port}"), Duration::from_secs(90))
            .await
            .unwrap();
    }

    // INV-1 through the outbox, INV-2 through ingest; then both paid.
    let outbox = |id: &str, event_type: &str, payload: Value| {
        let sql = format!(
            "INSERT INTO {table} (id, aggregate_type, aggregate_id, event_type, payload) VALUES ($1, $2, $3, $4, $5)"
        );
        let (pool, aggregate, id, event_type) = (
            pool.clone(),
            aggregate.clone(),
            id.to_owned(),
            event_type.to_owned(),
        );
        async move {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(uuid::Uuid::new_v4())
                .bind(aggregate)
                .bind(id)
                .bind(event_type)
                .bind(payload)
                .execute(&pool)
                .await
                .unwrap();
        }
    };
    let http = reqwest::Client::new();
    let post = |id: &str, event_type: &str, payload: Value| {
        let body = json!({"aggregate_type": aggregate, "aggregate_id": id, "event_type": event_type, "payload": payload});
        let request = http
            .post(format!("http://127.0.0.1:{api}/v1/events"))
            .bearer_auth(token)
            .json(&body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            assert_eq!(status, 202, "{}", response.text().await.unwrap_or_default());
        }
    };
    outbox(
        "INV-1",
        "InvoiceIssued",
        json!({"customer": "Ada", "currency": "EUR", "amount_minor": 12345,
            "lines": [{"sku": "SKU-1", "quantity": 9, "unit_price_minor": 1250},
                      {"sku": "MUG-1", "quantity": 1, "unit_price_minor": 1095}]}),
    )
    .await;
    post(
        "INV-2",
        "InvoiceIssued",
        json!({"customer": "Grace", "currency": "EUR", "amount_minor": 990,
            "lines": [{"sku": "S-1", "quantity": 1, "unit_price_minor": 990}]}),
    )
    .await;
    // A field the contract does not have is refused by name.
    let refused = http
        .post(format!("http://127.0.0.1:{api}/v1/events"))
        .bearer_auth(token)
        .json(&json!({"aggregate_type": aggregate, "aggregate_id": "INV-3", "event_type": "InvoiceIssued",
            "payload": {"customer": "Edsger", "currency": "EUR", "amount_minor": "lots", "lines": []}}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("amount_minor"));
    // An invoice Odoo will not post (no line): the draft the saga made is
    // cancelled, and the invoice refused.
    post(
        "INV-5",
        "InvoiceIssued",
        json!({"customer": "Alan", "currency": "EUR", "amount_minor": 0, "lines": []}),
    )
    .await;
    // Booked (in the ERP, on the sheet) before it is paid or withdrawn.
    let booked = outcomes(&events_topic, &["INV-1", "INV-2", "INV-5"]).await;
    let outcome = |id: &str| booked.iter().find(|(of, _, _)| of == id).unwrap();
    for id in ["INV-1", "INV-2"] {
        let (_, kind, payload) = outcome(id);
        assert_eq!(kind, "InvoiceBooked", "{payload}");
        assert_eq!(payload["erp_reference"], id);
    }
    let (_, kind, payload) = outcome("INV-5");
    assert_eq!(kind, "InvoiceRefused", "{payload}");
    assert_eq!(payload["failed_step"], "book-in-erp");
    assert!(
        payload["reason"].as_str().unwrap().contains("line"),
        "{payload}"
    );
    outbox("INV-1", "InvoicePaid", json!({"paid_at": "2026-12-03"})).await;
    post(
        "INV-2",
        "InvoiceCancelled",
        json!({"reason": "issued twice"}),
    )
    .await;

    let grid = format!("{}/admin/spreadsheets/books/Invoices", sandbox.url);
    let expected = vec![
        vec!["Invoice", "Customer", "Amount", "Status"],
        vec!["INV-1", "Ada", "123.45", "PAID"],
        vec!["INV-2", "Grace", "9.90", "CANCELLED: issued twice"],
    ];
    let seen = eventually(
        "one invoice paid, one cancelled, on the sheet",
        Duration::from_secs(120),
        || {
            let (http, grid, expected) = (http.clone(), grid.clone(), expected.clone());
            async move {
                let body: Value = http.get(&grid).send().await.ok()?.json().await.ok()?;
                let mut values: Vec<Vec<String>> =
                    serde_json::from_value(body["values"].clone()).ok()?;
                // sheets-sink's own column (each cell's version) aside.
                let header = values.first()?;
                if let Some(at) = header.iter().position(|name| name == "sluice:versions") {
                    values
                        .iter_mut()
                        .filter(|row| at < row.len())
                        .for_each(|row| {
                            row.remove(at);
                        });
                }
                values.get_mut(1..)?.sort();
                (values == expected).then_some(values)
            }
        },
    )
    .await;
    assert_eq!(seen.len(), 3);

    // In the ERP: each invoice once, posted, its lines from the event's;
    // the withdrawn one and the one Odoo would not post cancelled by the
    // model's own method.
    let admin = Local::at(&sandbox.url);
    let states = |records: &[Map<String, Value>]| {
        let mut states: Vec<(String, String)> = records
            .iter()
            .map(|r| {
                let of = |field: &str| r[field].as_str().unwrap_or_default().to_owned();
                (of("x_sluice_external_ref"), of("state"))
            })
            .collect();
        states.sort();
        states
    };
    let wanted = [
        ("INV-1", "posted"),
        ("INV-2", "cancel"),
        ("INV-5", "cancel"),
    ]
    .map(|(r, s)| (r.into(), s.into()));
    let posted = eventually(
        "INV-1 posted, INV-2 and INV-5 cancelled in the ERP",
        Duration::from_secs(60),
        || {
            let (admin, wanted) = (&admin, wanted.clone());
            async move {
                let records = admin.records("account.move").await.ok()?;
                (states(&records) == wanted).then_some(records)
            }
        },
    )
    .await;
    assert_eq!(posted.len(), 3, "{posted:#?}");
    let mut seen: Vec<(String, String, f64, usize)> = posted
        .iter()
        .map(|r| {
            (
                r["x_sluice_external_ref"].as_str().unwrap().to_owned(),
                r["move_type"].as_str().unwrap().to_owned(),
                r["amount_total"].as_f64().unwrap(),
                r["invoice_line_ids"].as_array().unwrap().len(),
            )
        })
        .collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        seen,
        vec![
            ("INV-1".to_owned(), "out_invoice".to_owned(), 123.45, 2),
            ("INV-2".to_owned(), "out_invoice".to_owned(), 9.9, 1),
            ("INV-5".to_owned(), "out_invoice".to_owned(), 0.0, 0),
        ]
    );
    let numbered = |id: &str| {
        let record = posted.iter().find(|r| r["x_sluice_external_ref"] == id);
        record.is_some_and(|r| r["name"].as_str().is_some_and(|n| n.starts_with("INV/")))
    };
    assert!(
        numbered("INV-1") && numbered("INV-2"),
        "both were posted: {posted:#?}"
    );
    let calls = admin.requests("odoo").await.unwrap();
    let called = |name: &str| calls.iter().filter(|c| c["operation"] == name).count();
    assert_eq!((called("action_post"), called("button_cancel")), (3, 2));
    let partners = admin.records("res.partner").await.unwrap();
    let mut names: Vec<&str> = partners.iter().filter_map(|p| p["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["Ada", "Alan", "Grace"], "{partners:#?}");

    // The ERP does not answer (erp-sink paused where it stands): INV-6's
    // booking is sent again after 6 s, given up after 12 s and undone;
    // erp-sink, back, applies both, and the saga ends refused. Each
    // deadline fired once, by one of the two replicas.
    let sagas = PgPool::connect(&sagas_url).await.unwrap();
    erp.signal("STOP");
    post(
        "INV-6",
        "InvoiceIssued",
        json!({"customer": "Ada", "currency": "EUR", "amount_minor": 500,
            "lines": [{"sku": "S-1", "quantity": 1, "unit_price_minor": 500}]}),
    )
    .await;
    let state = |key: &'static str| {
        let sagas = sagas.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT state FROM saga.sagas WHERE business_key = $1")
                .bind(key)
                .fetch_optional(&sagas)
                .await
                .unwrap()
        }
    };
    eventually(
        "INV-6's booking given up",
        Duration::from_secs(60),
        // Compensating; or failed, its cancellation unanswered too (a late
        // answer resumes it).
        || async {
            let state = state("INV-6").await;
            matches!(state.as_deref(), Some("COMPENSATING" | "FAILED")).then_some(())
        },
    )
    .await;
    erp.signal("CONT");
    let refused = outcomes(&events_topic, &["INV-6"]).await;
    let (_, kind, payload) = &refused[0];
    assert_eq!(kind, "InvoiceRefused", "{payload}");
    assert!(
        payload["reason"]
            .as_str()
            .unwrap()
            .contains("no reply within 6s"),
        "{payload}"
    );
    let timed_out: Vec<i32> = sqlx::query_scalar(
        "SELECT log.attempt FROM saga.saga_steps log JOIN saga.sagas USING (saga_id)
         WHERE business_key = 'INV-6' AND log.event = 'timed_out' ORDER BY log.attempt",
    )
    .fetch_all(&sagas)
    .await
    .unwrap();
    assert_eq!(timed_out, [1, 2]);
    eventually(
        "INV-6 cancelled in the ERP",
        Duration::from_secs(60),
        || async {
            let records = admin.records("account.move").await.ok()?;
            let cancelled = states(&records).contains(&("INV-6".into(), "cancel".into()));
            cancelled.then_some(())
        },
    )
    .await;
    let mut finished: Vec<(String, String)> =
        sqlx::query_as("SELECT business_key, state FROM saga.sagas ORDER BY business_key")
            .fetch_all(&sagas)
            .await
            .unwrap();
    finished.sort();
    let expected = [
        ("INV-1", "COMPLETED"),
        ("INV-2", "COMPLETED"),
        ("INV-5", "COMPENSATED"),
        ("INV-6", "COMPENSATED"),
    ]
    .map(|(key, state)| (key.to_owned(), state.to_owned()));
    assert_eq!(finished, expected);
    sagas.close().await;

    for (name, child) in [
        ("relay", &mut relay),
        ("ingest", &mut ingest),
        ("transformer", &mut transformer),
        ("sheets-sink", &mut sink),
        ("erp-sink", &mut erp),
        ("orchestrator-1", &mut first),
        ("orchestrator-2", &mut second),
        ("saga-relay", &mut saga_relay),
    ] {
        child.assert_running(&format!("{name} during the run"));
    }
    drop((relay, ingest, transformer, sink, erp));
    drop((first, second, saga_relay));

    // A required field added: BACKWARD forbids it (a reader on the new
    // schema could not read the invoices already written).
    let breaking = contracts_dir(&aggregate, true);
    let refused = provision(&breaking);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "a breaking change was applied");
    assert!(stderr.contains("due_date"), "{stderr}");
    sandbox.stop().await;
}
