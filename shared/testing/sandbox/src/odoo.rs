//! Odoo's external JSON-RPC API: `/jsonrpc` with service `common`
//! (`authenticate`, `login`) and service `object` (`execute_kw` on the
//! models [`crate::orm`] holds). Errors come as Odoo sends them
//! (odoo/http.py `serialize_exception`): HTTP 200 with an `error` object,
//! code 200, message "Odoo Server Error", `data.name` the exception's
//! module and class.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::orm::OdooError;
use crate::{Api, AppState};

/// The account the sandbox's Odoo accepts.
#[derive(Debug, Clone)]
pub struct OdooAccount {
    /// Database name.
    pub database: String,
    /// Login.
    pub login: String,
    /// Password (or API key).
    pub password: String,
}

/// The uid of the one user.
const UID: i64 = 2;

/// A JSON-RPC request.
#[derive(Debug, Deserialize)]
pub struct Call {
    #[serde(default)]
    id: Value,
    params: Params,
}

/// Its params.
#[derive(Debug, Deserialize)]
pub struct Params {
    service: String,
    method: String,
    #[serde(default)]
    args: Vec<Value>,
}

fn reply(id: &Value, result: Result<Value, OdooError>) -> Response {
    let body = match result {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(error) => json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {
                "code": 200,
                "message": "Odoo Server Error",
                "data": {
                    "name": error.name,
                    "debug": format!("Traceback (most recent call last):\n{}: {}", error.name, error.message),
                    "message": error.message,
                    "arguments": [error.message],
                    "context": {}
                }
            }
        }),
    };
    Json(body).into_response()
}

/// The request log's name of `method`.
pub(crate) fn operation(method: &str) -> &'static str {
    match method {
        "authenticate" | "login" => "authenticate",
        "search" => "search",
        "read" => "read",
        "search_read" => "search_read",
        "search_count" => "search_count",
        "create" => "create",
        "write" => "write",
        "fields_get" => "fields_get",
        "name_search" => "name_search",
        "action_confirm" => "action_confirm",
        "action_cancel" => "action_cancel",
        "action_post" => "action_post",
        "button_cancel" => "button_cancel",
        "button_draft" => "button_draft",
        _ => "other",
    }
}

/// `POST /jsonrpc`.
pub async fn jsonrpc(State(app): State<AppState>, Json(call): Json<Call>) -> Response {
    let params = &call.params;
    let method = match params.args.get(4).and_then(Value::as_str) {
        Some(method) if params.service == "object" => method.to_owned(),
        _ => params.method.clone(),
    };
    let operation = operation(&method);
    let write = crate::is_write(operation);
    if let Some(failure) = app.admit(Api::Odoo, operation, write).await {
        return failure.plain();
    }
    let result = serve(&app, params, &method);
    let note = result.as_ref().err().map(|e| e.name);
    let response = reply(&call.id, result);
    app.log(Api::Odoo, operation, 200, note);
    response
}

fn serve(app: &AppState, params: &Params, method: &str) -> Result<Value, OdooError> {
    let account = &app.odoo;
    let text = |i: usize| {
        params
            .args
            .get(i)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    match (params.service.as_str(), params.method.as_str()) {
        ("common", "authenticate" | "login") => {
            let valid = text(0) == account.database
                && text(1) == account.login
                && text(2) == account.password;
            Ok(if valid { json!(UID) } else { json!(false) })
        }
        ("object", "execute_kw") => {
            let uid = params.args.get(1).and_then(Value::as_i64);
            if text(0) != account.database || uid != Some(UID) || text(2) != account.password {
                return Err(OdooError::new(
                    "odoo.exceptions.AccessDenied",
                    "Access Denied",
                ));
            }
            let model = text(3).to_owned();
            let args = params
                .args
                .get(5)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let kwargs = params
                .args
                .get(6)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            if method == "create" && args.is_empty() {
                // execute_kw's create reads its values from args[0]
                // (odoo/api.py `_call_kw_model_create`), never by name.
                return Err(OdooError::new(
                    "builtins.IndexError",
                    "tuple index out of range",
                ));
            }
            if matches!(method, "create" | "write")
                && let Some(error) = app.refused_fields(&args)
            {
                return Err(error);
            }
            if let Some(error) = app.refused_method(method) {
                return Err(error);
            }
            app.with_erp(|records| records.call(&model, method, &args, &kwargs))
        }
        (service, method) => Err(OdooError::new(
            "werkzeug.exceptions.NotFound",
            format!("no method {method} on service {service}"),
        )),
    }
}
