//! A Google API client as Google's own libraries behave: a service-account
//! key signs a JWT (RS256, with `sub` for domain-wide delegation) that the
//! key's `token_uri` exchanges for an access token, or, with no key, the
//! metadata server hands one out (GKE Workload Identity); cached and
//! refreshed before it expires; Sheets API v4 values calls with that token;
//! Google's error bodies read and classified.
//!
//! Hand-written on jsonwebtoken and the workspace's reqwest rather than
//! yup-oauth2 or gcp_auth: the exchange is one form POST, and those crates
//! bring a second HTTP stack (hyper-rustls) for it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Client, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_resilience::{
    BreakerError, CircuitBreaker, Classified, ErrorClass, MAX_SMALL_BODY, RateLimiter, body_up_to,
    clipped, error_body, json_up_to, record_request, retry_after,
};
use tokio::sync::Mutex;

/// The Sheets read-write scope.
pub const SCOPE: &str = "https://www.googleapis.com/auth/spreadsheets";
/// A token is renewed when it has less than this left.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// How Sheets takes the values written (`valueInputOption`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ValueInput {
    /// As they are: text stays text.
    Raw,
    /// As if a person typed them: `19.50` a number, `2026-12-05` a date.
    UserEntered,
}

impl ValueInput {
    fn as_str(self) -> &'static str {
        match self {
            Self::Raw => "RAW",
            Self::UserEntered => "USER_ENTERED",
        }
    }
}

/// A failed Google call.
#[derive(Debug, thiserror::Error)]
#[error("{operation}: {}{message}", status.map(|s| format!("HTTP {s}: ")).unwrap_or_default())]
pub struct GoogleError {
    /// What was being done.
    pub operation: &'static str,
    /// The HTTP status, if an answer came.
    pub status: Option<u16>,
    /// Google's message, or the transport error.
    pub message: String,
    /// Retry-After, if given.
    pub retry_after: Option<Duration>,
    /// Not sent: the breaker is open, Sheets has been failing.
    pub breaker_open: bool,
}

