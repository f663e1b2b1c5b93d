//! Signed webhooks: `POST /v1/webhooks/{source}`, authenticated by the
//! signature scheme of its sender (see [`crate::signature`]) with the
//! source's secret, and mapped to a domain event by the source's
//! configuration. A delivery that comes again is answered with its first
//! answer and produces nothing.
//!
//! ```toml
//! [[source]]
//! name = "shop"                      # the {source} in the URL
//! scheme = "shopify"                 # sluice (default), github, stripe, shopify
//! secret_file = "/run/secrets/shop"  # or secret_env = "SHOP_WEBHOOK_SECRET"
//! aggregate_type = "orders"
//! event_type = "OrderPlaced"         # or event_type_pointer = "/type" with
//!                                    # event_types = ["OrderPlaced", …], what it may post
//! aggregate_id_pointer = "/order/id" # JSON pointers into the webhook body
//! payload_pointer = "/order/event"
//! event_id_pointer = "/delivery_id"  # optional: the sender's delivery id
//! tolerance_secs = 300               # signed timestamps this old pass (at most 900)
//! ```
//!
//! A source's aggregate and event types are checked against the contracts
//! when the file is loaded: the types it may post are its scope, as a
//! token's are (see [`crate::auth`]), so a leaked webhook secret cannot post
//! every event of the aggregate.
//!
//! With the `sluice` scheme the sender sets `X-Sluice-Timestamp` (Unix
//! seconds) and `X-Sluice-Signature: sha256=<hex of HMAC-SHA256(secret,
//! "<timestamp>.<body>")>`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value as Json;
use sluice_config::ConfigError;
use sluice_contracts::Catalog;

use crate::auth::{Scope, check_postable};
use crate::error::ApiError;
use crate::event::IncomingEvent;
use crate::signature::{MAX_TOLERANCE, Scheme, Verified};

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
    #[serde(default)]
    scheme: Scheme,
    secret_file: Option<PathBuf>,
    secret_env: Option<String>,
    aggregate_type: String,
    event_type: Option<String>,
    event_type_pointer: Option<String>,
    event_types: Option<Vec<String>>,
    aggregate_id_pointer: String,
    payload_pointer: String,
    event_id_pointer: Option<String>,
    tolerance_secs: Option<u64>,
}

