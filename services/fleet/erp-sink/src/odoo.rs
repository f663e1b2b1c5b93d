//! An Odoo external-API client over JSON-RPC (`POST /jsonrpc`): log in once
//! for the uid, then `execute_kw` on a model. Odoo answers its own errors
//! with HTTP 200 and an `error` object whose `data.name` is the Python
//! exception; that name decides whether a call may work next time.
//!
//! Every request goes through the circuit breaker and then the rate
//! limiter: the breaker judges the ERP request by request (a command takes
//! two), and an open breaker spends no token.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use reqwest::{Client, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use sluice_resilience::{
    BreakerError, CircuitBreaker, Classified, ErrorClass, RateLimiter, record_request, retry_after,
};
use tokio::sync::OnceCell;

/// Where and as whom the client logs in.
#[derive(Debug, Clone)]
pub struct OdooLogin {
    /// Base URL of the Odoo server (`/jsonrpc` is appended).
    pub url: String,
    /// Database name; also the rate limiter's target.
    pub database: String,
    /// Login.
    pub login: String,
    /// Password or API key.
    pub password: SecretString,
}

/// What went wrong with a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No answer: connection refused, reset, timed out.
    Transport(String),
    /// An HTTP error status.
    Http {
        /// The status.
        status: u16,
        /// Retry-After, if given.
        retry_after: Option<Duration>,
    },
    /// Odoo raised an exception.
    Server {
        /// The exception's class (`odoo.exceptions.ValidationError`).
        name: String,
        /// Its message.
        message: String,
    },
    /// The login was refused.
    LoginRefused,
    /// An answer that is not JSON-RPC.
    Malformed(String),
    /// The breaker is open: the ERP has been failing.
    BreakerOpen {
        /// When it lets a trial request through, if known.
        retry_in: Option<Duration>,
    },
}

/// A failed Odoo call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("odoo {operation}: {}", describe(failure))]
pub struct OdooError {
    /// What was being done (`sale.order.create`).
    pub operation: String,
    /// What went wrong.
    pub failure: Failure,
}

fn describe(failure: &Failure) -> String {
    match failure {
        Failure::Transport(message) | Failure::Malformed(message) => message.clone(),
        Failure::Http { status, .. } => format!("HTTP {status}"),
        Failure::Server { name, message } => format!("{name}: {message}"),
        Failure::LoginRefused => "login refused (database, login or password)".into(),
        Failure::BreakerOpen { .. } => "circuit breaker open: the ERP has been failing".into(),
    }
}

impl OdooError {
    /// A short code for results and dead letters (`ValidationError`, `http_500`).
    pub fn code(&self) -> String {
        match &self.failure {
            Failure::Transport(_) => "transport".into(),
            Failure::Http { status, .. } => format!("http_{status}"),
            Failure::Server { name, .. } => name.rsplit('.').next().unwrap_or(name).to_owned(),
            Failure::LoginRefused => "login_refused".into(),
            Failure::Malformed(_) => "malformed".into(),
            Failure::BreakerOpen { .. } => "breaker_open".into(),
        }
    }
}

impl Classified for OdooError {
    fn class(&self) -> ErrorClass {
        match &self.failure {
            Failure::Transport(_) | Failure::Malformed(_) => ErrorClass::Retryable,
            Failure::Http { status: 429, .. } => ErrorClass::Pause,
            Failure::Http {
                status: 408 | 500..=599,
                ..
            } => ErrorClass::Retryable,
            Failure::Http { .. } => ErrorClass::Permanent,
            // Wrong credentials fail every command alike: hold, do not
            // dead-letter the stream.
            Failure::LoginRefused | Failure::BreakerOpen { .. } => ErrorClass::Pause,
            Failure::Server { name, .. } => server_class(name),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match &self.failure {
            Failure::Http { retry_after, .. } => *retry_after,
            Failure::BreakerOpen { retry_in } => *retry_in,
            _ => None,
        }
    }
}

/// Odoo's exceptions: the database's transient conflicts (those Odoo
/// retries itself, odoo/constant.py, and answers once its five tries are
/// spent) may pass; the user errors (validation, missing record, access)
/// will not.
fn server_class(name: &str) -> ErrorClass {
    const TRANSIENT: [&str; 5] = [
        "psycopg2.errors.SerializationFailure",
        "psycopg2.errors.LockNotAvailable",
        "psycopg2.errors.DeadlockDetected",
        "psycopg2.OperationalError",
        "odoo.exceptions.ConcurrencyError",
    ];
    if name == "odoo.exceptions.AccessDenied" {
        ErrorClass::Pause
    } else if TRANSIENT.contains(&name) {
        ErrorClass::Retryable
    } else {
        ErrorClass::Permanent
    }
}

/// Calls Odoo's external API, guarded by the breaker and paced by the
/// limiter (keyed by database).
pub struct OdooClient {
    http: Client,
    login: OdooLogin,
    breaker: CircuitBreaker,
    limiter: Arc<RateLimiter>,
    uid: OnceCell<i64>,
    next_id: AtomicU64,
}

impl OdooClient {
    /// A client; it logs in on its first call.
    pub fn new(
        http: Client,
        login: OdooLogin,
        breaker: CircuitBreaker,
        limiter: Arc<RateLimiter>,
    ) -> Self {
        let url = format!("{}/jsonrpc", login.url.trim_end_matches('/'));
        Self {
            http,
            login: OdooLogin { url, ..login },
            breaker,
            limiter,
            uid: OnceCell::new(),
            next_id: AtomicU64::new(1),
        }
    }

