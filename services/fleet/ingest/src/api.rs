//! The events API. Every route answers 202 only once Kafka has every event
//! of the request (acks=all, a batch committed in one transaction); any
//! other answer means none of them is on Kafka for readers.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sluice_avro::AvroCodec;
use sluice_contracts::now_millis;
use sluice_kafka::AuditLog;
use sluice_resilience::RateLimiter;
use tracing::Instrument;

use crate::auth::{Caller, Scope, TokenHashes};
use crate::error::ApiError;
use crate::event::{EventIds, EventRouter, Prepared};
use crate::idempotency::{Claim, IdempotencyKey, IdempotencyStore};
use crate::publish::{Outgoing, PublishError, Publisher};
use crate::signature::Refusal;
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
    /// Puts events on Kafka, a batch in one transaction.
    pub publisher: Publisher,
    /// Answers to requests that carried an `Idempotency-Key`.
    pub idempotency: IdempotencyStore,
    /// Signed webhook senders.
    pub webhooks: WebhookSources,
    /// Each token's request budget, keyed by its hash.
    pub per_token: RateLimiter,
    /// Where webhooks accepted and refused are recorded.
    pub audit: AuditLog,
    /// How many refused webhooks the audit trail takes.
    pub refusals: crate::trail::RefusalBudget,
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
    let span = request_span("/v1/events", &headers);
    detached(
        async move { submit(&state, &headers, &body, Submission::One).await },
        span,
    )
    .await
}

async fn accept_batch(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let span = request_span("/v1/events/batch", &headers);
    detached(
        async move { submit(&state, &headers, &body, Submission::Batch).await },
        span,
    )
    .await
}

/// Handles a request to its end even when its client goes away: hyper
/// drops a request's future when the connection closes, and dropped midway
/// it would leave a Kafka transaction open (holding read_committed readers
/// back until it times out), a batch producer out of the pool for good, and
/// an Idempotency-Key claim pending.
async fn detached(
    handling: impl std::future::Future<Output = Response> + Send + 'static,
    span: tracing::Span,
) -> Response {
    match tokio::spawn(handling.instrument(span)).await {
        Ok(response) => response,
        Err(err) => {
            tracing::error!(error = %err, "handling a request panicked");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({
                    "error": "internal error; the outcome is unknown: retry with the same Idempotency-Key"
                })),
            )
                .into_response()
        }
    }
}

/// The span of one request, in the trace its client sent (`traceparent`)
/// or a new one; the events it produces carry it on.
fn request_span(route: &'static str, headers: &HeaderMap) -> tracing::Span {
    let span = tracing::info_span!("POST", http.route = route, otel.kind = "server");
    sluice_telemetry::join_remote_trace(&span, |name| {
        headers.get(name).and_then(|value| value.to_str().ok())
    });
    span
}

async fn accept_webhook(
    State(state): State<Arc<AppState>>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let span = request_span("/v1/webhooks/{source}", &headers);
    detached(
        async move {
            let (response, delivery) = webhook(&state, &source, &headers, &body).await;
            let delivery = delivery.as_deref();
            crate::trail::refused(&state.audit, &state.refusals, &source, delivery, response).await
        },
        span,
    )
    .await
}

