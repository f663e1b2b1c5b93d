//! The events API. Every route answers 202 only once Kafka has every event
//! of the request (acks=all); anything else is an error that produced
//! nothing the client is told was accepted.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::future::join_all;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sluice_avro::AvroCodec;
use sluice_contracts::now_millis;

use crate::auth::TokenHashes;
use crate::error::ApiError;
use crate::event::{EventRouter, Prepared};
use crate::idempotency::{Claim, IdempotencyStore};
use crate::webhook::WebhookSources;

/// The header that makes a retried request safe.
const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// How long a client is asked to wait when Kafka or the registry is down.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// The API's description, served at `/openapi.json`.
const OPENAPI: &str = include_str!("../openapi.json");

/// What every request needs.
pub struct AppState {
    /// Accepted bearer tokens.
    pub tokens: TokenHashes,
    /// Contract checks and routing.
    pub events: EventRouter,
    /// Avro encoding through the registry.
    pub codec: AvroCodec,
    /// `acks=all`, idempotent.
    pub producer: FutureProducer,
    /// How long to wait for Kafka's acknowledgement.
    pub ack_timeout: Duration,
    /// Answers to requests that carried an `Idempotency-Key`.
    pub idempotency: IdempotencyStore,
    /// Signed webhook senders.
    pub webhooks: WebhookSources,
}

/// One accepted event.
#[derive(Debug, Serialize)]
pub struct Accepted {
    /// The event's id.
    pub event_id: String,
    /// The topic it is on.
    pub topic: String,
}

/// The API's routes; tests serve it directly.
pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/events", post(accept_event))
        .route("/v1/events/batch", post(accept_batch))
        .route("/v1/webhooks/{source}", post(accept_webhook))
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// What a bearer-token request asks for.
#[derive(Debug, Clone, Copy)]
enum Submission {
    One,
    Batch,
}

async fn accept_event(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    submit(&state, &headers, &body, Submission::One).await
}

async fn accept_batch(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    submit(&state, &headers, &body, Submission::Batch).await
}

async fn accept_webhook(
    State(state): State<Arc<AppState>>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(webhook) = state.webhooks.get(&source) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no webhook source {source:?}") })),
        )
            .into_response();
    };
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let answer = async {
        webhook.verify(
            header("x-sluice-timestamp"),
            header("x-sluice-signature"),
            &body,
            unix_now(),
        )?;
        let event = state
            .events
            .prepare_incoming(webhook.to_event(&body)?, now_millis())?;
        let accepted = produce(&state, &headers, vec![event]).await?;
        Ok::<_, ApiError>(json!(accepted[0]))
    };
    respond(answer.await)
}

/// Authenticates, then answers — once per `Idempotency-Key`.
async fn submit(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    submission: Submission,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    if !token.is_some_and(|token| state.tokens.accepts(token)) {
        return ApiError::Unauthorized.into_response();
    }
    let Some(key) = headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|value| value.to_str().ok())
    else {
        return respond(answer(state, headers, body, submission).await);
    };
    let claim = match state.idempotency.claim(key, &Sha256::digest(body)).await {
        Ok(claim) => claim,
        Err(err) => return unavailable(format!("idempotency store: {err}")).into_response(),
    };
    match claim {
        Claim::New => {}
        Claim::Replay { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (status, [("idempotent-replayed", "true")], Json(body)).into_response();
        }
        Claim::InProgress => return ApiError::InProgress.into_response(),
        Claim::Mismatch => return ApiError::KeyReused.into_response(),
    }
    let result = answer(state, headers, body, submission).await;
    // Keep the answer only once it is final; a failure gives the key back.
    let kept = match &result {
        Ok(accepted) => {
            state
                .idempotency
                .complete(key, StatusCode::ACCEPTED.as_u16(), accepted)
                .await
        }
        Err(_) => state.idempotency.release(key).await,
    };
    if let Err(err) = kept {
        tracing::warn!(key, error = %err, "idempotency answer not kept; a retry may produce the events again");
    }
    respond(result)
}

async fn answer(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    submission: Submission,
) -> Result<Value, ApiError> {
    match submission {
        Submission::One => {
            let event = state.events.prepare(body, now_millis())?;
            Ok(json!(produce(state, headers, vec![event]).await?[0]))
        }
        Submission::Batch => {
            let events = state.events.prepare_batch(body, now_millis())?;
            Ok(json!({ "accepted": produce(state, headers, events).await? }))
        }
    }
}

fn respond(result: Result<Value, ApiError>) -> Response {
    match result {
        Ok(accepted) => (StatusCode::ACCEPTED, Json(accepted)).into_response(),
        Err(err) => err.into_response(),
    }
}

fn unavailable(reason: String) -> ApiError {
    ApiError::Unavailable {
        reason,
        retry_after: RETRY_AFTER,
    }
}

/// Produces checked events; `Ok` only once Kafka acknowledged every one.
/// They are sent together, in order, so per-aggregate order holds.
async fn produce(
    state: &AppState,
    headers: &HeaderMap,
    events: Vec<Prepared>,
) -> Result<Vec<Accepted>, ApiError> {
    let traceparent = headers
        .get("traceparent")
        .and_then(|value| value.to_str().ok());
    let mut encoded = Vec::with_capacity(events.len());
    for event in events {
        let value = state
            .codec
            .encode_value(&event.topic, &event.contract, event.value)
            .await
            .map_err(|err| unavailable(err.to_string()))?;
        encoded.push((
            event.topic,
            event.key,
            event.event_id,
            event.event_type,
            value,
        ));
    }
    let sends = encoded
        .iter()
        .map(|(topic, key, event_id, event_type, value)| {
            let mut kafka_headers = OwnedHeaders::new()
                .insert(Header {
                    key: "sluice.event_id",
                    value: Some(event_id),
                })
                .insert(Header {
                    key: "sluice.event_type",
                    value: Some(event_type),
                });
            if let Some(traceparent) = traceparent {
                kafka_headers = kafka_headers.insert(Header {
                    key: "traceparent",
                    value: Some(traceparent),
                });
            }
            // The producer's message.timeout.ms is the ack timeout, so an event
            // refused here is not delivered later behind the client's back.
            state.producer.send(
                FutureRecord::to(topic)
                    .key(key)
                    .payload(value)
                    .headers(kafka_headers),
                state.ack_timeout,
            )
        });
    for delivery in join_all(sends).await {
        delivery.map_err(|(err, _)| {
            unavailable(format!("Kafka did not acknowledge every event: {err}"))
        })?;
    }
    Ok(encoded
        .into_iter()
        .map(|(topic, _, event_id, _, _)| Accepted { event_id, topic })
        .collect())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
