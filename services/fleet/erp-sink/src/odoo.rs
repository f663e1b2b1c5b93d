//! An Odoo external-API client, over either of Odoo's protocols:
//! - JSON-RPC (`POST /jsonrpc`, Odoo 8 to 21): log in once for the uid, then
//!   `execute_kw` on a model. Odoo answers its own errors with HTTP 200 and
//!   an `error` object whose `data.name` is the Python exception.
//! - JSON-2 (`POST /json/2/<model>/<method>`, Odoo 19 on; JSON-RPC goes in
//!   22): an API key as `Authorization: bearer`, the method's parameters by
//!   name, its return value as the body; errors with an HTTP status and a
//!   JSON body whose `name` is the exception.
//!
//! Either way the exception's name decides whether a call may work next
//! time. Every request goes through the circuit breaker and then the rate
//! limiter: the breaker judges the ERP request by request (a command takes
//! two), and an open breaker spends no token.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use reqwest::{Client, Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use sluice_resilience::{
    BreakerError, CircuitBreaker, Classified, ErrorClass, RateLimiter, clipped, error_body,
    json_up_to, record_request, retry_after,
};
use tokio::sync::OnceCell;

/// The most of an answer read, in bytes: what the sink asks for (a
/// record's ids and fields, a model's `fields_get`) is kilobytes; a
/// JSON-RPC error, which Odoo answers with a 200, can list records by the
/// thousand. Beyond this, the answer is not Odoo's.
const MAX_ANSWER_BYTES: usize = 16 << 20;

/// Which of Odoo's external APIs the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Protocol {
    /// `/jsonrpc` with a login and a password (or an API key in its place).
    #[default]
    JsonRpc,
    /// `/json/2` with an API key (Odoo 19 and later); the login is unused.
    Json2,
}

/// Where and as whom the client logs in.
#[derive(Debug, Clone)]
pub struct OdooLogin {
    /// Base URL of the Odoo server (`/jsonrpc` or `/json/2/…` is appended).
    pub url: String,
    /// Which API.
    pub protocol: Protocol,
    /// Database name; also the rate limiter's target.
    pub database: String,
    /// Login.
    pub login: String,
    /// Password or API key (JSON-2: the API key).
    pub password: SecretString,
}

/// What went wrong with a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Odoo not reached: the connection refused or not made in time.
    Transport(String),
    /// Sent, and no answer came (timed out, the connection lost): Odoo may
    /// still be applying it.
    NoAnswer(String),
    /// A create that may have been committed without its answer reaching
    /// the sink (no answer, an answer cut short, a proxy's 502 or 504): not
    /// searched for again until Odoo has finished or killed the request.
    Unsettled {
        /// What came instead of the answer.
        cause: String,
        /// How long until then.
        settle: Duration,
    },
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
    /// A model or method name that is not one (from a command): not sent.
    InvalidName(String),
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
        Failure::Transport(message) | Failure::NoAnswer(message) | Failure::Malformed(message) => {
            message.clone()
        }
        Failure::Unsettled { cause, settle } => format!(
            "{cause}: a create Odoo may still commit; searched for again after {}s",
            settle.as_secs()
        ),
        Failure::Http { status, .. } => format!("HTTP {status}"),
        Failure::Server { name, message } => format!("{name}: {message}"),
        Failure::LoginRefused => "login refused (database, login, password or API key)".into(),
        Failure::InvalidName(name) => {
            format!("{name:?} is not an Odoo name (a-z, 0-9, _ and . only): not sent")
        }
        Failure::BreakerOpen { .. } => "circuit breaker open: the ERP has been failing".into(),
    }
}