impl Classified for GoogleError {
    fn class(&self) -> ErrorClass {
        if self.breaker_open {
            return ErrorClass::Pause;
        }
        match self.status {
            // No token: a key, a delegation or a workload refused, or the
            // token endpoint (the node's metadata server) away. Nothing
            // about one command: hold the stream, spending no attempt.
            _ if self.operation == "token" => ErrorClass::Pause,
            // A success status with no answer in it (not JSON, never
            // ending, not the shape asked for): a proxy or a portal in the
            // way answers every call so. Hold the stream, as for a 403.
            Some(200..=299) => ErrorClass::Pause,
            // No answer (connect, timeout), 5xx, and 401 (the token is
            // renewed before the retry) may work next time.
            None | Some(401 | 408 | 500..=599) => ErrorClass::Retryable,
            // Quota (429, and the 403 rateLimitExceeded of older quotas), a
            // sheet not shared with the account, the API disabled: no
            // command can succeed until someone fixes it, and every one
            // would fail the same way. Hold the stream, spending no
            // attempt, instead of dead-lettering it.
            Some(403 | 429) => ErrorClass::Pause,
            Some(_) => ErrorClass::Permanent,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

/// A call Google refused for good is dead-lettered as permanent.
impl sluice_kafka::HandlerError for GoogleError {}

/// The fields of a service-account JSON key the client uses.
#[derive(Debug, Clone, Deserialize)]
pub struct ServiceAccountKey {
    /// Key id, the JWT's `kid`.
    pub private_key_id: String,
    /// PKCS#8 PEM.
    pub private_key: String,
    /// The account, the JWT's issuer.
    pub client_email: String,
    /// Where tokens come from, the JWT's audience.
    pub token_uri: String,
}

impl ServiceAccountKey {
    /// Reads a key file.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a service-account key: {e}", path.display()))
    }
}

/// Where access tokens come from.
enum Credentials {
    /// A service-account key: a JWT it signs is exchanged at its
    /// `token_uri`; with a `subject`, the token acts as that user of the
    /// Workspace domain (domain-wide delegation).
    Key {
        key: ServiceAccountKey,
        signing: EncodingKey,
        subject: Option<String>,
    },
    /// The metadata server of the node the workload runs on: tokens of the
    /// Google account bound to it (GKE Workload Identity, a GCE VM's
    /// account). No key file to leak or rotate.
    Metadata { base: String, account: String },
}

/// Access tokens for one account.
pub struct TokenSource {
    credentials: Credentials,
    http: Client,
    cached: Mutex<Option<(String, Instant)>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

/// The metadata server's header every request must carry (and the answer
/// carries back): it refuses requests without it, so a page that tricks a
/// browser or a proxy into a plain GET gets no token.
const METADATA_FLAVOR: (&str, &str) = ("Metadata-Flavor", "Google");

/// The most of a successful answer read, in bytes: the largest sheet
/// Google holds (10 million cells) read whole is about this; beyond, the
/// answer is not Google's.
const MAX_ANSWER_BYTES: usize = 256 << 20;

/// The default account's path on the metadata server.
const METADATA_ACCOUNT: &str = "/computeMetadata/v1/instance/service-accounts/default";

fn token_error(status: Option<u16>, message: String) -> GoogleError {
    GoogleError {
        breaker_open: false,
        operation: "token",
        status,
        // The token endpoint's body, or the metadata server's.
        message: clipped(message),
        retry_after: None,
    }
}

impl TokenSource {
    /// Tokens for `key`; with `subject`, acting as that user (the key's
    /// client id must be allowed domain-wide delegation of the Sheets
    /// scope in the Workspace admin console).
    pub fn new(
        key: ServiceAccountKey,
        subject: Option<String>,
        http: Client,
    ) -> Result<Self, String> {
        let signing = EncodingKey::from_rsa_pem(key.private_key.as_bytes())
            .map_err(|e| format!("service-account private_key: {e}"))?;
        Ok(Self {
            credentials: Credentials::Key {
                key,
                signing,
                subject,
            },
            http,
            cached: Mutex::new(None),
        })
    }

    /// Tokens from the metadata server at `host` (`host[:port]`, as
    /// Google's libraries read `GCE_METADATA_HOST`); asks it which account
    /// it serves first, so a workload without one fails at start, saying so.
    /// A server that does not answer yet (GKE's, in a pod's first seconds)
    /// is asked again for up to `patience`.
    pub async fn metadata(
        host: &str,
        http: Client,
        patience: Duration,
    ) -> Result<Self, GoogleError> {
        let base = format!("http://{host}{METADATA_ACCOUNT}");
        let deadline = Instant::now() + patience;
        let account = loop {
            match metadata_account(&http, host, &base).await {
                Err(err)
                    if matches!(err.status, None | Some(500..=599))
                        && Instant::now() < deadline =>
                {
                    tracing::info!(error = %err, "the metadata server does not answer yet");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                answer => break answer?,
            }
        };
        // GKE answers a Kubernetes service account bound to no Google
        // account with the workload pool's name: its tokens open no sheet.
        if account.ends_with(".svc.id.goog") {
            return Err(token_error(
                None,
                format!(
                    "the metadata server at {host} serves the workload pool {account}, not a Google service account: bind the pod's Kubernetes service account to one (iam.gke.io/gcp-service-account) or give --service-account"
                ),
            ));
        }
        Ok(Self {
            credentials: Credentials::Metadata { base, account },
            http,
            cached: Mutex::new(None),
        })
    }

    /// A valid token, fetched when none is cached or it is about to expire.
    pub async fn token(&self) -> Result<String, GoogleError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, renew_at)) = cached.as_ref()
            && *renew_at > Instant::now()
        {
            return Ok(token.clone());
        }
        let (token, lifetime) = self.fetch().await?;
        // The metadata server hands out its cached token until it has
        // minutes left: a fixed margin would renew such a token on every
        // call, so a short-lived one is kept for half its life.
        let renew_at = Instant::now() + lifetime - REFRESH_MARGIN.min(lifetime / 2);
        *cached = Some((token.clone(), renew_at));
        Ok(token)
    }

    /// The user the calls are made as (the quota user): the delegated
    /// subject, or the account itself.
    pub fn account(&self) -> &str {
        match &self.credentials {
            Credentials::Key {
                subject: Some(subject),
                ..
            } => subject,
            Credentials::Key { key, .. } => &key.client_email,
            Credentials::Metadata { account, .. } => account,
        }
    }

    /// The Google account behind the tokens (the key's, or the node's),
    /// whoever it acts for: what metrics name, as a user's e-mail address is
    /// personal data.
    pub fn service_account(&self) -> &str {
        match &self.credentials {
            Credentials::Key { key, .. } => &key.client_email,
            Credentials::Metadata { account, .. } => account,
        }
    }

    /// Forgets the cached token (after a 401).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    async fn fetch(&self) -> Result<(String, Duration), GoogleError> {
        let request = match &self.credentials {
            Credentials::Key {
                key,
                signing,
                subject,
            } => {
                let assertion = assertion(key, signing, subject.as_deref())?;
                self.http.post(&key.token_uri).form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", assertion.as_str()),
                ])
            }
            Credentials::Metadata { base, .. } => self
                .http
                .get(metadata_token_url(base)?)
                .header(METADATA_FLAVOR.0, METADATA_FLAVOR.1),
        };
        let response = request
            .send()
            .await
            .map_err(|e| token_error(None, e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            let body = error_body(response).await;
            return Err(token_error(
                Some(status.as_u16()),
                body.map_or_else(|text| text, |json| json.to_string()),
            ));
        }
        let body = body_up_to(response, MAX_SMALL_BODY)
            .await
            .map_err(|e| token_error(Some(status.as_u16()), format!("token answer: {e}")))?;
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| token_error(Some(status.as_u16()), format!("token answer: {e}")))?;
        Ok((answer.access_token, Duration::from_secs(answer.expires_in)))
    }
}

