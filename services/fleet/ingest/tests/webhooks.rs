//! Webhooks from hostile and repeating senders: a delivery that comes again
//! produces nothing, a timestamp from the future is refused, an unknown
//! source cannot be told from a bad signature, and the signature schemes of
//! GitHub, Stripe and Shopify verify deliveries signed as those providers do,
//! a source whose body names the event type posts only the types it lists,
//! and every delivery, accepted or refused, is on the audit trail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use common::{
    Limits, WEBHOOK_SECRET, audit_topic, kafka, order_placed, serve, serve_limited, serve_with,
    shop_webhook,
};
use hmac::{Hmac, KeyInit, Mac};
use rdkafka::Message;
use serde_json::{Value, json};
use sha2::Sha256;
use sluice_avro::AvroCodec;
use sluice_contracts::Catalog;
use sluice_contracts::types::{AuditAction, AuditRecord};
use sluice_ingest::WebhookSources;
use sluice_testkit::{Stack, TestTopic, committed_messages, eventually, unique_name};

fn hmac(secret: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A webhook body the `shop` source maps to an OrderPlaced.
fn delivery_body(delivery: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "delivery": delivery,
        "order_id": "order-4711",
        "order": order_placed()["payload"].clone()
    }))
    .unwrap()
}

async fn deliver(
    base: &str,
    source: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, Value, bool) {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/v1/webhooks/{source}"))
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.unwrap();
    let replayed = response.headers().contains_key("idempotent-replayed");
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
        replayed,
    )
}

fn sluice_signed(timestamp: u64, body: &[u8]) -> Vec<(&'static str, String)> {
    let timestamp = timestamp.to_string();
    let signature = hex::encode(hmac(WEBHOOK_SECRET, &[timestamp.as_bytes(), b".", body]));
    vec![
        ("x-sluice-timestamp", timestamp),
        ("x-sluice-signature", format!("sha256={signature}")),
    ]
}

#[tokio::test]
async fn a_delivery_that_comes_again_is_answered_as_a_duplicate_and_produces_nothing() {
    let topic = TestTopic::with_schema_of("orders.events.v1", "ingest-webhook-replay", 1).await;
    let base = serve(&topic.name, kafka()).await;
    let body = delivery_body(&uuid::Uuid::new_v4().to_string());
    let headers = sluice_signed(now(), &body);
    let (status, first, replayed) = deliver(&base, "shop", &headers, &body).await;
    assert_eq!((status, replayed), (202, false), "{first}");
    // The sender's retry, or an attacker replaying what they captured.
    let (status, again, replayed) = deliver(&base, "shop", &headers, &body).await;
    assert_eq!((status, replayed), (202, true), "{again}");
    assert_eq!(again, first);
    assert_eq!(committed_messages(&topic.name).await.len(), 1);
}

#[tokio::test]
async fn a_signed_timestamp_from_the_future_is_refused() {
    let topic = TestTopic::with_schema_of("orders.events.v1", "ingest-webhook-future", 1).await;
    let base = serve(&topic.name, kafka()).await;
    let body = delivery_body(&uuid::Uuid::new_v4().to_string());
    let (status, answer, _) =
        deliver(&base, "shop", &sluice_signed(now() + 240, &body), &body).await;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("signed timestamp"),
        "{answer}"
    );
    assert!(committed_messages(&topic.name).await.is_empty());
}

#[tokio::test]
async fn an_unknown_source_cannot_be_told_from_a_bad_signature() {
    let topic = TestTopic::with_schema_of("orders.events.v1", "ingest-webhook-probe", 1).await;
    let base = serve(&topic.name, kafka()).await;
    let body = delivery_body(&uuid::Uuid::new_v4().to_string());
    let forged = sluice_signed(now(), b"another body");
    let bad_signature = deliver(&base, "shop", &forged, &body).await;
    let unknown = deliver(&base, "nobody", &forged, &body).await;
    assert_eq!(bad_signature.0, 401);
    assert_eq!(unknown, bad_signature);
    assert!(
        bad_signature.1["error"]
            .as_str()
            .unwrap()
            .contains("signature"),
        "{:?}",
        bad_signature.1
    );
}

