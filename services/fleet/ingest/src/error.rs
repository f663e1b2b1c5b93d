//! Every failure of the API, mapped to its response in one place.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Why a request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or an unknown bearer token.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// A webhook delivery whose signature or signed timestamp does not pass
    /// (an unknown source answers as a wrong signature).
    #[error("{0}")]
    Refused(crate::signature::Refusal),
    /// The token may not post this event.
    #[error("{field}: {reason}")]
    Forbidden {
        /// Which field (`event_type`, `events[2].event_type`).
        field: String,
        /// Why.
        reason: String,
    },
    /// The body does not fit the contract.
    #[error("{field}: {reason}")]
    BadRequest {
        /// Which field, as a path (`payload.lines[1].quantity`).
        field: String,
        /// Why.
        reason: String,
    },
    /// An event its topic can never take; nothing of the request was produced.
    #[error("{field}: {reason}")]
    TooLarge {
        /// Which event (`events[1]`, or `$` for a single one).
        field: String,
        /// Its size and the limit.
        reason: String,
    },
    /// The token sent more requests than its budget.
    #[error("this token's request rate is above its limit; try again after Retry-After")]
    RateLimited {
        /// When a request will pass again.
        retry_after: Duration,
    },
    /// A request with the same Idempotency-Key is being handled.
    #[error("a request with this Idempotency-Key is being handled; try again shortly")]
    InProgress,
    /// The Idempotency-Key was used for a different request.
    #[error("this Idempotency-Key was used for a different request body")]
    KeyReused,
    /// Kafka ended a batch's commit without saying how: its events may be
    /// on Kafka. A retry with the same Idempotency-Key writes the same
    /// event ids, which consumers deduplicate.
    #[error(
        "the outcome is unknown: the events may be on Kafka; retry with the same Idempotency-Key"
    )]
    Undecided,
    /// Kafka or the registry cannot take the event now; nothing was accepted.
    #[error("{reason}")]
    Unavailable {
        /// What failed.
        reason: String,
        /// When to try again.
        retry_after: Duration,
    },
}

impl ApiError {
    /// A 400 naming `field`.
    pub fn bad_request(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::BadRequest {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The same error, its field placed under `prefix` (`events[3]`).
    pub fn within(self, prefix: &str) -> Self {
        match self {
            Self::BadRequest { field, reason } if field == "$" => Self::BadRequest {
                field: prefix.to_owned(),
                reason,
            },
            Self::BadRequest { field, reason } => Self::BadRequest {
                field: format!("{prefix}.{field}"),
                reason,
            },
            Self::Forbidden { field, reason } => Self::Forbidden {
                field: format!("{prefix}.{field}"),
                reason,
            },
            other => other,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            |status: StatusCode, value: serde_json::Value| (status, Json(value)).into_response();
        match self {
            Self::Unauthorized => body(
                StatusCode::UNAUTHORIZED,
                json!({ "error": self.to_string() }),
            ),
            Self::InProgress => {
                let mut response = body(StatusCode::CONFLICT, json!({ "error": self.to_string() }));
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
            Self::Undecided => body(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({ "error": self.to_string() }),
            ),
            Self::KeyReused => body(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({ "error": self.to_string() }),
            ),
            Self::Refused(refusal) => body(
                StatusCode::UNAUTHORIZED,
                json!({ "error": refusal.to_string() }),
            ),
            Self::RateLimited { retry_after } => {
                let mut response = body(
                    StatusCode::TOO_MANY_REQUESTS,
                    json!({ "error": self.to_string() }),
                );
                let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
                response
            }
            Self::TooLarge { field, reason } => body(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({ "error": reason, "field": field }),
            ),
            Self::Forbidden { field, reason } => body(
                StatusCode::FORBIDDEN,
                json!({ "error": reason, "field": field }),
            ),
            Self::BadRequest { field, reason } => body(
                StatusCode::BAD_REQUEST,
                json!({ "error": reason, "field": field }),
            ),
            Self::Unavailable {
                reason,
                retry_after,
            } => {
                let mut response = body(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({ "error": format!("not accepted, try again: {reason}") }),
                );
                if let Ok(seconds) =
                    HeaderValue::from_str(&retry_after.as_secs().max(1).to_string())
                {
                    response.headers_mut().insert(header::RETRY_AFTER, seconds);
                }
                response
            }
        }
    }
}