impl OdooError {
    /// A create's failure after which Odoo may still commit it: held for
    /// `settle`. (Odoo answers its own exceptions after rolling back; a
    /// refused connection or a 503 never reached it.)
    fn unsettled(self, settle: Duration) -> Self {
        let cause = match &self.failure {
            Failure::NoAnswer(_)
            | Failure::Malformed(_)
            | Failure::Http {
                status: 502 | 504, ..
            } => describe(&self.failure),
            _ => return self,
        };
        Self {
            failure: Failure::Unsettled { cause, settle },
            ..self
        }
    }

    /// A short code for results and dead letters (`ValidationError`, `http_500`).
    pub fn code(&self) -> String {
        match &self.failure {
            Failure::Transport(_) => "transport".into(),
            Failure::NoAnswer(_) => "no_answer".into(),
            Failure::Unsettled { .. } => "unsettled".into(),
            Failure::Http { status, .. } => format!("http_{status}"),
            Failure::Server { name, .. } => name.rsplit('.').next().unwrap_or(name).to_owned(),
            Failure::LoginRefused => "login_refused".into(),
            Failure::Malformed(_) => "malformed".into(),
            Failure::InvalidName(_) => "invalid_name".into(),
            Failure::BreakerOpen { .. } => "breaker_open".into(),
        }
    }
}

impl Classified for OdooError {
    fn class(&self) -> ErrorClass {
        match &self.failure {
            Failure::Transport(_)
            | Failure::NoAnswer(_)
            | Failure::Unsettled { .. }
            | Failure::Malformed(_) => ErrorClass::Retryable,
            Failure::Http { status: 429, .. } => ErrorClass::Pause,
            Failure::Http {
                status: 408 | 500..=599,
                ..
            } => ErrorClass::Retryable,
            // No Odoo answered (a proxy, a wrong URL or database): every
            // command meets it alike; hold rather than dead-letter them.
            Failure::Http {
                status: 401 | 403 | 404,
                ..
            } => ErrorClass::Pause,
            Failure::Http { .. } | Failure::InvalidName(_) => ErrorClass::Permanent,
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
            Failure::Unsettled { settle, .. } => Some(*settle),
            _ => None,
        }
    }
}