/// What the audit trail holds, decoded.
async fn audit_trail() -> Vec<AuditRecord> {
    let codec = AvroCodec::new(Stack::get().registry_settings());
    let mut records = Vec::new();
    for message in committed_messages(audit_topic().await).await {
        records.push(codec.decode(message.payload().unwrap()).await.unwrap());
    }
    records
}

#[tokio::test]
async fn every_delivery_accepted_or_refused_is_on_the_audit_trail() {
    let topic = TestTopic::with_schema_of("orders.events.v1", "ingest-webhook-audit", 1).await;
    let base = serve(&topic.name, kafka()).await;
    let body = delivery_body(&uuid::Uuid::new_v4().to_string());
    let headers = sluice_signed(now(), &body);
    // Without a delivery id header, the signature recognises the delivery.
    let delivery = headers[1].1.trim_start_matches("sha256=").to_owned();
    let (status, answer, _) = deliver(&base, "shop", &headers, &body).await;
    assert_eq!(status, 202, "{answer}");
    // Its retry is answered from the first answer and produces nothing,
    // its record included.
    let (status, _, replayed) = deliver(&base, "shop", &headers, &body).await;
    assert_eq!((status, replayed), (202, true));
    let forged = sluice_signed(now(), b"another body");
    let prober = unique_name("prober");
    assert_eq!(deliver(&base, &prober, &forged, &body).await.0, 401);
    // A caller's bytes reach a terminal's table printable and short.
    let escape = format!("{prober}%1B%5B31m{}", "x".repeat(200));
    assert_eq!(deliver(&base, &escape, &forged, &body).await.0, 401);

    // Each answer was given only once its record was on Kafka.
    let trail = audit_trail().await;
    let accepted: Vec<_> = trail
        .iter()
        .filter(|r| r.detail.as_deref() == Some(&format!("delivery {delivery}")))
        .collect();
    assert_eq!(accepted.len(), 1, "{trail:#?}");
    assert_eq!(
        accepted[0].source_event_id.as_deref(),
        answer["event_id"].as_str()
    );
    for record in accepted {
        assert_eq!(record.action, AuditAction::WebhookAccepted);
        assert_eq!(
            (record.subject.as_str(), record.outcome.as_str()),
            ("webhook/shop", "ACCEPTED 202")
        );
        assert_eq!(
            (record.service.as_str(), record.actor.as_str()),
            ("ingest", "ingest@test")
        );
    }
    let refused: Vec<_> = trail
        .iter()
        .filter(|r| r.subject.starts_with(&format!("webhook/{prober}")))
        .collect();
    assert_eq!(refused.len(), 2, "{trail:#?}");
    let escaped = refused
        .iter()
        .find(|r| r.subject != format!("webhook/{prober}"))
        .unwrap();
    assert!(!escaped.subject.contains('\u{1b}'), "{escaped:?}");
    assert_eq!(escaped.subject.chars().count(), "webhook/".len() + 64);
    for record in refused {
        assert_eq!(record.action, AuditAction::WebhookRefused);
        assert_eq!(record.outcome, "REFUSED 401");
        // Its signature was never verified: no delivery id a prober chose.
        assert_eq!(record.detail, None);
    }
}

/// A sources file with one source per provider scheme, secrets in files.
fn provider_sources(dir: &Path) -> WebhookSources {
    let mut toml = String::new();
    for scheme in ["github", "stripe", "shopify"] {
        let secret = dir.join(format!("{scheme}.secret"));
        std::fs::write(&secret, format!("{scheme}-secret\n")).unwrap();
        toml.push_str(&format!(
            r#"
[[source]]
name = "{scheme}-shop"
scheme = "{scheme}"
secret_file = "{}"
aggregate_type = "orders"
event_type = "OrderPlaced"
aggregate_id_pointer = "/order_id"
payload_pointer = "/order"
"#,
            secret.display()
        ));
    }
    let file = dir.join("webhooks.toml");
    std::fs::write(&file, toml).unwrap();
    WebhookSources::load(&file, &Catalog::embedded().unwrap()).unwrap()
}