    /// `search_read` with a domain of equalities: at most two records, the
    /// oldest first (two tell the caller the match is not unique).
    pub async fn search_read(
        &self,
        model: &str,
        domain: &[(&str, Value)],
        fields: &[&str],
    ) -> Result<Vec<Map<String, Value>>, OdooError> {
        let domain: Vec<Value> = domain
            .iter()
            .map(|(field, value)| json!([field, "=", value]))
            .collect();
        let found = self
            .execute(
                model,
                "search_read",
                json!([domain]),
                json!({"fields": fields, "limit": 2, "order": "id asc"}),
            )
            .await?;
        serde_json::from_value(found).map_err(|err| OdooError {
            operation: format!("{model}.search_read"),
            failure: Failure::Malformed(err.to_string()),
        })
    }

    /// `create`; the new record's id.
    pub async fn create(&self, model: &str, values: &Map<String, Value>) -> Result<i64, OdooError> {
        let created = self
            .execute(model, "create", json!([values]), json!({}))
            .await?;
        // Odoo 17 answers a list of ids for a list of values, older a number.
        let id = created
            .as_i64()
            .or_else(|| created.get(0).and_then(Value::as_i64));
        id.ok_or_else(|| OdooError {
            operation: format!("{model}.create"),
            failure: Failure::Malformed(format!("no record id in {created}")),
        })
    }

    /// `write` to one record.
    pub async fn write(
        &self,
        model: &str,
        id: i64,
        values: &Map<String, Value>,
    ) -> Result<(), OdooError> {
        self.execute(model, "write", json!([[id], values]), json!({}))
            .await
            .map(drop)
    }

    /// `fields_get`: each field's type, relation and whether it is required
    /// or read-only, by name.
    pub async fn fields_get(&self, model: &str) -> Result<Map<String, Value>, OdooError> {
        let fields = self
            .execute(
                model,
                "fields_get",
                json!([]),
                json!({"attributes": ["type", "relation", "required", "readonly"]}),
            )
            .await?;
        match fields {
            Value::Object(fields) => Ok(fields),
            other => Err(OdooError {
                operation: format!("{model}.fields_get"),
                failure: Failure::Malformed(format!("not a field map: {other}")),
            }),
        }
    }

    /// A model method on records (`action_confirm`, `action_cancel`), with
    /// a context; its answer.
    pub async fn call_on(
        &self,
        model: &str,
        method: &str,
        ids: &[i64],
        context: Value,
    ) -> Result<Value, OdooError> {
        self.execute(model, method, json!([ids]), json!({"context": context}))
            .await
    }

    async fn execute(
        &self,
        model: &str,
        method: &str,
        args: Value,
        kwargs: Value,
    ) -> Result<Value, OdooError> {
        let uid = self.uid().await?;
        let operation = format!("{model}.{method}");
        let params = json!({
            "service": "object",
            "method": "execute_kw",
            "args": [
                self.login.database,
                uid,
                self.login.password.expose_secret(),
                model,
                method,
                args,
                kwargs,
            ],
        });
        self.rpc(operation, params).await
    }