/// Odoo's exceptions: the database's transient conflicts (those Odoo
/// retries itself, `PG_CONCURRENCY_EXCEPTIONS_TO_RETRY` in
/// odoo/service/model.py, odoo/constant.py from 19, and answers once its
/// five tries are spent) may pass; the user errors (validation, missing record, access)
/// will not.
fn server_class(name: &str) -> ErrorClass {
    const TRANSIENT: [&str; 7] = [
        "psycopg2.errors.SerializationFailure",
        "psycopg2.errors.LockNotAvailable",
        "psycopg2.errors.DeadlockDetected",
        // JSON-2's 409 for a record locked by another transaction.
        "odoo.exceptions.LockError",
        "werkzeug.exceptions.ServiceUnavailable",
        "psycopg2.OperationalError",
        "odoo.exceptions.ConcurrencyError",
    ];
    // The account's rights fail every command alike (a JSON-2 key's user
    // without the group, say): hold, do not dead-letter the stream.
    if name == "odoo.exceptions.AccessDenied" || name == "odoo.exceptions.AccessError" {
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
    settle: Duration,
}

/// Odoo's `limit_time_real` by default: a request still running after it
/// is killed, its transaction rolled back.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(120);

impl OdooClient {
    /// A client; it logs in on its first call.
    pub fn new(
        http: Client,
        login: OdooLogin,
        breaker: CircuitBreaker,
        limiter: Arc<RateLimiter>,
    ) -> Self {
        let url = login.url.trim_end_matches('/').to_owned();
        Self {
            http,
            login: OdooLogin { url, ..login },
            breaker,
            limiter,
            uid: OnceCell::new(),
            next_id: AtomicU64::new(1),
            settle: DEFAULT_SETTLE,
        }
    }

    /// How long a create that got no answer may still be committed by
    /// Odoo (its `limit_time_real`); the create is not searched for, nor
    /// made again, before.
    #[must_use]
    pub fn settle_after(self, settle: Duration) -> Self {
        Self { settle, ..self }
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
                None,
                json!({"domain": domain, "fields": fields, "limit": 2, "order": "id asc"}),
            )
            .await?;
        serde_json::from_value(found).map_err(|err| OdooError {
            operation: format!("{model}.search_read"),
            failure: Failure::Malformed(clipped(err.to_string())),
        })
    }

    /// `create`; the new record's id.
    pub async fn create(&self, model: &str, values: &Map<String, Value>) -> Result<i64, OdooError> {
        let created = self
            .execute(model, "create", None, json!({"vals_list": values}))
            .await
            .map_err(|err| err.unsettled(self.settle))?;
        // JSON-RPC answers one record's values with its id, JSON-2 with a
        // list of one.
        let id = created
            .as_i64()
            .or_else(|| created.get(0).and_then(Value::as_i64));
        id.ok_or_else(|| OdooError {
            operation: format!("{model}.create"),
            failure: Failure::Malformed(clipped(format!("no record id in {created}"))),
        })
    }

    /// `write` to one record.
    pub async fn write(
        &self,
        model: &str,
        id: i64,
        values: &Map<String, Value>,
    ) -> Result<(), OdooError> {
        self.execute(model, "write", Some(&[id]), json!({"vals": values}))
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
                None,
                json!({"attributes": ["type", "relation", "required", "readonly"]}),
            )
            .await?;
        match fields {
            Value::Object(fields) => Ok(fields),
            other => Err(OdooError {
                operation: format!("{model}.fields_get"),
                failure: Failure::Malformed(clipped(format!("not a field map: {other}"))),
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
        self.execute(model, method, Some(ids), json!({"context": context}))
            .await
    }

    /// Calls `method` of `model`, on the records `ids` or (none) on the
    /// model, with `params` by name.
    async fn execute(
        &self,
        model: &str,
        method: &str,
        ids: Option<&[i64]>,
        params: Value,
    ) -> Result<Value, OdooError> {
        let operation = format!("{model}.{method}");
        let mut params = match params {
            Value::Object(params) => params,
            _ => Map::new(),
        };
        if let Some(name) = [model, method].into_iter().find(|n| !is_name(n)) {
            // From a command: never let it make another URL (JSON-2's path).
            return Err(OdooError {
                operation,
                failure: Failure::InvalidName(name.to_owned()),
            });
        }
        match self.login.protocol {
            Protocol::JsonRpc => {
                // The records a method runs on, then its first parameter,
                // by position: execute_kw's create reads args[0]
                // (odoo/api.py), and overrides of write rename `vals`.
                let mut args: Vec<Value> = ids.map(|ids| json!(ids)).into_iter().collect();
                if let Some(first) = ["vals_list", "vals", "domain"]
                    .into_iter()
                    .find_map(|name| params.remove(name))
                {
                    args.push(first);
                }
                let uid = self.uid().await?;
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
                        params,
                    ],
                });
                self.rpc(operation, Call::JsonRpc(params)).await
            }
            Protocol::Json2 => {
                if let Some(ids) = ids {
                    params.insert("ids".into(), json!(ids));
                }
                let url = format!("{}/json/2/{model}/{method}", self.login.url);
                self.rpc(operation, Call::Json2 { url, params }).await
            }
        }
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
                let answer = self
                    .rpc("authenticate".into(), Call::JsonRpc(params))
                    .await?;
                answer.as_i64().ok_or(OdooError {
                    operation: "authenticate".into(),
                    failure: Failure::LoginRefused,
                })
            })
            .await
            .copied()
    }

    async fn rpc(&self, operation: String, call: Call) -> Result<Value, OdooError> {
        match self.breaker.call(self.request(&operation, call)).await {
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

    async fn request(&self, operation: &str, call: Call) -> Result<Value, OdooError> {
        let failed = |failure| OdooError {
            operation: operation.to_owned(),
            failure,
        };
        self.limiter.acquire(&self.login.database).await;
        let request = match &call {
            Call::JsonRpc(params) => {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let url = format!("{}/jsonrpc", self.login.url);
                self.http
                    .post(url)
                    .json(&json!({"jsonrpc": "2.0", "method": "call", "id": id, "params": params}))
            }
            Call::Json2 { url, params } => self
                .http
                .post(url)
                .bearer_auth(self.login.password.expose_secret())
                .header("X-Odoo-Database", &self.login.database)
                .json(params),
        };
        let started = std::time::Instant::now();
        let response = request.send().await;
        let elapsed = started.elapsed();
        let response = response.map_err(|err| {
            record_request("erp", operation, None, elapsed);
            failed(if err.is_connect() {
                Failure::Transport(err.to_string())
            } else {
                Failure::NoAnswer(err.to_string())
            })
        })?;
        let status = response.status();
        record_request("erp", operation, Some(status.as_u16()), elapsed);
        if !status.is_success() {
            return Err(failed(self.refusal(response).await));
        }
        let answer = json_up_to(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|why| failed(Failure::Malformed(why)))?;
        match call {
            Call::JsonRpc(_) => json_rpc_result(answer).map_err(failed),
            Call::Json2 { .. } => Ok(answer),
        }
    }

    /// What an answer with an error status means: the exception Odoo
    /// names in a JSON-2 body, else the status itself.
    async fn refusal(&self, response: Response) -> Failure {
        let status = response.status();
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
        if status == StatusCode::UNAUTHORIZED && self.login.protocol == Protocol::Json2 {
            return Failure::LoginRefused;
        }
        let body: Option<Value> = error_body(response).await.ok();
        let named = body.as_ref().and_then(|body| {
            let name = body.get("name")?.as_str()?;
            let message = body.get("message").and_then(Value::as_str);
            Some(Failure::Server {
                name: clipped(name),
                message: clipped(message.unwrap_or_default()),
            })
        });
        match named {
            // A proxy's or a gateway's status says more than a name would.
            Some(server) if status != StatusCode::TOO_MANY_REQUESTS => server,
            _ => Failure::Http {
                status: status.as_u16(),
                retry_after,
            },
        }
    }
}

/// Whether `name` can be an Odoo model or method name.
pub(crate) fn is_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
}

