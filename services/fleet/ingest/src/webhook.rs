//! Signed webhooks: `POST /v1/webhooks/{source}`, authenticated by an
//! HMAC-SHA256 signature over `timestamp.body` with the source's secret, and
//! mapped to a domain event by the source's configuration.
//!
//! ```toml
//! [[source]]
//! name = "shop"                      # the {source} in the URL
//! secret_file = "/run/secrets/shop"  # or secret_env = "SHOP_WEBHOOK_SECRET"
//! aggregate_type = "orders"
//! event_type = "OrderPlaced"         # or event_type_pointer = "/type"
//! aggregate_id_pointer = "/order/id" # JSON pointers into the webhook body
//! payload_pointer = "/order/event"
//! event_id_pointer = "/delivery_id"  # optional: the sender's delivery id
//! ```
//!
//! The sender sets `X-Sluice-Timestamp` (Unix seconds) and
//! `X-Sluice-Signature: sha256=<hex of HMAC-SHA256(secret, "<timestamp>.<body>")>`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value as Json;
use sha2::Sha256;
use sluice_config::ConfigError;

use crate::error::ApiError;
use crate::event::IncomingEvent;

/// How far a signed timestamp may be from now, by default.
const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceFile {
    source: Vec<SourceConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceConfig {
    name: String,
    secret_file: Option<PathBuf>,
    secret_env: Option<String>,
    aggregate_type: String,
    event_type: Option<String>,
    event_type_pointer: Option<String>,
    aggregate_id_pointer: String,
    payload_pointer: String,
    event_id_pointer: Option<String>,
    tolerance_secs: Option<u64>,
}

/// One configured webhook sender.
#[derive(Debug)]
pub struct WebhookSource {
    secret: SecretString,
    aggregate_type: String,
    event_type: EventType,
    aggregate_id_pointer: String,
    payload_pointer: String,
    event_id_pointer: Option<String>,
    tolerance: Duration,
}

#[derive(Debug)]
enum EventType {
    Fixed(String),
    At(String),
}

/// Every configured webhook sender, by name.
#[derive(Debug, Default)]
pub struct WebhookSources(HashMap<String, WebhookSource>);

impl WebhookSources {
    /// Reads the sources file (`--webhooks`); its secrets from their files or
    /// environment variables.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            setting: "webhooks",
            reason,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|err| invalid(format!("cannot read {}: {err}", path.display())))?;
        let file: SourceFile =
            toml::from_str(&text).map_err(|err| invalid(format!("{}: {err}", path.display())))?;
        let mut sources = HashMap::new();
        for source in file.source {
            let name = source.name.clone();
            let secret = match (&source.secret_file, &source.secret_env) {
                (Some(file), None) => std::fs::read_to_string(file)
                    .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
                    .map_err(|err| {
                        invalid(format!(
                            "source {name}: cannot read {}: {err}",
                            file.display()
                        ))
                    })?,
                (None, Some(var)) => std::env::var(var).map_err(|_| {
                    invalid(format!(
                        "source {name}: environment variable {var} is not set"
                    ))
                })?,
                _ => {
                    return Err(invalid(format!(
                        "source {name}: set exactly one of secret_file and secret_env"
                    )));
                }
            };
            let event_type = match (source.event_type, source.event_type_pointer) {
                (Some(fixed), None) => EventType::Fixed(fixed),
                (None, Some(pointer)) => EventType::At(pointer),
                _ => {
                    return Err(invalid(format!(
                        "source {name}: set exactly one of event_type and event_type_pointer"
                    )));
                }
            };
            let source = WebhookSource {
                secret: SecretString::from(secret),
                aggregate_type: source.aggregate_type,
                event_type,
                aggregate_id_pointer: source.aggregate_id_pointer,
                payload_pointer: source.payload_pointer,
                event_id_pointer: source.event_id_pointer,
                tolerance: source
                    .tolerance_secs
                    .map_or(DEFAULT_TOLERANCE, Duration::from_secs),
            };
            if sources.insert(name.clone(), source).is_some() {
                return Err(invalid(format!("source {name} is declared twice")));
            }
        }
        Ok(Self(sources))
    }

    /// The source of that name.
    pub fn get(&self, name: &str) -> Option<&WebhookSource> {
        self.0.get(name)
    }

    /// Sources built in code (tests, embedding).
    pub fn from_sources(sources: impl IntoIterator<Item = (String, WebhookSource)>) -> Self {
        Self(sources.into_iter().collect())
    }
}

