//! sandbox: the stand-in for the external systems in tests and the demo —
//! the Google Sheets API v4 subset and its OAuth token endpoint, and the
//! Odoo JSON-RPC subset — keeping what it was sent, logging every request,
//! and failing on demand. Not deployed in production.
#![doc = include_str!("../README.md")]

pub mod a1;
mod admin;
pub mod faults;
mod json2;
pub mod keys;
mod local;
mod oauth;
mod odoo;
pub mod orm;
mod page;
mod sheets;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::Value;

pub use faults::Faults;
pub use keys::ServiceAccountKey;
pub use local::{Local, Port};
pub use oauth::TokenIssuer;
pub use odoo::OdooAccount;

use crate::faults::{FaultState, Refusal, Verdict};

/// The external APIs the sandbox plays.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// The OAuth2 token endpoint.
    Oauth,
    /// Google Sheets API v4.
    Sheets,
    /// Odoo JSON-RPC.
    Odoo,
}

/// A sheet's cells, row by row.
pub type Grid = Vec<Vec<Value>>;
/// Spreadsheet id → sheet title → grid.
pub type Spreadsheets = BTreeMap<String, BTreeMap<String, Grid>>;

/// One request as the sandbox saw it.
#[derive(Debug, Clone, Serialize)]
pub struct LoggedRequest {
    /// When it arrived, ms since the epoch.
    pub at_ms: i64,
    /// Which API.
    pub api: Api,
    /// e.g. `values.batchUpdate`, `create`, `token`.
    pub operation: &'static str,
    /// The status answered (Odoo errors are 200, with `note` naming them).
    pub status: u16,
    /// Whether it counted as a write.
    pub write: bool,
    /// The injected fault or the Odoo exception, if any.
    pub note: Option<&'static str>,
}

#[derive(Default)]
struct State {
    spreadsheets: Spreadsheets,
    erp: orm::Database,
    /// Spreadsheet id → who it is shared with (accounts and users).
    shared_with: HashMap<String, BTreeSet<String>>,
    /// Access token → when it expires (ms) and whom it acts for.
    tokens: HashMap<String, (i64, String)>,
    requests: Vec<LoggedRequest>,
    faults: BTreeMap<Api, FaultState>,
}

/// The sandbox: its data, its accounts and its faults.
pub struct Sandbox {
    state: Mutex<State>,
    issuer: TokenIssuer,
    odoo: OdooAccount,
}

/// What handlers share.
pub type AppState = Arc<Sandbox>;

/// An injected failure, answered in the API's own style.
pub struct Failure {
    status: u16,
    retry_after: Option<u64>,
    /// The body never ends ([`Faults::endless_error_body`]).
    endless: bool,
}

impl Failure {
    fn with_retry_after(&self, mut response: Response) -> Response {
        if self.endless {
            let status = response.status();
            response = (status, endless_page(status)).into_response();
        }
        if let Some(seconds) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }

    /// Google's error body.
    pub fn google(&self) -> Response {
        let message = match self.status {
            429 => {
                "Quota exceeded for quota metric 'Write requests' and limit 'Write requests per minute per user' of service 'sheets.googleapis.com'."
            }
            // What Google answers for a sheet not shared with the caller.
            403 => "The caller does not have permission",
            503 => "The service is currently unavailable.",
            _ => "Internal error encountered.",
        };
        self.with_retry_after(sheets::google_error(self.status, message).into_response())
    }

    /// A bare HTTP error, as a proxy in front of Odoo answers.
    pub fn plain(&self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        self.with_retry_after(
            (status, status.canonical_reason().unwrap_or("error")).into_response(),
        )
    }
}

/// A proxy's error page for `status` that never ends: 16 KiB every 10 ms
/// until the client hangs up (slow enough that a client reading it whole
/// holds a few MB a second, not gigabytes, until its timeout).
fn endless_page(status: StatusCode) -> axum::body::Body {
    let head = format!("<html><head><title>{status}</title></head><body><h1>{status}</h1>",);
    let filler = axum::body::Bytes::from("<p>upstream connect error</p>".repeat(560));
    let chunks = futures::stream::unfold(Some(head), move |head| {
        let filler = filler.clone();
        async move {
            let chunk = match head {
                Some(head) => axum::body::Bytes::from(head),
                None => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    filler
                }
            };
            Some((Ok::<_, std::convert::Infallible>(chunk), None))
        }
    });
    axum::body::Body::from_stream(chunks)
}

