//! The events API: `POST /v1/events`, answered 202 only once Kafka has the
//! event (acks=all).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sluice_avro::AvroCodec;

use crate::auth::TokenHashes;
use crate::error::ApiError;
use crate::event::EventRouter;
use crate::idempotency::{Claim, IdempotencyStore};

/// The header that makes a retried request safe.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// How long a client is asked to wait when Kafka or the registry is down.
const RETRY_AFTER: Duration = Duration::from_secs(5);

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
}

/// The answer to an accepted event.
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
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

async fn accept_event(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
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
        return respond(produce(&state, &headers, &body).await);
    };
    let request_sha256 = Sha256::digest(&body);
    let claim = match state.idempotency.claim(key, &request_sha256).await {
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
    let result = produce(&state, &headers, &body).await;
    // Keep the answer only once it is final; a failure gives the key back.
    let kept = match &result {
        Ok(accepted) => match serde_json::to_value(accepted) {
            Ok(answer) => {
                state
                    .idempotency
                    .complete(key, StatusCode::ACCEPTED.as_u16(), &answer)
                    .await
            }
            Err(err) => Err(sqlx::Error::Decode(Box::new(err))),
        },
        Err(_) => state.idempotency.release(key).await,
    };
    if let Err(err) = kept {
        tracing::warn!(key, error = %err, "idempotency answer not kept; a retry may produce the event again");
    }
    respond(result)
}

fn respond(result: Result<Accepted, ApiError>) -> Response {
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

/// Checks the event and produces it; `Ok` only once Kafka acknowledged it.
async fn produce(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Accepted, ApiError> {
    let event = state.events.prepare(body, now_ms())?;
    let unavailable = |reason: String| ApiError::Unavailable {
        reason,
        retry_after: RETRY_AFTER,
    };
    let value = state
        .codec
        .encode_value(&event.topic, event.value)
        .await
        .map_err(|err| unavailable(err.to_string()))?;
    let mut kafka_headers = OwnedHeaders::new()
        .insert(Header {
            key: "sluice.event_id",
            value: Some(&event.event_id),
        })
        .insert(Header {
            key: "sluice.event_type",
            value: Some(&event.event_type),
        });
    if let Some(traceparent) = headers
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
    {
        kafka_headers = kafka_headers.insert(Header {
            key: "traceparent",
            value: Some(traceparent),
        });
    }
    let record = FutureRecord::to(&event.topic)
        .key(&event.key)
        .payload(&value)
        .headers(kafka_headers);
    // The answer waits for acks=all: a 202 means the event is on Kafka. The
    // producer's message.timeout.ms is the ack timeout, so an event that was
    // refused here is not delivered later behind the client's back.
    match state.producer.send(record, state.ack_timeout).await {
        Ok(_) => Ok(Accepted {
            event_id: event.event_id,
            topic: event.topic,
        }),
        Err((err, _)) => Err(unavailable(format!(
            "Kafka did not acknowledge the event: {err}"
        ))),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