#[tokio::test]
async fn github_stripe_and_shopify_deliveries_verify_as_their_providers_sign_them() {
    let topic = TestTopic::with_schema_of("orders.events.v1", "ingest-webhook-providers", 1).await;
    let dir = std::env::temp_dir().join(unique_name("webhooks"));
    std::fs::create_dir_all(&dir).unwrap();
    let base = serve_with(&[("orders", &topic.name)], kafka(), provider_sources(&dir)).await;
    let body = delivery_body("unused");
    let t = now().to_string();
    let signed = [
        (
            "github",
            vec![
                (
                    "x-hub-signature-256",
                    format!("sha256={}", hex::encode(hmac("github-secret", &[&body]))),
                ),
                ("x-github-delivery", uuid::Uuid::new_v4().to_string()),
            ],
        ),
        (
            "stripe",
            vec![(
                "stripe-signature",
                format!(
                    "t={t},v1={}",
                    hex::encode(hmac("stripe-secret", &[t.as_bytes(), b".", &body]))
                ),
            )],
        ),
        (
            "shopify",
            vec![
                (
                    "x-shopify-hmac-sha256",
                    base64::engine::general_purpose::STANDARD
                        .encode(hmac("shopify-secret", &[&body])),
                ),
                ("x-shopify-webhook-id", uuid::Uuid::new_v4().to_string()),
            ],
        ),
    ];
    for (scheme, headers) in &signed {
        let source = format!("{scheme}-shop");
        let (status, answer, _) = deliver(&base, &source, headers, &body).await;
        assert_eq!(status, 202, "{scheme}: {answer}");
        // Signed with another provider's secret: refused.
        let (other, _) = signed.iter().find(|(other, _)| other != scheme).unwrap();
        let wrong = &signed.iter().find(|(s, _)| s == other).unwrap().1;
        let (status, _, _) = deliver(&base, &source, wrong, &body).await;
        assert_eq!(status, 401, "{scheme} with {other}'s headers");
    }
    assert_eq!(committed_messages(&topic.name).await.len(), 3);
}

/// A sender whose body names the event type (`event_type_pointer`) posts
/// only the event types its source lists: a leaked webhook secret must not
/// let its holder post every event of the aggregate.
#[tokio::test]
async fn a_source_whose_body_names_the_event_type_posts_only_the_types_it_lists() {
    let topic = TestTopic::with_schema_of("orders.events.v1", "ingest-webhook-scope", 1).await;
    let dir = std::env::temp_dir().join(unique_name("webhooks"));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("shop.secret");
    std::fs::write(&secret, WEBHOOK_SECRET).unwrap();
    let file = dir.join("webhooks.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[[source]]
name = "shop"
secret_file = "{}"
aggregate_type = "orders"
event_type_pointer = "/type"
event_types = ["OrderPlaced"]
aggregate_id_pointer = "/order_id"
payload_pointer = "/order"
"#,
            secret.display()
        ),
    )
    .unwrap();
    let sources = WebhookSources::load(&file, &Catalog::embedded().unwrap()).unwrap();
    let base = serve_with(&[("orders", &topic.name)], kafka(), sources).await;

    let placed = serde_json::to_vec(&json!({
        "type": "OrderPlaced", "order_id": "order-4712", "order": order_placed()["payload"].clone()
    }))
    .unwrap();
    let (status, answer, _) = deliver(&base, "shop", &sluice_signed(now(), &placed), &placed).await;
    assert_eq!(status, 202, "{answer}");

    let cancelled = serde_json::to_vec(&json!({
        "type": "OrderCancelled", "order_id": "order-4712",
        "order": {"reason": "changed my mind", "cancelled_by": "c-9"}
    }))
    .unwrap();
    let (status, answer, _) =
        deliver(&base, "shop", &sluice_signed(now(), &cancelled), &cancelled).await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["field"], "event_type", "{answer}");
    assert_eq!(committed_messages(&topic.name).await.len(), 1);
}