impl Sandbox {
    /// A sandbox that issues tokens to `issuer`'s account and accepts `odoo`.
    pub fn new(issuer: TokenIssuer, odoo: OdooAccount) -> AppState {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            issuer,
            odoo,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Creates a spreadsheet with these sheets (existing ones are kept),
    /// shared with the service account.
    pub fn create_spreadsheet(&self, id: &str, sheets: &[String]) {
        let mut state = self.lock();
        let spreadsheet = state.spreadsheets.entry(id.to_owned()).or_default();
        for title in sheets {
            spreadsheet.entry(title.clone()).or_default();
        }
        let account = self.issuer.account().to_lowercase();
        state
            .shared_with
            .entry(id.to_owned())
            .or_insert_with(|| BTreeSet::from([account]));
    }

    /// Shares a spreadsheet with exactly these accounts and users, as its
    /// owner does in the Share dialog; anyone else gets 403. E-mail
    /// addresses compare as Google compares them, ignoring case.
    pub fn share_only(&self, id: &str, principals: &[&str]) {
        let principals = principals.iter().map(|p| p.to_lowercase()).collect();
        self.lock().shared_with.insert(id.to_owned(), principals);
    }

    /// Whether `principal` may open spreadsheet `id` (one that does not
    /// exist is Google's 404, not a 403).
    fn shared(&self, id: &str, principal: &str) -> bool {
        let state = self.lock();
        !state.spreadsheets.contains_key(id)
            || state
                .shared_with
                .get(id)
                .is_some_and(|principals| principals.contains(&principal.to_lowercase()))
    }

    /// Applies latency and faults to a request; `Some` is the failure to
    /// answer (already logged).
    async fn admit(&self, api: Api, operation: &'static str, write: bool) -> Option<Failure> {
        let now = sluice_contracts::now_millis();
        let roll: f64 = rand::random();
        let (latency, verdict, endless) = {
            let mut state = self.lock();
            let faults = state.faults.entry(api).or_default();
            let endless = faults.faults().endless_error_body;
            (
                faults.latency(write),
                faults.judge(now, write, roll),
                endless,
            )
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match verdict {
            Verdict::Serve => None,
            Verdict::Fail {
                status,
                retry_after,
                reason,
            } => {
                self.record(api, operation, status, write, Some(reason));
                Some(Failure {
                    status,
                    retry_after,
                    endless,
                })
            }
        }
    }

    fn log(&self, api: Api, operation: &'static str, status: u16, note: Option<&'static str>) {
        self.record(api, operation, status, is_write(operation), note);
    }

    fn record(
        &self,
        api: Api,
        operation: &'static str,
        status: u16,
        write: bool,
        note: Option<&'static str>,
    ) {
        self.lock().requests.push(LoggedRequest {
            at_ms: sluice_contracts::now_millis(),
            api,
            operation,
            status,
            write,
            note,
        });
    }

    /// Issues a token acting for `principal`.
    fn issue_token(&self, principal: &str) -> serde_json::Value {
        let token = format!("sandbox.{}", uuid::Uuid::new_v4().simple());
        let expires = sluice_contracts::now_millis() + oauth::TOKEN_SECONDS * 1000;
        self.lock()
            .tokens
            .insert(token.clone(), (expires, principal.to_owned()));
        serde_json::json!({
            "access_token": token,
            "expires_in": oauth::TOKEN_SECONDS,
            "token_type": "Bearer"
        })
    }

    /// Whom a request's bearer token acts for, if it is valid.
    fn principal(&self, headers: &HeaderMap) -> Option<String> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))?;
        let state = self.lock();
        let (expires, principal) = state.tokens.get(token)?;
        (*expires > sluice_contracts::now_millis()).then(|| principal.clone())
    }

    fn with_spreadsheets<T>(&self, f: impl FnOnce(&mut Spreadsheets) -> T) -> T {
        f(&mut self.lock().spreadsheets)
    }

    fn with_erp<T>(&self, f: impl FnOnce(&mut orm::Database) -> T) -> T {
        f(&mut self.lock().erp)
    }

    /// The refused value among `rows`' cells and how it is refused, if the
    /// faults name one.
    /// The message is padded as the faults say.
    fn refused(&self, api: Api, rows: &[Vec<Value>]) -> Option<(Refusal, String)> {
        let state = self.lock();
        let faults = state.faults.get(&api)?;
        let (refusal, value) = rows
            .iter()
            .flatten()
            .filter_map(Value::as_str)
            .find_map(|v| faults.refuses(v).map(|refusal| (refusal, v)))?;
        let message = match refusal {
            Refusal::Invalid => format!("Invalid value at 'data.values': {value}"),
            Refusal::ServerError => "Internal error encountered.".to_owned(),
        };
        Some((refusal, faults.message(message)))
    }

    /// Odoo's UserError for a call of `method`, if the faults refuse it.
    fn refused_method(&self, method: &str) -> Option<orm::OdooError> {
        let state = self.lock();
        let faults = state.faults.get(&Api::Odoo)?;
        faults.refuses_method(method).then(|| {
            orm::OdooError::new(
                "odoo.exceptions.UserError",
                faults.message("No rule has been found to replenish the product".into()),
            )
        })
    }

    /// Odoo's error for a field value among `args` (at any depth: a line's
    /// too) that the faults name, if one is.
    fn refused_fields(&self, args: &[Value]) -> Option<orm::OdooError> {
        fn find<'a>(value: &'a Value, faults: &FaultState) -> Option<(Refusal, &'a str, &'a str)> {
            match value {
                Value::Object(values) => values.iter().find_map(|(field, v)| match v {
                    Value::String(text) => faults
                        .refuses(text)
                        .map(|refusal| (refusal, field.as_str(), text.as_str())),
                    other => find(other, faults),
                }),
                Value::Array(items) => items.iter().find_map(|v| find(v, faults)),
                _ => None,
            }
        }
        let state = self.lock();
        let faults = state.faults.get(&Api::Odoo)?;
        let (refusal, field, value) = args.iter().find_map(|arg| find(arg, faults))?;
        Some(match refusal {
            Refusal::Invalid => orm::OdooError::new(
                "odoo.exceptions.ValidationError",
                faults.message(format!("The value {value} is not valid for field {field}")),
            ),
            // What Odoo answers once its own retries of a concurrent
            // update (odoo/service/model.py, 5 tries) are spent.
            Refusal::ServerError => orm::OdooError::new(
                "psycopg2.errors.SerializationFailure",
                faults.message("could not serialize access due to concurrent update".into()),
            ),
        })
    }
}

