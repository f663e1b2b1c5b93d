//! An older upsert never overwrites a newer one, as SheetRowUpsert's
//! contract says: a replayed dead letter, a late relay or a second source
//! sending an event's row after a newer one leaves the newer cells
//! standing, in one batch or across batches, and fills only the cells no
//! newer one wrote; the row's versions travel with it when a person sorts
//! the sheet.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Tuning, WAIT, audited, command, id, sandbox, send, sheet_of, start_with};
use serde_json::{Value, json};
use sluice_contracts::types::{ScalarValue, SheetCell, SheetRowUpsert};
use sluice_sandbox::Local;
use sluice_sheets_sink::VERSION_COLUMN;
use sluice_testkit::{TestTopic, eventually, message_count};

/// `key`'s row's cell under `column`, by the header's names.
fn cell<'a>(grid: &'a [Vec<Value>], key: &str, column: &str) -> Option<&'a Value> {
    let at = grid.first()?.iter().position(|name| name == column)?;
    let row = grid
        .iter()
        .skip(1)
        .find(|row| row.first() == Some(&json!(key)))?;
    row.get(at)
}

fn at(occurred_at: i64, command: SheetRowUpsert) -> SheetRowUpsert {
    SheetRowUpsert {
        occurred_at,
        ..command
    }
}

/// `command` with a Note too.
fn noted(note: &str, mut command: SheetRowUpsert) -> SheetRowUpsert {
    command.cells.push(SheetCell {
        column: "Note".into(),
        value: ScalarValue::String(note.into()),
    });
    command
}

/// Waits until `key`'s Total reads `total`; returns the sheet.
async fn total_reads(base: &str, key: &str, total: &str) -> Vec<Vec<Value>> {
    eventually(&format!("{key} at {total}"), WAIT, || async move {
        let rows = sheet_of(base, "Orders").await;
        (cell(&rows, key, "Total") == Some(&json!(total))).then_some(rows)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_upsert_never_overwrites_a_newer_one() {
    let (base, key) = sandbox().await;
    let topic = TestTopic::with_schema_of("sheets.rows.v1", "sheets-ordered", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.sheets-sink.v1", "sheets-ordered-dlq", 1).await;
    let (t1, t2, t3) = (1_795_437_000_000, 1_795_437_100_000, 1_795_437_200_000);

    // In one batch: the newer first, then the older (a replay, a late relay).
    send(
        &topic.name,
        &[
            at(t2, command(&id(1), "k-1", "2.00", Some("PAID"))),
            at(t1, command(&id(2), "k-1", "1.00", Some("NEW"))),
            at(t1, command(&id(3), "k-2", "1.00", None)),
        ],
    )
    .await;
    let stop = start_with(&base, &key, &topic.name, &dlq.name, Tuning::quick());
    let rows = total_reads(&base, "k-2", "1.00").await;
    assert_eq!(
        cell(&rows, "k-1", "Total"),
        Some(&json!("2.00")),
        "{rows:?}"
    );
    assert_eq!(
        cell(&rows, "k-1", "Status"),
        Some(&json!("PAID")),
        "{rows:?}"
    );

    // A person sorts the sheet: the row's versions go with it.
    let mut sorted = rows.clone();
    sorted[1..].sort_by(|a, b| b[0].as_str().cmp(&a[0].as_str()));
    Local::at(&base)
        .edit_grid("s1", "Orders", &sorted)
        .await
        .unwrap();

    // In a later batch: an older one again, with a Note no newer one
    // wrote, then a marker to wait for.
    send(
        &topic.name,
        &[at(
            t1,
            noted("replayed", command(&id(4), "k-1", "1.50", Some("NEW"))),
        )],
    )
    .await;
    send(&topic.name, &[at(t2, command(&id(5), "k-2", "2.00", None))]).await;
    let rows = total_reads(&base, "k-2", "2.00").await;
    assert_eq!(
        cell(&rows, "k-1", "Total"),
        Some(&json!("2.00")),
        "{rows:?}"
    );
    assert_eq!(
        cell(&rows, "k-1", "Note"),
        Some(&json!("replayed")),
        "{rows:?}"
    );
    assert_eq!(
        cell(&rows, "k-1", "Status"),
        Some(&json!("PAID")),
        "{rows:?}"
    );

    // A newer one, and one as old as the row (a redelivery), still land.
    send(
        &topic.name,
        &[
            at(t3, command(&id(6), "k-1", "3.00", None)),
            at(t3, command(&id(7), "k-1", "3.10", None)),
        ],
    )
    .await;
    let rows = total_reads(&base, "k-1", "3.10").await;
    stop.send(()).unwrap();
    let versions = format!(r#"{{"Note":{t1},"Status":{t2},"Total":{t3}}}"#);
    let version = cell(&rows, "k-1", VERSION_COLUMN);
    assert_eq!(version, Some(&json!(versions)), "{rows:?}");
    assert_eq!(
        cell(&rows, "k-1", "Status"),
        Some(&json!("PAID")),
        "{rows:?}"
    );
    assert_eq!(rows.len(), 3, "a row was added: {rows:?}");
    assert_eq!(message_count(&dlq.name), 0);

    // The one passed over whole is on the audit trail as such; the rest
    // applied (the replay wrote its Note).
    let ids: Vec<String> = (1..=7).map(id).collect();
    let outcomes = eventually("seven commands on the audit trail", WAIT, || {
        let ids = &ids;
        async move {
            let outcomes: Vec<(String, String)> = audited(ids)
                .await
                .into_iter()
                .flat_map(|record| {
                    let outcome = record.outcome;
                    record
                        .rows
                        .into_iter()
                        .flatten()
                        .map(move |row| (row.command_id.unwrap_or_default(), outcome.clone()))
                })
                .collect();
            (outcomes.len() >= ids.len()).then_some(outcomes)
        }
    })
    .await;
    for n in 1..=7 {
        let expected = if n == 2 { "SUPERSEDED" } else { "APPLIED" };
        let recorded: Vec<_> = outcomes.iter().filter(|(c, _)| *c == id(n)).collect();
        assert_eq!(
            recorded,
            [&(id(n), expected.to_owned())],
            "command {n}: {outcomes:?}"
        );
    }
}
