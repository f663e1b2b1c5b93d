//! The local Postgres runs with wal_level=logical: a pgoutput replication slot
//! on a publication yields committed rows, and only committed rows, once.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sqlx::postgres::PgPoolOptions;
// Table, publication and slot names come from unique_name, not from input.
use sluice_testkit::{Stack, unique_name};
use sqlx::{AssertSqlSafe, PgPool, Row};

async fn pool() -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .connect(&Stack::get().database_url)
        .await
        .unwrap()
}

/// Text values of the columns of every pgoutput Insert message in `changes`.
fn inserted_rows(changes: &[Vec<u8>]) -> Vec<Vec<Option<String>>> {
    changes
        .iter()
        .filter(|message| message.first() == Some(&b'I'))
        .map(|message| {
            // 'I', relation oid (4), 'N', column count (2), then per column a
            // kind byte and, for 't' (text), a 4-byte length and the bytes.
            assert_eq!(message[5], b'N');
            let columns = u16::from_be_bytes([message[6], message[7]]);
            let mut at = 8;
            (0..columns)
                .map(|_| {
                    let kind = message[at];
                    at += 1;
                    match kind {
                        b't' => {
                            let len = u32::from_be_bytes(message[at..at + 4].try_into().unwrap())
                                as usize;
                            at += 4;
                            let text = String::from_utf8(message[at..at + len].to_vec()).unwrap();
                            at += len;
                            Some(text)
                        }
                        b'n' => None,
                        other => panic!("unexpected column kind {other}"),
                    }
                })
                .collect()
        })
        .collect()
}

async fn take_changes(pool: &PgPool, slot: &str, publication: &str) -> Vec<Vec<u8>> {
    sqlx::query(
        "SELECT data FROM pg_logical_slot_get_binary_changes($1, NULL, NULL, \
         'proto_version', '1', 'publication_names', $2)",
    )
    .bind(slot)
    .bind(publication)
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|row| row.get::<Vec<u8>, _>("data"))
    .collect()
}

#[tokio::test]
async fn logical_replication_slot_yields_committed_rows_once() {
    let pool = pool().await;
    let name = unique_name("repl").replace('-', "_");
    let (table, publication, slot) = (
        format!("{name}_outbox"),
        format!("{name}_pub"),
        format!("{name}_slot"),
    );

    let wal_level: String = sqlx::query_scalar("SHOW wal_level")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(wal_level, "logical");

    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE {table} (id text PRIMARY KEY, payload jsonb NOT NULL)"
    )))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "CREATE PUBLICATION {publication} FOR TABLE {table}"
    )))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')")
        .bind(&slot)
        .execute(&pool)
        .await
        .unwrap();

    let mut committed = pool.begin().await.unwrap();
    for (id, payload) in [("evt-1", r#"{"n": 1}"#), ("evt-2", r#"{"n": 2}"#)] {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {table} VALUES ($1, $2::jsonb)"
        )))
        .bind(id)
        .bind(payload)
        .execute(&mut *committed)
        .await
        .unwrap();
    }
    committed.commit().await.unwrap();
    let mut rolled_back = pool.begin().await.unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {table} VALUES ('evt-never', '{{}}')"
    )))
    .execute(&mut *rolled_back)
    .await
    .unwrap();
    rolled_back.rollback().await.unwrap();

    let changes = take_changes(&pool, &slot, &publication).await;
    let kinds: Vec<u8> = changes.iter().map(|m| m[0]).collect();
    assert_eq!(kinds, b"BRIIC", "Begin, Relation, two Inserts, Commit");
    assert_eq!(
        inserted_rows(&changes),
        [
            [Some("evt-1".to_owned()), Some(r#"{"n": 1}"#.to_owned())],
            [Some("evt-2".to_owned()), Some(r#"{"n": 2}"#.to_owned())],
        ]
    );
    // get_changes confirms what it returned: the slot does not yield it again.
    assert!(take_changes(&pool, &slot, &publication).await.is_empty());

    sqlx::query("SELECT pg_drop_replication_slot($1)")
        .bind(&slot)
        .execute(&pool)
        .await
        .unwrap();
}