/// The account the metadata server serves (its `email`).
async fn metadata_account(http: &Client, host: &str, base: &str) -> Result<String, GoogleError> {
    let answer = http
        .get(format!("{base}/email"))
        .header(METADATA_FLAVOR.0, METADATA_FLAVOR.1)
        .send()
        .await
        .map_err(|e| token_error(None, format!("the metadata server at {host}: {e}")))?;
    let status = answer.status();
    let body = body_up_to(answer, MAX_SMALL_BODY).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    if !status.is_success() {
        return Err(token_error(
            Some(status.as_u16()),
            format!("the metadata server at {host} names no account: {text}"),
        ));
    }
    Ok(text.trim().to_owned())
}

/// The metadata server's token URL, asking for the Sheets scope.
fn metadata_token_url(base: &str) -> Result<reqwest::Url, GoogleError> {
    let mut url = reqwest::Url::parse(&format!("{base}/token"))
        .map_err(|e| token_error(None, format!("{base}/token: {e}")))?;
    url.query_pairs_mut().append_pair("scopes", SCOPE);
    Ok(url)
}

/// The JWT a key signs to ask for a token (for `subject`, if given).
fn assertion(
    key: &ServiceAccountKey,
    signing: &EncodingKey,
    subject: Option<&str>,
) -> Result<String, GoogleError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut claims = json!({
        "iss": key.client_email,
        "scope": SCOPE,
        "aud": key.token_uri,
        "iat": now,
        "exp": now + 3600,
    });
    if let Some(subject) = subject {
        claims["sub"] = json!(subject);
    }
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(key.private_key_id.clone());
    jsonwebtoken::encode(&header, &claims, signing)
        .map_err(|e| token_error(None, format!("signing the assertion: {e}")))
}

/// Sheets API v4 `spreadsheets.values`, every request paced by the limiter.
/// Sheets' quotas count per user, and a service account is one user: the
/// bucket is the account's, whichever spreadsheet a request writes.
pub struct SheetsClient {
    base_url: String,
    http: Client,
    tokens: TokenSource,
    limiter: Arc<RateLimiter>,
    breaker: CircuitBreaker,
    backoff: Backoff,
}

/// Google's truncated exponential backoff, for refusals that say nothing of
/// when to come back (a 429 without Retry-After, a 403, a refused token):
/// `min(2^n s + random ms below 1000, 64 s)` after the n-th refusal in a
/// row (https://developers.google.com/sheets/api/limits#exponential).
#[derive(Debug, Default)]
struct Backoff {
    refusals: std::sync::atomic::AtomicU32,
}

