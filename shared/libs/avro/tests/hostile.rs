//! Hostile bytes behind a valid registry header: a length prefix of 2 GiB,
//! one just under apache-avro's default allocation limit, a billion-item
//! array and random bytes. Each is a permanent error named as such, and the
//! process's peak memory stays bounded (read from /proc, VmHWM). In a test
//! binary of its own: the peak is the process's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use schema_registry_converter::async_impl::avro::AvroEncoder;
use schema_registry_converter::schema_registry_common::SubjectNameStrategy;
use sluice_avro::{AvroCodec, CodecError};
use sluice_contracts::types::OrderEvent;
use sluice_resilience::{Classified, ErrorClass};
use sluice_testkit::samples::order_placed;
use sluice_testkit::{Stack, TestTopic};

/// Avro's zig-zag varint of `n`.
fn varint(n: i64) -> Vec<u8> {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    let mut out = Vec::new();
    loop {
        let byte = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// The process's peak resident memory, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap()
}

#[tokio::test]
async fn hostile_lengths_are_refused_with_bounded_memory() {
    let topic = TestTopic::with_schema_of("orders.events.v1", "codec-hostile", 1).await;
    let codec = AvroCodec::new(Stack::get().registry_settings());
    // A real record, for its header: magic byte and schema id.
    let strategy = SubjectNameStrategy::TopicNameStrategy(topic.name.clone(), false);
    let sample = AvroEncoder::new(Stack::get().registry_settings())
        .encode_value(order_placed("order-1", 1_763_900_000_000), &strategy)
        .await
        .unwrap();
    let header = &sample[..5];
    let with = |body: Vec<u8>| [header, &body].concat();
    let cases = [
        (
            "a 2 GiB string",
            with([varint(2 << 30), b"abc".to_vec()].concat()),
        ),
        (
            "a 511 MiB string",
            with([varint(511 << 20), b"abc".to_vec()].concat()),
        ),
        (
            "a 65 MiB string",
            with([varint(65 << 20), b"abc".to_vec()].concat()),
        ),
        (
            "random bytes",
            with((0..64).map(|i| (i * 37 % 251) as u8).collect()),
        ),
    ];
    let before = peak_rss_kib();
    for (what, bytes) in &cases {
        let typed = codec.decode::<OrderEvent>(bytes).await.unwrap_err();
        let generic = codec.decode_value(bytes).await.unwrap_err();
        for err in [&typed, &generic] {
            assert_eq!(err.class(), ErrorClass::Permanent, "{what}: {err}");
            assert!(
                !matches!(err, CodecError::RegistryUnavailable(_)),
                "{what}: {err}"
            );
        }
        println!("{what}: {typed}");
        if what.contains("MiB") || what.contains("GiB") {
            assert!(
                typed.to_string().contains("Unable to allocate"),
                "{what}: {typed}"
            );
        }
    }
    let grown_mib = (peak_rss_kib().saturating_sub(before)) / 1024;
    println!(
        "peak RSS {} MiB, grown by {grown_mib} MiB decoding {} hostile records",
        peak_rss_kib() / 1024,
        cases.len()
    );
    assert!(grown_mib < 96, "peak RSS grew by {grown_mib} MiB");
}