    async fn uid(&self) -> Result<i64, OdooError> {
        self.uid
            .get_or_try_init(|| async {
                let params = json!({
                    "service": "common",
                    "method": "authenticate",
                    "args": [
                        self.login.database,
                        self.login.login,
                        self.login.password.expose_secret(),
                        {},
                    ],
                });
                let answer = self.rpc("authenticate".into(), params).await?;
                answer.as_i64().ok_or(OdooError {
                    operation: "authenticate".into(),
                    failure: Failure::LoginRefused,
                })
            })
            .await
            .copied()
    }

    async fn rpc(&self, operation: String, params: Value) -> Result<Value, OdooError> {
        match self.breaker.call(self.request(&operation, params)).await {
            Ok(answer) => Ok(answer),
            Err(BreakerError::Call(err)) => Err(err),
            Err(BreakerError::Rejected(rejected)) => Err(OdooError {
                operation,
                failure: Failure::BreakerOpen {
                    retry_in: rejected.retry_in,
                },
            }),
        }
    }

    async fn request(&self, operation: &str, params: Value) -> Result<Value, OdooError> {
        let failed = |failure| OdooError {
            operation: operation.to_owned(),
            failure,
        };
        self.limiter.acquire(&self.login.database).await;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "method": "call", "id": id, "params": params});
        let started = std::time::Instant::now();
        let response = self.http.post(&self.login.url).json(&body).send().await;
        let elapsed = started.elapsed();
        let response = response.map_err(|err| {
            record_request("erp", operation, None, elapsed);
            failed(Failure::Transport(err.to_string()))
        })?;
        let status = response.status();
        record_request("erp", operation, Some(status.as_u16()), elapsed);
        if !status.is_success() {
            let header = response.headers().get(reqwest::header::RETRY_AFTER);
            let retry_after = retry_after(
                header.and_then(|v| v.to_str().ok()),
                SystemTime::now(),
                self.limiter.max_wait(),
            );
            if status == StatusCode::TOO_MANY_REQUESTS {
                let wait = retry_after.unwrap_or(Duration::from_secs(1));
                self.limiter.defer(&self.login.database, wait);
            }
            return Err(failed(Failure::Http {
                status: status.as_u16(),
                retry_after,
            }));
        }
        let mut answer: Value = response
            .json()
            .await
            .map_err(|err| failed(Failure::Malformed(err.to_string())))?;
        if let Some(error) = answer.get("error") {
            let data = &error["data"];
            let name = data["name"].as_str().unwrap_or("unknown").to_owned();
            let message = data["message"]
                .as_str()
                .or_else(|| error["message"].as_str())
                .unwrap_or_default()
                .to_owned();
            return Err(failed(Failure::Server { name, message }));
        }
        match answer.get_mut("result") {
            Some(result) => Ok(result.take()),
            None => Err(failed(Failure::Malformed(
                "neither result nor error".into(),
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(name: &str) -> OdooError {
        OdooError {
            operation: "sale.order.write".into(),
            failure: Failure::Server {
                name: name.into(),
                message: "m".into(),
            },
        }
    }

    #[test]
    fn odoo_errors_are_classified_by_exception() {
        assert_eq!(
            server("odoo.exceptions.ValidationError").class(),
            ErrorClass::Permanent
        );
        // The concurrency errors Odoo itself retries (odoo/constant.py
        // PG_CONCURRENCY_EXCEPTIONS_TO_RETRY) may pass on a later call.
        for transient in [
            "psycopg2.errors.SerializationFailure",
            "psycopg2.errors.LockNotAvailable",
            "psycopg2.errors.DeadlockDetected",
        ] {
            assert_eq!(
                server(transient).class(),
                ErrorClass::Retryable,
                "{transient}"
            );
        }
        assert_eq!(
            server("odoo.exceptions.AccessDenied").class(),
            ErrorClass::Pause
        );
        assert_eq!(
            server("odoo.exceptions.ValidationError").code(),
            "ValidationError"
        );
        let http = |status| OdooError {
            operation: "authenticate".into(),
            failure: Failure::Http {
                status,
                retry_after: None,
            },
        };
        assert_eq!(http(503).class(), ErrorClass::Retryable);
        assert_eq!(http(429).class(), ErrorClass::Pause);
        assert_eq!(http(404).class(), ErrorClass::Permanent);
    }
}