/// One configured webhook sender.
#[derive(Debug)]
pub struct WebhookSource {
    scheme: Scheme,
    secret: SecretString,
    aggregate_type: String,
    event_type: EventType,
    /// The event types it may post.
    scope: Scope,
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
    /// environment variables; each source's event types checked against `catalog`.
    pub fn load(path: &Path, catalog: &Catalog) -> Result<Self, ConfigError> {
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
            let (event_type, postable) = match (
                source.event_type,
                source.event_type_pointer,
                source.event_types,
            ) {
                (Some(fixed), None, None) => (EventType::Fixed(fixed.clone()), vec![fixed]),
                (None, Some(pointer), Some(types)) if !types.is_empty() => {
                    (EventType::At(pointer), types)
                }
                (None, Some(_), _) => {
                    return Err(invalid(format!(
                        "source {name}: event_type_pointer lets the body name the event type; \
                         list the ones this source may post in event_types"
                    )));
                }
                (Some(_), None, Some(_)) => {
                    return Err(invalid(format!(
                        "source {name}: event_types goes with event_type_pointer; \
                         a source with a fixed event_type posts only that one"
                    )));
                }
                _ => {
                    return Err(invalid(format!(
                        "source {name}: set exactly one of event_type and event_type_pointer"
                    )));
                }
            };
            for event in &postable {
                check_postable(&source.aggregate_type, Some(event), catalog)
                    .map_err(|reason| invalid(format!("source {name}: {reason}")))?;
            }
            let scope = Scope::Only(
                postable
                    .into_iter()
                    .map(|event| (source.aggregate_type.clone(), Some(event)))
                    .collect(),
            );
            let tolerance = source
                .tolerance_secs
                .map_or(DEFAULT_TOLERANCE, Duration::from_secs);
            if tolerance > MAX_TOLERANCE {
                return Err(invalid(format!(
                    "source {name}: tolerance_secs {} is above {}: a captured delivery would stay replayable that long",
                    tolerance.as_secs(),
                    MAX_TOLERANCE.as_secs()
                )));
            }
            let source = WebhookSource {
                scheme: source.scheme,
                secret: SecretString::from(secret),
                aggregate_type: source.aggregate_type,
                event_type,
                scope,
                aggregate_id_pointer: source.aggregate_id_pointer,
                payload_pointer: source.payload_pointer,
                event_id_pointer: source.event_id_pointer,
                tolerance,
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
    /// A source with a fixed event type (tests, embedding): not checked
    /// against the contracts, as [`WebhookSources::load`] checks a file's.
    pub fn new(
        secret: SecretString,
        aggregate_type: &str,
        event_type: &str,
        aggregate_id_pointer: &str,
        payload_pointer: &str,
        event_id_pointer: Option<&str>,
    ) -> Self {
        Self {
            scheme: Scheme::Sluice,
            secret,
            aggregate_type: aggregate_type.to_owned(),
            event_type: EventType::Fixed(event_type.to_owned()),
            scope: Scope::Only(vec![(
                aggregate_type.to_owned(),
                Some(event_type.to_owned()),
            )]),
            aggregate_id_pointer: aggregate_id_pointer.to_owned(),
            payload_pointer: payload_pointer.to_owned(),
            event_id_pointer: event_id_pointer.map(str::to_owned),
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    /// The same source, signed with `scheme`.
    pub fn with_scheme(self, scheme: Scheme) -> Self {
        Self { scheme, ..self }
    }

    /// The event types it may post.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Checks the delivery's signature, then its signed timestamp (`now` in
    /// Unix seconds); `header` reads a request header.
    pub fn verify<'a>(
        &self,
        header: impl Fn(&str) -> Option<&'a str>,
        body: &[u8],
        now: i64,
    ) -> Result<Verified, ApiError> {
        self.scheme
            .verify(
                self.secret.expose_secret().as_bytes(),
                header,
                body,
                now,
                self.tolerance,
            )
            .map_err(ApiError::Refused)
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

    #[test]
    fn a_missing_pointer_is_named() {
        let err = source().to_event(br#"{"order": {}}"#).unwrap_err();
        assert_eq!(err.to_string(), "/id: is missing from the webhook body");
    }

    /// Loads a sources file of one source `s` whose event lines are `events`.
    fn load_one(events: &str) -> Result<WebhookSources, ConfigError> {
        let dir = std::env::temp_dir().join(format!(
            "sluice-webhooks-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("webhooks.toml");
        std::fs::write(
            &path,
            format!(
                "[[source]]\nname = \"s\"\nsecret_env = \"PATH\"\n{events}\n\
                 aggregate_id_pointer = \"/id\"\npayload_pointer = \"/order\"\n"
            ),
        )
        .unwrap();
        WebhookSources::load(&path, &Catalog::embedded().unwrap())
    }

    #[test]
    fn a_source_may_post_only_event_types_a_client_may_post() {
        for (events, reason) in [
            (
                "aggregate_type = \"order\"\nevent_type = \"OrderPlaced\"",
                "source s: no aggregate type \"order\" (no topic order.events.v1 is declared)",
            ),
            (
                "aggregate_type = \"orders\"\nevent_type = \"OrderShipped\"",
                "source s: orders.events.v1 has no event type \"OrderShipped\"",
            ),
            (
                "aggregate_type = \"orders\"\nevent_type_pointer = \"/type\"\n\
                 event_types = [\"OrderPlaced\", \"OrderConfirmed\"]",
                "source s: OrderConfirmed is emitted by Sluice itself; no client may post it",
            ),
            (
                "aggregate_type = \"orders\"\nevent_type_pointer = \"/type\"",
                "source s: event_type_pointer lets the body name the event type; \
                 list the ones this source may post in event_types",
            ),
            (
                "aggregate_type = \"orders\"\nevent_type_pointer = \"/type\"\nevent_types = []",
                "list the ones this source may post in event_types",
            ),
            (
                "aggregate_type = \"orders\"\nevent_type = \"OrderPlaced\"\n\
                 event_types = [\"OrderCancelled\"]",
                "source s: event_types goes with event_type_pointer",
            ),
        ] {
            let err = load_one(events).unwrap_err().to_string();
            assert!(err.contains(reason), "{events}: {err}");
        }
        let loaded = load_one(
            "aggregate_type = \"orders\"\nevent_type_pointer = \"/type\"\n\
             event_types = [\"OrderPlaced\", \"OrderCancelled\"]",
        )
        .unwrap();
        let scope = loaded.get("s").unwrap().scope();
        assert!(scope.allows("orders", "OrderCancelled"));
        assert!(!scope.allows("orders", "OrderConfirmed"));
    }

    #[test]
    fn a_tolerance_above_the_cap_is_refused_naming_the_source() {
        let dir = std::env::temp_dir().join(format!("sluice-webhooks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("webhooks.toml");
        std::fs::write(
            &path,
            r#"
[[source]]
name = "lenient"
scheme = "stripe"
secret_env = "PATH"
aggregate_type = "orders"
event_type = "OrderPlaced"
aggregate_id_pointer = "/id"
payload_pointer = "/order"
tolerance_secs = 86400
"#,
        )
        .unwrap();
        let err = WebhookSources::load(&path, &Catalog::embedded().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("source lenient: tolerance_secs 86400 is above 900"),
            "{err}"
        );
    }
}