/// The longest wait between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(64);

impl Backoff {
    /// The wait after one more refusal.
    fn next(&self) -> Duration {
        let n = self
            .refusals
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .min(6);
        let wait = Duration::from_secs(1 << n) + Duration::from_millis(fastrand::u64(..1000));
        wait.min(MAX_BACKOFF)
    }

    /// A call went through.
    fn reset(&self) {
        self.refusals.store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

impl SheetsClient {
    /// A client of the API at `base_url` (`https://sheets.googleapis.com`),
    /// each request paced by `limiter` and guarded by `breaker`.
    pub fn new(
        base_url: &str,
        http: Client,
        tokens: TokenSource,
        limiter: Arc<RateLimiter>,
        breaker: CircuitBreaker,
    ) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            http,
            tokens,
            limiter,
            breaker,
            backoff: Backoff::default(),
        }
    }

    /// The rows of `range` (A1), as Google returns them.
    pub async fn get(
        &self,
        spreadsheet: &str,
        range: &str,
    ) -> Result<Vec<Vec<Value>>, GoogleError> {
        let url = format!(
            "{}/v4/spreadsheets/{spreadsheet}/values/{}",
            self.base_url,
            encode(range)
        );
        let mut body = self
            .call("values.get", spreadsheet, self.http.get(url))
            .await?;
        // Google names the range it read, and leaves `values` out when it
        // holds none; an answer without the range is not one.
        let named = matches!(body.get("range"), Some(Value::String(_)));
        let rows = match body.get_mut("values") {
            _ if !named => Err("no range named".to_owned()),
            None => Ok(Vec::new()),
            Some(values) => serde_json::from_value(values.take()).map_err(|err| err.to_string()),
        };
        rows.map_err(|why| {
            let why = format!("the answer is not a range's values: {why}");
            self.unanswered("values.get", spreadsheet, StatusCode::OK, why)
        })
    }

    /// A success status with no answer in it: held like a 403 (every
    /// call meets it), backing off, and logged.
    fn unanswered(
        &self,
        operation: &'static str,
        spreadsheet: &str,
        status: StatusCode,
        why: String,
    ) -> GoogleError {
        let wait = self.backoff.next();
        tracing::error!(spreadsheet, operation, error = %why, wait_ms = wait.as_millis() as u64,
            "a success status without an answer (a proxy or a portal between the sink and Google?); holding the stream");
        GoogleError {
            operation,
            status: Some(status.as_u16()),
            message: clipped(format!("{operation}: {why}")),
            retry_after: Some(wait),
            breaker_open: false,
        }
    }

