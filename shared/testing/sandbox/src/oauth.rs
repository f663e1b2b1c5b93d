//! Google's OAuth2 token endpoint, JWT bearer grant (service accounts): the
//! assertion must be signed (RS256) by the configured account's key, issued
//! by it, addressed to this endpoint, unexpired, and ask for a scope.

use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
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
}

/// The key and names tokens are checked against.
#[derive(Clone)]
pub struct TokenIssuer {
    key: DecodingKey,
    client_email: String,
    token_uri: String,
}

impl TokenIssuer {
    /// Checks assertions of `client_email` signed by `public_key_pem`.
    pub fn new(public_key_pem: &str, client_email: &str, token_uri: &str) -> Result<Self, String> {
        Ok(Self {
            key: DecodingKey::from_rsa_pem(public_key_pem.as_bytes()).map_err(|e| e.to_string())?,
            client_email: client_email.into(),
            token_uri: token_uri.into(),
        })
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
        match app.issuer.verify(&request.assertion) {
            Err(reason) => error(StatusCode::BAD_REQUEST, "invalid_grant", &reason),
            Ok(_) => {
                let token = format!("sandbox.{}", uuid::Uuid::new_v4().simple());
                app.store_token(&token, TOKEN_SECONDS);
                (
                    StatusCode::OK,
                    axum::Json(json!({
                        "access_token": token,
                        "expires_in": TOKEN_SECONDS,
                        "token_type": "Bearer"
                    })),
                )
                    .into_response()
            }
        }
    };
    app.log(Api::Oauth, "token", response.status().as_u16(), None);
    response
}
