//! Credentials as a deployment gives them: the database URL from a mounted
//! file (no secret in the environment, TLS verified against the stack's
//! CA), and settings that cannot work —
//! a secret given twice, a Kafka property that would weaken delivery —
//! refused at start with the setting and the reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{accepted, ingest_command};
use sluice_testkit::{KillOnDrop, Stack, TestTopic, consume_exactly, free_port};

/// A file holding `text`, as a mounted Kubernetes Secret would.
fn secret_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-ingest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_url_comes_from_a_file() {
    let stack = Stack::get();
    let topic = TestTopic::with_schema_of("orders.events.v1", "ingest-creds", 1).await;
    let api = free_port();
    // As `kubectl create secret --from-file` leaves it: a trailing newline;
    // and as a managed Postgres asks: TLS, the server's certificate checked.
    let verified = stack.database_url_verified_by(&stack.tls_ca);
    let url = secret_file("database-url", &format!("{verified}\n"));
    let mut command = ingest_command(api, &topic.name);
    command
        .env_remove("SLUICE_DATABASE_URL")
        .env("SLUICE_DATABASE_URL_FILE", &url);
    let mut ingest = KillOnDrop(command.spawn().unwrap());

    // A keyed request needs Postgres: its answer is kept there.
    let key = format!("creds-{}", uuid::Uuid::new_v4());
    accepted(
        &format!("http://127.0.0.1:{api}"),
        &[("Idempotency-Key", &key)],
        Duration::from_secs(60),
    )
    .await;
    consume_exactly(&topic.name, 1, Duration::from_secs(30)).await;
    let pool = sqlx::PgPool::connect(&stack.database_url).await.unwrap();
    let (state,): (String,) = sqlx::query_as("SELECT state FROM ingest_idempotency WHERE key = $1")
        .bind(&key)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        state, "done",
        "the key's answer is kept in the database the file names"
    );
    ingest.assert_running("after the request");
}

/// Runs `command` to its exit (it must exit at start) and returns its stderr.
fn refused_at_start(mut command: Command) -> String {
    let mut child = KillOnDrop(command.stderr(Stdio::piped()).spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "ingest did not stop at start");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "exited {status}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut stderr).unwrap();
    stderr
}

#[test]
fn a_secret_given_both_ways_is_refused_at_start() {
    let url = secret_file("database-url-twice", "postgres://unused@127.0.0.1:1/none");
    let mut command = ingest_command(free_port(), "unused");
    command.env("SLUICE_DATABASE_URL_FILE", &url);
    let stderr = refused_at_start(command);
    assert!(
        stderr.contains("setting database-url: set either the value or the file, not both"),
        "{stderr}"
    );
}

#[test]
fn a_kafka_property_that_weakens_delivery_is_refused_at_start() {
    let mut command = ingest_command(free_port(), "unused");
    command.env("SLUICE_KAFKA_PROPERTIES", "linger.ms=5,acks=1");
    let stderr = refused_at_start(command);
    assert!(
        stderr.contains(
            "setting kafka-property: acks cannot be \"1\": Sluice sets it to all because producers wait for every in-sync replica"
        ),
        "{stderr}"
    );
}