    /// Appends `rows` after the table in `range`; returns the updated range.
    pub async fn append(
        &self,
        spreadsheet: &str,
        range: &str,
        rows: &[Vec<Value>],
        input: ValueInput,
    ) -> Result<String, GoogleError> {
        let url = format!(
            "{}/v4/spreadsheets/{spreadsheet}/values/{}:append?valueInputOption={}&insertDataOption=INSERT_ROWS",
            self.base_url,
            encode(range),
            input.as_str(),
        );
        let body = self
            .call(
                "values.append",
                spreadsheet,
                self.http.post(url).json(&json!({"values": rows})),
            )
            .await?;
        Ok(body["updates"]["updatedRange"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// Writes each (range, rows) in one request.
    pub async fn batch_update(
        &self,
        spreadsheet: &str,
        data: &[(String, Vec<Vec<Value>>)],
        input: ValueInput,
    ) -> Result<(), GoogleError> {
        let url = format!(
            "{}/v4/spreadsheets/{spreadsheet}/values:batchUpdate",
            self.base_url
        );
        let data: Vec<Value> = data
            .iter()
            .map(|(range, values)| json!({"range": range, "values": values}))
            .collect();
        self.call(
            "values.batchUpdate",
            spreadsheet,
            self.http
                .post(url)
                .json(&json!({"valueInputOption": input.as_str(), "data": data})),
        )
        .await
        .map(drop)
    }

    async fn call(
        &self,
        operation: &'static str,
        spreadsheet: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Value, GoogleError> {
        let account = self.tokens.account();
        let service_account = self.tokens.service_account();
        let token = match self.tokens.token().await {
            Ok(token) => token,
            Err(mut err) if err.class() == ErrorClass::Pause => {
                let wait = self.backoff.next();
                metrics::counter!("sluice_sheets_refused_total", "reason" => "token", "account" => service_account.to_owned())
                    .increment(1);
                tracing::error!(account, error = %err, wait_ms = wait.as_millis() as u64,
                    "the token endpoint refuses the credentials (a key revoked or deleted, a clock off, a delegation not allowed, a workload bound to no account); holding the stream");
                err.retry_after = Some(wait);
                return Err(err);
            }
            Err(err) => return Err(err),
        };
        match self
            .breaker
            .call(self.send(operation, spreadsheet, request, token))
            .await
        {
            Ok(body) => Ok(body),
            Err(BreakerError::Call(err)) => Err(err),
            Err(BreakerError::Rejected(rejected)) => Err(GoogleError {
                operation,
                status: None,
                message: rejected.to_string(),
                retry_after: rejected.retry_in,
                breaker_open: true,
            }),
        }
    }

    /// One request, paced by the account's limiter; what Google's answer
    /// means for the account (a 429 defers its bucket, a 401 renews the
    /// token, a 403 backs off).
    async fn send(
        &self,
        operation: &'static str,
        spreadsheet: &str,
        request: reqwest::RequestBuilder,
        token: String,
    ) -> Result<Value, GoogleError> {
        let failed =
            |status: Option<u16>, message: String, retry_after: Option<Duration>| GoogleError {
                operation,
                status,
                message,
                retry_after,
                breaker_open: false,
            };
        let account = self.tokens.account();
        self.limiter.acquire(self.tokens.account()).await;
        let started = std::time::Instant::now();
        let response = request.bearer_auth(token).send().await;
        let elapsed = started.elapsed();
        let response = response.map_err(|e| {
            record_request("sheets", operation, None, elapsed);
            failed(None, e.to_string(), None)
        })?;
        let status = response.status();
        record_request("sheets", operation, Some(status.as_u16()), elapsed);
        let header = response.headers().get(reqwest::header::RETRY_AFTER);
        let retry_after = retry_after(
            header.and_then(|v| v.to_str().ok()),
            SystemTime::now(),
            self.limiter.max_wait(),
        );
        if status.is_success() {
            // Unread or unreadable, an answer is no answer: taken for an
            // empty one, a read made every key look new.
            return match json_up_to(response, MAX_ANSWER_BYTES).await {
                Ok(body) => {
                    self.backoff.reset();
                    Ok(body)
                }
                Err(why) => Err(self.unanswered(operation, spreadsheet, status, why)),
            };
        }
        let message = match error_body(response).await {
            Ok(body) => clipped(
                body["error"]["message"]
                    .as_str()
                    .map_or_else(|| body.to_string(), str::to_owned),
            ),
            Err(text) => text,
        };
        let retry_after = match status {
            StatusCode::UNAUTHORIZED => {
                self.tokens.invalidate().await;
                retry_after
            }
            StatusCode::TOO_MANY_REQUESTS => {
                // Google asked for a pause: the account's bucket waits, as
                // long as it said or, as it usually says nothing, backing off.
                let wait = retry_after.unwrap_or_else(|| self.backoff.next());
                self.limiter.defer(account, wait);
                Some(wait)
            }
            StatusCode::FORBIDDEN => {
                let wait = self.backoff.next();
                metrics::counter!("sluice_sheets_refused_total", "reason" => "forbidden", "account" => self.tokens.service_account().to_owned())
                    .increment(1);
                tracing::error!(spreadsheet, account, error = %message, wait_ms = wait.as_millis() as u64,
                    "Google refuses the account access to the spreadsheet: share it with the account (editor) and check the Sheets API is enabled for the key's project; holding the stream");
                Some(wait)
            }
            _ => retry_after,
        };
        Err(failed(Some(status.as_u16()), message, retry_after))
    }
}

/// Percent-encodes a range for a URL path segment (`Orders!A:A`).
fn encode(range: &str) -> String {
    range
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
