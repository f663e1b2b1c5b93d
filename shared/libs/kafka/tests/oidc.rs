//! SASL/OAUTHBEARER with librdkafka's own OIDC client: the service's
//! settings (client id, token endpoint, the client secret from a file) get a
//! token from the endpoint with the client-credentials grant, and the broker
//! takes it. The broker's OAUTHBEARER listener validates with Kafka's
//! unsecured validator, so the token endpoint here issues `alg: none`
//! tokens; what is under test is the client side.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::{produce_and_read, secret_file, service_kafka};
use sluice_kafka::{KafkaConfig, KafkaReadiness};
use sluice_telemetry::ReadinessCheck;
use sluice_testkit::Stack;

const CLIENT_ID: &str = "sluice-client";
const CLIENT_SECRET: &str = "oidc-s3cret";

/// What the token endpoint was asked: the Authorization header and the
/// form body of each request.
type Requests = Arc<Mutex<Vec<(String, String)>>>;

/// An OAuth token endpoint on loopback that grants a token for
/// [`CLIENT_ID`] and [`CLIENT_SECRET`] only; its URL and what it was asked.
async fn token_endpoint() -> (String, Requests) {
    let requests = Requests::default();
    let app = axum::Router::new()
        .route("/token", post(grant))
        .with_state(Arc::clone(&requests));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, requests)
}

async fn grant(State(requests): State<Requests>, headers: HeaderMap, body: String) -> Response {
    let authorization = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    requests.lock().unwrap().push((authorization.clone(), body));
    let expected = format!(
        "Basic {}",
        STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    if authorization != expected {
        return (StatusCode::UNAUTHORIZED, r#"{"error":"invalid_client"}"#).into_response();
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let part = |json: serde_json::Value| URL_SAFE_NO_PAD.encode(json.to_string());
    let token = format!(
        "{}.{}.",
        part(serde_json::json!({"alg": "none"})),
        part(serde_json::json!({"sub": CLIENT_ID, "iat": now, "exp": now + 3600})),
    );
    axum::Json(serde_json::json!({
        "access_token": token,
        "token_type": "bearer",
        "expires_in": 3600,
    }))
    .into_response()
}

/// A service's Kafka settings for OIDC, the client secret in a file.
fn oidc_config(token_url: &str, secret: &str) -> KafkaConfig {
    let secret_file = secret_file("oidc-secret", secret);
    service_kafka([
        "--kafka-bootstrap",
        &Stack::get().kafka_sasl_bootstrap,
        "--kafka-property",
        "security.protocol=SASL_PLAINTEXT",
        "--kafka-property",
        "sasl.mechanism=OAUTHBEARER",
        // A refused token fails the send in seconds, not librdkafka's 300 s.
        "--kafka-property",
        "message.timeout.ms=30000",
        "--kafka-property",
        "sasl.oauthbearer.method=oidc",
        "--kafka-property",
        &format!("sasl.oauthbearer.client.id={CLIENT_ID}"),
        "--kafka-property",
        &format!("sasl.oauthbearer.token.endpoint.url={token_url}"),
        "--kafka-oauthbearer-client-secret-file",
        secret_file.to_str().unwrap(),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oidc_client_secret_from_a_file_gets_a_token_the_broker_takes() {
    let (url, requests) = token_endpoint().await;
    produce_and_read(&oidc_config(&url, CLIENT_SECRET), "through OIDC").await;
    let (authorization, body) = requests.lock().unwrap()[0].clone();
    assert_eq!(
        authorization,
        format!("Basic {}", STANDARD.encode("sluice-client:oidc-s3cret")),
        "the client id and the secret from the file, without its newline"
    );
    assert_eq!(body, "grant_type=client_credentials");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_client_secret_makes_the_service_unready() {
    let (url, requests) = token_endpoint().await;
    let readiness =
        KafkaReadiness::new(&oidc_config(&url, "not-the-secret"), Duration::from_secs(5)).unwrap();
    assert!(readiness.check().await.is_err());
    assert!(
        !requests.lock().unwrap().is_empty(),
        "librdkafka asked the token endpoint"
    );
    let good = KafkaReadiness::new(&oidc_config(&url, CLIENT_SECRET), Duration::from_secs(5));
    good.unwrap().check().await.unwrap();
}