/// A request in one of the protocols.
enum Call {
    /// JSON-RPC `params`.
    JsonRpc(Value),
    /// A JSON-2 URL and its named parameters.
    Json2 {
        url: String,
        params: Map<String, Value>,
    },
}

/// JSON-RPC's `result`, or the exception in its `error`.
fn json_rpc_result(mut answer: Value) -> Result<Value, Failure> {
    if let Some(error) = answer.get("error") {
        let data = &error["data"];
        let name = clipped(data["name"].as_str().unwrap_or("unknown"));
        let message = data["message"]
            .as_str()
            .or_else(|| error["message"].as_str())
            .unwrap_or_default();
        return Err(Failure::Server {
            name,
            message: clipped(message),
        });
    }
    match answer.get_mut("result") {
        Some(result) => Ok(result.take()),
        None => Err(Failure::Malformed("neither result nor error".into())),
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
        // The concurrency errors Odoo itself retries
        // (PG_CONCURRENCY_EXCEPTIONS_TO_RETRY) may pass on a later call.
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
        // No Odoo answered (a proxy, a wrong URL or database): hold.
        for status in [401, 403, 404] {
            assert_eq!(http(status).class(), ErrorClass::Pause, "{status}");
        }
        assert_eq!(http(400).class(), ErrorClass::Permanent);
        assert_eq!(
            server("odoo.exceptions.AccessError").class(),
            ErrorClass::Pause
        );
        assert_eq!(
            server("odoo.exceptions.LockError").class(),
            ErrorClass::Retryable
        );
    }
}