impl WebhookSource {
    /// A source with a fixed event type.
    pub fn new(
        secret: SecretString,
        aggregate_type: &str,
        event_type: &str,
        aggregate_id_pointer: &str,
        payload_pointer: &str,
        event_id_pointer: Option<&str>,
    ) -> Self {
        Self {
            secret,
            aggregate_type: aggregate_type.to_owned(),
            event_type: EventType::Fixed(event_type.to_owned()),
            aggregate_id_pointer: aggregate_id_pointer.to_owned(),
            payload_pointer: payload_pointer.to_owned(),
            event_id_pointer: event_id_pointer.map(str::to_owned),
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    /// Checks the signature and the timestamp's freshness (`now` in Unix
    /// seconds); the comparison is constant-time.
    pub fn verify(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: u64,
    ) -> Result<(), ApiError> {
        let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
            return Err(ApiError::Unauthorized);
        };
        let sent: u64 = timestamp.parse().map_err(|_| ApiError::Unauthorized)?;
        if now.abs_diff(sent) > self.tolerance.as_secs() {
            return Err(ApiError::Unauthorized);
        }
        let expected = signature
            .strip_prefix("sha256=")
            .and_then(|hex| hex::decode(hex).ok())
            .ok_or(ApiError::Unauthorized)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret.expose_secret().as_bytes())
            .map_err(|_| ApiError::Unauthorized)?;
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(&expected)
            .map_err(|_| ApiError::Unauthorized)
    }

    /// The domain event a verified webhook body stands for.
    pub fn to_event(&self, body: &[u8]) -> Result<IncomingEvent, ApiError> {
        let json: Json = serde_json::from_slice(body)
            .map_err(|err| ApiError::bad_request("$", err.to_string()))?;
        let at = |pointer: &str| {
            json.pointer(pointer)
                .ok_or_else(|| ApiError::bad_request(pointer, "is missing from the webhook body"))
        };
        let text = |pointer: &str| -> Result<String, ApiError> {
            match at(pointer)? {
                Json::String(s) => Ok(s.clone()),
                Json::Number(n) => Ok(n.to_string()),
                _ => Err(ApiError::bad_request(
                    pointer,
                    "must be a string or a number",
                )),
            }
        };
        Ok(IncomingEvent {
            aggregate_type: self.aggregate_type.clone(),
            aggregate_id: text(&self.aggregate_id_pointer)?,
            event_type: match &self.event_type {
                EventType::Fixed(name) => name.clone(),
                EventType::At(pointer) => text(pointer)?,
            },
            payload: at(&self.payload_pointer)?.clone(),
            event_id: self.event_id_pointer.as_deref().map(text).transpose()?,
            occurred_at: None,
            correlation_id: None,
            causation_id: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> WebhookSource {
        WebhookSource::new(
            SecretString::from("s3cret".to_owned()),
            "orders",
            "OrderPlaced",
            "/id",
            "/order",
            None,
        )
    }

    fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn a_fresh_correct_signature_passes() {
        let body = br#"{"id": "o-1"}"#;
        source()
            .verify(
                Some("1000"),
                Some(&sign("s3cret", "1000", body)),
                body,
                1100,
            )
            .unwrap();
    }

    #[test]
    fn wrong_secret_body_or_stale_timestamp_fail() {
        let body = br#"{"id": "o-1"}"#;
        let s = source();
        assert!(
            s.verify(Some("1000"), Some(&sign("other", "1000", body)), body, 1000)
                .is_err()
        );
        assert!(
            s.verify(
                Some("1000"),
                Some(&sign("s3cret", "1000", body)),
                br#"{"id": "o-2"}"#,
                1000
            )
            .is_err()
        );
        assert!(
            s.verify(
                Some("1000"),
                Some(&sign("s3cret", "1000", body)),
                body,
                1000 + 301
            )
            .is_err()
        );
        assert!(
            s.verify(None, Some(&sign("s3cret", "1000", body)), body, 1000)
                .is_err()
        );
        assert!(
            s.verify(Some("1000"), Some("sha256=zz"), body, 1000)
                .is_err()
        );
    }

    #[test]
    fn a_missing_pointer_is_named() {
        let err = source().to_event(br#"{"order": {}}"#).unwrap_err();
        assert_eq!(err.to_string(), "/id: is missing from the webhook body");
    }
}
