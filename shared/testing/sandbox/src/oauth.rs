//! Google's OAuth2 token endpoint, JWT bearer grant (service accounts): the
//! assertion must be signed (RS256) by the configured account's key, issued
//! by it, addressed to this endpoint, unexpired, and ask for a scope; a
//! `sub` (domain-wide delegation) only where the account is allowed it, for
//! a user of the allowed domain. And the metadata server's token of the
//! workload's account (GKE Workload Identity), which answers only requests
//! that say `Metadata-Flavor: Google` and did not come through a proxy.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::json;

use crate::{Api, AppState};

/// Lifetime of an issued token, as Google's.
pub const TOKEN_SECONDS: i64 = 3600;

/// What a token request carries.
#[derive(Debug, Deserialize)]
pub struct TokenRequest {
    grant_type: String,
    assertion: String,
}

#[derive(Debug, Deserialize)]
struct Claims {
    iss: String,
    scope: String,
    sub: Option<String>,
}

/// The key and names tokens are checked against.
#[derive(Clone)]
pub struct TokenIssuer {
    key: DecodingKey,
    client_email: String,
    token_uri: String,
    /// The Workspace domain whose users the account may act for.
    delegation: Option<String>,
}

impl TokenIssuer {
    /// Checks assertions of `client_email` signed by `public_key_pem`.
    pub fn new(public_key_pem: &str, client_email: &str, token_uri: &str) -> Result<Self, String> {
        Ok(Self {
            key: DecodingKey::from_rsa_pem(public_key_pem.as_bytes()).map_err(|e| e.to_string())?,
            client_email: client_email.into(),
            token_uri: token_uri.into(),
            delegation: None,
        })
    }

    /// The account may act for the users of `domain`, as a Workspace admin
    /// allows a service account domain-wide delegation.
    #[must_use]
    pub fn with_delegation(mut self, domain: &str) -> Self {
        self.delegation = Some(domain.to_owned());
        self
    }

    /// The service account's e-mail.
    pub fn account(&self) -> &str {
        &self.client_email
    }

    /// Whom a token for `claims` acts for: the delegated user, or the
    /// account; the refusal is Google's (status, error, description).
    fn principal(&self, claims: Claims) -> Result<String, (StatusCode, &'static str, String)> {
        let Some(subject) = claims.sub else {
            return Ok(claims.iss);
        };
        match &self.delegation {
            None => Err((
                StatusCode::UNAUTHORIZED,
                "unauthorized_client",
                "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.".into(),
            )),
            Some(domain)
                if subject
                    .to_lowercase()
                    .strip_suffix(&domain.to_lowercase())
                    .is_some_and(|user| user.len() > 1 && user.ends_with('@')) =>
            {
                Ok(subject)
            }
            Some(_) => Err((
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "Invalid email or User ID".into(),
            )),
        }
    }

    fn verify(&self, assertion: &str) -> Result<Claims, String> {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[&self.token_uri]);
        validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
        let claims = jsonwebtoken::decode::<Claims>(assertion, &self.key, &validation)
            .map_err(|e| format!("Invalid JWT Signature or claims: {e}"))?
            .claims;
        if claims.iss != self.client_email {
            return Err(format!("Invalid issuer {:?}", claims.iss));
        }
        if claims.scope.trim().is_empty() {
            return Err("Invalid OAuth scope or ID token audience provided.".into());
        }
        Ok(claims)
    }
}

fn error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// `POST /token`.
pub async fn token(State(app): State<AppState>, Form(request): Form<TokenRequest>) -> Response {
    if let Some(failure) = app.admit(Api::Oauth, "token", false).await {
        return failure.google();
    }
    let response = if request.grant_type != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
        error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Invalid grant_type",
        )
    } else {
        let principal = app
            .issuer
            .verify(&request.assertion)
            .map_err(|reason| (StatusCode::BAD_REQUEST, "invalid_grant", reason))
            .and_then(|claims| app.issuer.principal(claims));
        match principal {
            Err((status, code, reason)) => error(status, code, &reason),
            Ok(principal) => {
                (StatusCode::OK, axum::Json(app.issue_token(&principal))).into_response()
            }
        }
    };
    app.log(Api::Oauth, "token", response.status().as_u16(), None);
    response
}

/// `GET /computeMetadata/v1/instance/service-accounts/default/{token,email}`:
/// the metadata server of a node whose workload is bound to the account.
pub async fn metadata(
    State(app): State<AppState>,
    Path(item): Path<String>,
    headers: HeaderMap,
) -> Response {
    let flavored = headers
        .get("metadata-flavor")
        .is_some_and(|v| v.as_bytes() == b"Google");
    let (operation, response) = if !flavored || headers.contains_key("x-forwarded-for") {
        // GCE's words; a proxied request is refused the same way.
        let text = format!(
            "Your client does not have permission to get URL /computeMetadata/v1/instance/service-accounts/default/{item} from this server. Missing Metadata-Flavor:Google header."
        );
        ("metadata", (StatusCode::FORBIDDEN, text).into_response())
    } else {
        match item.as_str() {
            "email" => (
                "metadata.email",
                app.issuer.account().to_owned().into_response(),
            ),
            "token" => {
                if let Some(failure) = app.admit(Api::Oauth, "metadata.token", false).await {
                    return failure.plain();
                }
                let token = app.issue_token(app.issuer.account());
                ("metadata.token", axum::Json(token).into_response())
            }
            _ => (
                "metadata",
                (StatusCode::NOT_FOUND, "Not Found").into_response(),
            ),
        }
    };
    app.log(Api::Oauth, operation, response.status().as_u16(), None);
    let mut response = response;
    response.headers_mut().insert(
        "metadata-flavor",
        axum::http::HeaderValue::from_static("Google"),
    );
    response
}