/// Whether a logged operation writes (the quota counts these).
fn is_write(operation: &str) -> bool {
    matches!(
        operation,
        "values.append"
            | "values.batchUpdate"
            | "create"
            | "write"
            | "action_confirm"
            | "action_cancel"
            | "action_post"
            | "button_cancel"
            | "button_draft"
    )
}

/// Every route: the APIs and `/admin`.
pub fn router(app: AppState) -> Router {
    Router::new()
        .route("/token", post(oauth::token))
        .route(
            "/computeMetadata/v1/instance/service-accounts/default/{item}",
            get(oauth::metadata),
        )
        .route(
            "/v4/spreadsheets/{spreadsheet}/values/{range}",
            get(sheets::get).post(sheets::append),
        )
        .route(
            "/v4/spreadsheets/{spreadsheet}/values:batchUpdate",
            post(sheets::batch_update),
        )
        .route("/jsonrpc", post(odoo::jsonrpc))
        .route("/json/2/{model}/{method}", post(json2::call))
        .merge(admin::routes())
        .merge(page::routes())
        .layer(axum::middleware::from_fn(to_the_end))
        .with_state(app)
}

/// Google and Odoo finish a request whose client stopped waiting (a create
/// is committed after the client's timeout): each request is served on a
/// task of its own, which a dropped connection does not cancel.
async fn to_the_end(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    tokio::spawn(next.run(request))
        .await
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Serves the sandbox on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, app: AppState) -> std::io::Result<()> {
    axum::serve(listener, router(app)).await
}
