//! Two replicas, one partition between them: while the other replica had
//! it, it appended a key; when the partition comes back, the consumer loop
//! tells the sink (`Handler::assigned`), and the sink reads the sheet again
//! before writing that key, so the update lands in its row instead of
//! appending the key a second time (before, the first replica wrote on the
//! index it had cached, where the key was new).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{Tuning, command, grid, id, sandbox, upserter};
use sluice_avro::AvroCodec;
use sluice_kafka::{Handler, KafkaConfig, ReplyPublisher};
use sluice_sheets_sink::SheetsSink;
use sluice_testkit::Stack;

#[tokio::test]
async fn a_key_the_other_replica_appended_is_updated_not_appended_again() {
    let (base, key) = sandbox().await;
    let stack = Stack::get();
    let tuning = Tuning::quick;
    let replica = SheetsSink {
        codec: AvroCodec::new(stack.registry_settings()),
        upserter: upserter(&base, &key, tuning().limiter, tuning().breaker),
        replies: ReplyPublisher::new(
            &KafkaConfig::new(&stack.kafka_bootstrap),
            Arc::new(AvroCodec::new(stack.registry_settings())),
            "sheets.results.v1",
        )
        .unwrap(),
        audit: common::audit_log(),
    };
    let other = upserter(&base, &key, tuning().limiter, tuning().breaker);

    // The replica writes (and caches the sheet's index) ...
    let first = [command(&id(1), "k-1", "1.00", None)];
    replica.upserter.upsert(&first).await.unwrap();
    // ... loses the partition; the other replica appends k-2 ...
    other
        .upsert(&[command(&id(2), "k-2", "2.00", None)])
        .await
        .unwrap();
    // ... and the partition comes back with an update of k-2.
    replica.assigned(&[("sheets.rows.v1".into(), 0)]);
    let update = [command(&id(3), "k-2", "2.50", Some("PAID"))];
    replica.upserter.upsert(&update).await.unwrap();

    let rows = grid(&base).await;
    let k2: Vec<_> = rows.iter().filter(|row| row[0] == "k-2").collect();
    assert_eq!(k2.len(), 1, "k-2 appended twice: {rows:?}");
    assert_eq!((&k2[0][1], &k2[0][2]), (&"2.50".into(), &"PAID".into()));
}