/// Verifies a delivery, then answers it once: a delivery that comes again
/// (a sender's retry, or a replay within the window) gets the first answer.
/// The delivery's id comes back too, once its signature is verified.
async fn webhook(
    state: &AppState,
    source: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> (Response, Option<String>) {
    // An unknown source answers exactly as a wrong signature: a prober
    // learns nothing about which sources exist.
    let Some(webhook) = state.webhooks.get(source) else {
        return (ApiError::Refused(Refusal::Signature).into_response(), None);
    };
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let verified = match webhook.verify(header, body, unix_now()) {
        Ok(verified) => verified,
        Err(err) => return (err.into_response(), None),
    };
    let key = IdempotencyKey::delivery(source, &verified.delivery);
    let delivery = &verified.delivery;
    let response = once(state, &key, body, |ids| async move {
        let event = state.events.prepare_incoming(
            webhook.to_event(body)?,
            now_millis(),
            ids.id(0),
            webhook.scope(),
        )?;
        let record = crate::trail::accepted(&state.audit, source, delivery, &event)
            .await
            .map_err(|err| {
                tracing::warn!(error = %err, "encoding a webhook's audit record");
                unavailable("the schema registry cannot encode the delivery's audit record now")
            })?;
        let accepted = produce(state, headers, vec![event], &[record], Submission::One).await?;
        Ok(json!(accepted[0]))
    })
    .await;
    (response, Some(verified.delivery))
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
    let Some(Caller {
        token_sha256,
        scope,
    }) = token.and_then(|token| state.tokens.accepts(token))
    else {
        return ApiError::Unauthorized.into_response();
    };
    if let Err(wait) = state
        .per_token
        .try_acquire(&hex::encode(&token_sha256[..8]))
    {
        return ApiError::RateLimited { retry_after: wait }.into_response();
    }
    let Some(header) = headers.get(IDEMPOTENCY_KEY) else {
        return respond(answer(state, headers, body, submission, scope, EventIds::Random).await);
    };
    match IdempotencyKey::parse(token_sha256, header.as_bytes()) {
        Ok(key) => {
            once(state, &key, body, |ids| {
                answer(state, headers, body, submission, scope, ids)
            })
            .await
        }
        Err(err) => err.into_response(),
    }
}

/// Answers a request once per key: the first request with `key` runs
/// `work`, given event ids derived from the key; later ones get its answer.
async fn once<'a, F, Fut>(
    state: &AppState,
    key: &'a IdempotencyKey,
    body: &[u8],
    work: F,
) -> Response
where
    F: FnOnce(EventIds<'a>) -> Fut,
    Fut: std::future::Future<Output = Result<Value, ApiError>>,
{
    let claim = match state.idempotency.claim(key, &Sha256::digest(body)).await {
        Ok(claim) => claim,
        Err(err) => {
            tracing::warn!(error = %err, "idempotency store");
            return unavailable("the idempotency store is not reachable").into_response();
        }
    };
    let claim_id = match claim {
        Claim::New(claim_id) => claim_id,
        Claim::Replay { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (status, [("idempotent-replayed", "true")], Json(body)).into_response();
        }
        Claim::InProgress => return ApiError::InProgress.into_response(),
        Claim::Mismatch => return ApiError::KeyReused.into_response(),
    };
    let work = work(EventIds::Derived {
        token_sha256: key.token_sha256(),
        key: key.as_str(),
    });
    // Renewed beside the work, never in its way (a slow store must not
    // delay the answer).
    let renewing = async {
        loop {
            tokio::time::sleep(state.idempotency.renew_every()).await;
            match state.idempotency.renew(key, claim_id).await {
                Ok(true) => {}
                Ok(false) => tracing::warn!(key = key.as_str(), "idempotency claim was taken over"),
                Err(err) => {
                    tracing::warn!(key = key.as_str(), error = %err, "idempotency claim not renewed");
                }
            }
        }
    };
    let result = tokio::select! {
        result = work => result,
        never = renewing => never,
    };
    // Keep the answer only once it is final; a failure gives the key back.
    let kept = match &result {
        Ok(accepted) => state
            .idempotency
            .complete(key, claim_id, StatusCode::ACCEPTED.as_u16(), accepted)
            .await
            .map(|kept| {
                if !kept {
                    tracing::warn!(
                        key = key.as_str(),
                        "idempotency claim was taken over before its answer was kept"
                    );
                }
            }),
        Err(_) => state.idempotency.release(key, claim_id).await,
    };
    if let Err(err) = kept {
        tracing::warn!(key = key.as_str(), error = %err, "idempotency answer not kept; a retry produces the same event ids again");
    }
    respond(result)
}

async fn answer(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    submission: Submission,
    scope: &Scope,
    ids: EventIds<'_>,
) -> Result<Value, ApiError> {
    match submission {
        Submission::One => {
            let event = state.events.prepare(body, now_millis(), ids, scope)?;
            Ok(json!(
                produce(state, headers, vec![event], &[], submission).await?[0]
            ))
        }
        Submission::Batch => {
            let events = state.events.prepare_batch(body, now_millis(), ids, scope)?;
            let accepted = produce(state, headers, events, &[], submission).await?;
            Ok(json!({ "accepted": accepted }))
        }
    }
}

fn respond(result: Result<Value, ApiError>) -> Response {
    match result {
        Ok(accepted) => (StatusCode::ACCEPTED, Json(accepted)).into_response(),
        Err(err) => err.into_response(),
    }
}

/// A 503: `reason` says which dependency, never its internals (those are logged).
fn unavailable(reason: &str) -> ApiError {
    ApiError::Unavailable {
        reason: reason.to_owned(),
        retry_after: RETRY_AFTER,
    }
}

/// Produces checked events, and `records` of them after them in the same
/// transaction; `Ok` only once Kafka has every one of them. Their order in
/// the request is kept, so per-aggregate order holds.
async fn produce(
    state: &AppState,
    headers: &HeaderMap,
    events: Vec<Prepared>,
    records: &[Outgoing],
    submission: Submission,
) -> Result<Vec<Accepted>, ApiError> {
    // The request's span as the events' parent; without a tracing pipeline,
    // the client's own context passed on as it came.
    let mut trace: Vec<(&'static str, String)> =
        sluice_telemetry::child_span_context_headers(&tracing::Span::current())
            .into_iter()
            .filter_map(|(key, value)| {
                let key = ["traceparent", "tracestate"]
                    .into_iter()
                    .find(|k| *k == key)?;
                Some((key, String::from_utf8(value).ok()?))
            })
            .collect();
    if trace.is_empty()
        && let Some(traceparent) = headers.get("traceparent").and_then(|v| v.to_str().ok())
    {
        trace.push(("traceparent", traceparent.to_owned()));
    }
    let mut outgoing = Vec::with_capacity(events.len());
    let mut accepted = Vec::with_capacity(events.len());
    let mut flows = Vec::with_capacity(events.len());
    for event in events {
        let value = state
            .codec
            .encode_value(&event.topic, &event.contract, event.value)
            .await
            .map_err(|err| {
                tracing::warn!(topic = event.topic, error = %err, "encoding an accepted event");
                unavailable("the schema registry cannot encode the event now")
            })?;
        let mut kafka_headers = vec![
            ("sluice.event_id", event.event_id.clone()),
            ("sluice.event_type", event.event_type),
        ];
        kafka_headers.extend(trace.iter().cloned());
        let flow = event.correlation_id.filter(|id| !id.is_empty());
        if let Some(id) = &flow {
            kafka_headers.push((sluice_telemetry::CORRELATION_ID_HEADER, id.clone()));
        }
        flows.push(flow);
        accepted.push(Accepted {
            event_id: event.event_id,
            topic: event.topic.clone(),
        });
        outgoing.push(Outgoing {
            topic: event.topic,
            key: event.key,
            value,
            headers: kafka_headers,
        });
    }
    outgoing.extend(records.iter().cloned());
    match state.publisher.publish(&outgoing).await {
        Ok(()) => {
            let trace_id = sluice_telemetry::trace_id(&tracing::Span::current());
            for (event, flow) in accepted.iter().zip(&flows) {
                tracing::debug!(
                    event_id = event.event_id,
                    topic = event.topic,
                    correlation_id = flow.as_deref(),
                    trace_id = trace_id.as_deref(),
                    "accepted"
                );
            }
            Ok(accepted)
        }
        Err(PublishError::TooLarge { index, reason }) => Err(ApiError::TooLarge {
            field: match submission {
                Submission::One => "$".to_owned(),
                Submission::Batch => format!("events[{index}]"),
            },
            reason,
        }),
        Err(PublishError::Unavailable(reason)) => {
            tracing::warn!(error = reason, "Kafka did not take a request's events");
            Err(unavailable("Kafka did not take the events"))
        }
        Err(PublishError::Undecided(reason)) => {
            tracing::error!(error = reason, "a batch's commit ended undecided");
            Err(ApiError::Undecided)
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
