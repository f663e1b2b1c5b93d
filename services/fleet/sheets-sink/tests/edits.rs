//! A person sorts the sheet, inserts and deletes rows between two writes:
//! an update still lands on its key's row, and no other key's row changes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Tuning, WAIT, command, id, sandbox, send, sheet_of, start_with, visible};
use serde_json::{Value, json};
use sluice_sandbox::Local;
use sluice_testkit::{TestTopic, eventually, message_count};

/// The data rows by key (column A), for comparing sheets row order aside.
fn by_key(grid: &[Vec<Value>]) -> std::collections::BTreeMap<String, Vec<Value>> {
    grid.iter()
        .skip(1)
        .filter_map(|row| Some((row.first()?.as_str()?.to_owned(), row.clone())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_after_a_person_sorted_and_edited_the_sheet_lands_on_its_keys_row() {
    let (base, key) = sandbox().await;
    let topic = TestTopic::with_schema_of("sheets.rows.v1", "sheets-edited", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.sheets-sink.v1", "sheets-edited-dlq", 1).await;
    let stop = start_with(&base, &key, &topic.name, &dlq.name, Tuning::quick());
    let first: Vec<_> = (1..=4u32)
        .map(|n| command(&id(n), &format!("k-{n}"), &format!("{n}.00"), None))
        .collect();
    send(&topic.name, &first).await;
    let written = eventually("four rows", WAIT, || {
        let base = &base;
        async move {
            let rows = sheet_of(base, "Orders").await;
            (rows.len() == 5).then_some(rows)
        }
    })
    .await;

    // Sorted descending, k-2 deleted, a note row inserted on top.
    let mut edited = vec![written[0].clone(), vec![json!("note"), json!("checked")]];
    let mut data: Vec<Vec<Value>> = written[1..]
        .iter()
        .filter(|row| row[0] != "k-2")
        .cloned()
        .collect();
    data.sort_by(|a, b| b[0].as_str().cmp(&a[0].as_str()));
    edited.extend(data);
    Local::at(&base)
        .edit_grid("s1", "Orders", &edited)
        .await
        .unwrap();

    send(
        &topic.name,
        &[command(&id(10), "k-1", "updated", Some("PAID"))],
    )
    .await;
    let after = eventually("k-1 updated", WAIT, || {
        let base = &base;
        async move {
            let rows = sheet_of(base, "Orders").await;
            rows.iter()
                .any(|row| row.get(1) == Some(&json!("updated")))
                .then_some(rows)
        }
    })
    .await;
    stop.send(()).unwrap();
    let rows = by_key(&visible(&after));
    assert_eq!(
        rows["k-1"],
        vec![json!("k-1"), json!("updated"), json!("PAID")],
        "{after:?}"
    );
    let before = by_key(&visible(&edited));
    for other in ["note", "k-3", "k-4"] {
        assert_eq!(
            rows[other], before[other],
            "{other}'s row changed: {after:?}"
        );
    }
    assert_eq!(after.len(), edited.len(), "a row was added: {after:?}");
    assert_eq!(message_count(&dlq.name), 0);
}
