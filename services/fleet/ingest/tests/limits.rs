//! Clients that try to hold the server: headers that never end, more
//! connections than the cap, more requests in flight than the cap, a body
//! that never arrives, and a token sending faster than its budget.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{
    Limits, OTHER_TOKEN, TOKEN, accepted, kafka, order_placed, serve_limited, shop_webhook,
};
use sluice_testkit::TestTopic;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn serve(topic: &str, limits: Limits) -> String {
    serve_limited(&[("orders", topic)], kafka(), shop_webhook(), limits).await
}

fn address(base: &str) -> String {
    base.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection; what it sent, or `None`
/// when it is still open after `within`.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(within, stream.read_to_end(&mut received)).await;
    read.ok()
        .map(|_| String::from_utf8_lossy(&received).into_owned())
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let topic = TestTopic::with_schema_of("orders.events.v1", "ingest-slow-headers", 1).await;
    let mut limits = Limits::default();
    limits.server.header_read_timeout = Duration::from_secs(1);
    let base = serve(&topic.name, limits).await;
    let mut stream = TcpStream::connect(address(&base)).await.unwrap();
    stream
        .write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(
        until_closed(&mut stream, Duration::from_secs(6))
            .await
            .is_some(),
        "a connection that never finished its headers is still open after 6 s"
    );
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_once() {
    let topic = TestTopic::with_schema_of("orders.events.v1", "ingest-conn-cap", 1).await;
    let mut limits = Limits::default();
    limits.server.max_connections = 3;
    let base = serve(&topic.name, limits).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(address(&base)).await.unwrap());
    }
    let mut fourth = TcpStream::connect(address(&base)).await.unwrap();
    assert!(
        until_closed(&mut fourth, Duration::from_secs(3))
            .await
            .is_some(),
        "a fourth connection was kept beyond the cap of three"
    );
    // Once one is let go, requests are served again.
    drop(held.pop());
    accepted(&base, &[], Duration::from_secs(10)).await;
}

#[tokio::test]
async fn requests_beyond_the_in_flight_cap_are_503_and_a_body_that_never_arrives_is_408() {
    let topic = TestTopic::with_schema_of("orders.events.v1", "ingest-in-flight", 1).await;
    let mut limits = Limits::default();
    limits.server.max_in_flight = 1;
    limits.server.body_timeout = Duration::from_secs(2);
    let base = serve(&topic.name, limits).await;
    // In flight: its headers promise 100 bytes of body, 10 arrive.
    let mut slow = TcpStream::connect(address(&base)).await.unwrap();
    slow.write_all(
        format!(
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"aggregat"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/events"))
        .bearer_auth(TOKEN)
        .json(&order_placed())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let mut answer = vec![0; 512];
    let read = tokio::time::timeout(Duration::from_secs(6), slow.read(&mut answer))
        .await
        .expect("the slow body is still waited for after 6 s")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn a_token_beyond_its_budget_gets_429_and_another_token_does_not() {
    let topic = TestTopic::with_schema_of("orders.events.v1", "ingest-token-rate", 1).await;
    let limits = Limits {
        per_token_per_second: 2.0,
        ..Limits::default()
    };
    let base = serve(&topic.name, limits).await;
    let client = reqwest::Client::new();
    let post = |token: &'static str| {
        client
            .post(format!("{base}/v1/events"))
            .bearer_auth(token)
            .json(&order_placed())
            .send()
    };
    let mut limited = None;
    for _ in 0..10 {
        let response = post(TOKEN).await.unwrap();
        if response.status().as_u16() == 429 {
            limited = Some(response);
            break;
        }
        assert_eq!(response.status().as_u16(), 202);
    }
    let limited = limited.expect("ten requests at once passed a budget of 2/s");
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(post(OTHER_TOKEN).await.unwrap().status().as_u16(), 202);
}

#[tokio::test]
async fn clients_that_hang_up_mid_batch_neither_leak_producers_nor_half_write() {
    let topic = TestTopic::with_schema_of("orders.events.v1", "ingest-hang-up", 1).await;
    let limits = Limits {
        transactions: 1,
        ..Limits::default()
    };
    let base = serve(&topic.name, limits).await;
    let batch = |n: usize| {
        let events: Vec<serde_json::Value> = (0..2)
            .map(|i| {
                let mut event = order_placed();
                event.as_object_mut().unwrap().remove("event_id");
                event["aggregate_id"] = serde_json::json!(format!("order-{n}-{i}"));
                event
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({ "events": events })).unwrap()
    };
    // Each sends its batch whole and hangs up without waiting for the answer.
    for n in 0..6 {
        let body = batch(n);
        let mut stream = TcpStream::connect(address(&base)).await.unwrap();
        let head = format!(
            "POST /v1/events/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body).await.unwrap();
        drop(stream);
    }
    // The pool's one producer is still there for the next client.
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/events/batch"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(batch(99))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let committed = sluice_testkit::committed_messages(&topic.name).await.len();
    assert!(
        committed % 2 == 0 && committed >= 2,
        "{committed} events committed: a batch was half written"
    );
}