/// How many refusals before it `record` says were not recorded.
fn left_off(record: &AuditRecord) -> Option<usize> {
    let detail = record.detail.as_deref()?;
    detail.contains("not recorded").then_some(())?;
    detail.split(' ').next()?.parse().ok()
}

/// The refused records of deliveries from `source`.
fn refused_from<'a>(trail: &'a [AuditRecord], source: &str) -> Vec<&'a AuditRecord> {
    let subject = format!("webhook/{source}");
    trail.iter().filter(|r| r.subject == subject).collect()
}

/// Refusals past the trail's budget are counted, not recorded, and the
/// next record says how many: a caller without a valid signature cannot
/// fill a trail kept for a year.
#[tokio::test]
async fn refusals_beyond_the_trails_budget_are_counted_not_recorded() {
    const FLOOD: usize = 30;
    let topic = TestTopic::with_schema_of("orders.events.v1", "ingest-webhook-budget", 1).await;
    let limits = Limits {
        refused_per_second: 1.0,
        ..Limits::default()
    };
    let base = serve_limited(&[("orders", &topic.name)], kafka(), shop_webhook(), limits).await;
    let body = delivery_body("probe");
    let forged = sluice_signed(now(), b"another body");
    let prober = unique_name("flood");
    let started = Instant::now();
    for _ in 0..FLOOD {
        assert_eq!(deliver(&base, &prober, &forged, &body).await.0, 401);
    }
    let elapsed = started.elapsed();
    // A verified sender's refusal is recorded all the same, budget or not:
    // a flood of forgeries does not crowd it off the trail.
    let no_order_id = serde_json::to_vec(&json!({
        "delivery": unique_name("signed"),
        "order": order_placed()["payload"].clone()
    }))
    .unwrap();
    let headers = sluice_signed(now(), &no_order_id);
    let (status, answer, _) = deliver(&base, "shop", &headers, &no_order_id).await;
    assert_eq!(status, 400, "{answer}");
    // Without a delivery id header, the signature names the delivery.
    let delivery = format!("delivery {}", headers[1].1.trim_start_matches("sha256="));
    assert!(
        audit_trail()
            .await
            .iter()
            .any(|r| r.detail.as_deref() == Some(delivery.as_str()) && r.outcome == "REFUSED 400"),
        "no record of the signed delivery refused"
    );
    // Each answer waited for its record, if it had one.
    let recorded = refused_from(&audit_trail().await, &prober).len();
    // A burst of two, then one a second.
    let budget = 2 + elapsed.as_secs() as usize + 1;
    assert!(
        (1..=budget).contains(&recorded) && recorded < FLOOD,
        "{recorded} of {FLOOD} refusals recorded in {elapsed:?}"
    );

    // Once the budget has refilled, a refusal is recorded again, saying how
    // many before it were not: then every refusal sent is a record or
    // counted in one (the newest was recorded, so none is pending).
    let sent = AtomicUsize::new(FLOOD);
    let trail = eventually(
        "every refusal recorded or counted",
        Duration::from_secs(30),
        || {
            let (base, forged, body, prober, sent) = (&base, &forged, &body, &prober, &sent);
            async move {
                assert_eq!(deliver(base, prober, forged, body).await.0, 401);
                let sent = sent.fetch_add(1, Ordering::Relaxed) + 1;
                let trail = audit_trail().await;
                let mine: Vec<AuditRecord> =
                    refused_from(&trail, prober).into_iter().cloned().collect();
                let counted: usize = mine.iter().filter_map(left_off).sum();
                (mine.len() + counted == sent).then_some(mine)
            }
        },
    )
    .await;
    let noted: Vec<&str> = trail.iter().filter_map(|r| r.detail.as_deref()).collect();
    assert!(!noted.is_empty(), "{trail:#?}");
    assert!(
        noted
            .iter()
            .all(|d| d.ends_with("not recorded (over --audit-refused-per-second)")),
        "{noted:?}"
    );
}
