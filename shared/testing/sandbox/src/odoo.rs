//! The subset of Odoo's external JSON-RPC API the ERP sink uses: `/jsonrpc`
//! with service `common` (`authenticate`, `login`) and service `object`
//! (`execute_kw` with `search`, `read`, `search_read`, `create`, `write`).
//! Errors come as Odoo sends them: HTTP 200 with an `error` object.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{Api, AppState, ErpRecords};

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

/// An Odoo exception: its class name and message.
struct OdooError {
    name: &'static str,
    message: String,
}

impl OdooError {
    fn new(name: &'static str, message: impl Into<String>) -> Self {
        Self {
            name,
            message: message.into(),
        }
    }
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

/// `POST /jsonrpc`.
pub async fn jsonrpc(State(app): State<AppState>, Json(call): Json<Call>) -> Response {
    let params = &call.params;
    let method = match params.args.get(4).and_then(Value::as_str) {
        Some(method) if params.service == "object" => method.to_owned(),
        _ => params.method.clone(),
    };
    let write = matches!(method.as_str(), "create" | "write");
    let operation: &'static str = match method.as_str() {
        "authenticate" | "login" => "authenticate",
        "search" => "search",
        "read" => "read",
        "search_read" => "search_read",
        "create" => "create",
        "write" => "write",
        _ => "other",
    };
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
            let rejected = app.rejects_fields(&args);
            app.with_erp(|records| execute(records, &model, method, &args, &kwargs, rejected))
        }
        (service, method) => Err(OdooError::new(
            "werkzeug.exceptions.NotFound",
            format!("no method {method} on service {service}"),
        )),
    }
}

fn execute(
    records: &mut ErpRecords,
    model: &str,
    method: &str,
    args: &[Value],
    kwargs: &Map<String, Value>,
    rejected: Option<String>,
) -> Result<Value, OdooError> {
    let fields = kwargs.get("fields").and_then(Value::as_array).cloned();
    match method {
        "search" | "search_read" => {
            let domain = args
                .first()
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let limit = kwargs
                .get("limit")
                .and_then(Value::as_u64)
                .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
            let ids: Vec<i64> = records
                .rows(model)
                .filter(|(_, record)| matches(record, &domain))
                .map(|(id, _)| *id)
                .take(limit)
                .collect();
            if method == "search" {
                Ok(json!(ids))
            } else {
                Ok(read(records, model, &ids, fields.as_deref()))
            }
        }
        "read" => {
            let ids: Vec<i64> = args
                .first()
                .and_then(Value::as_array)
                .map(|ids| ids.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default();
            Ok(read(records, model, &ids, fields.as_deref()))
        }
        "create" => {
            if let Some(reason) = rejected {
                return Err(OdooError::new("odoo.exceptions.ValidationError", reason));
            }
            let values = args
                .first()
                .and_then(Value::as_object)
                .cloned()
                .ok_or_else(|| {
                    OdooError::new(
                        "builtins.TypeError",
                        "create() missing 1 required positional argument: 'vals_list'",
                    )
                })?;
            Ok(json!(records.create(model, values)))
        }
        "write" => {
            if let Some(reason) = rejected {
                return Err(OdooError::new("odoo.exceptions.ValidationError", reason));
            }
            let ids: Vec<i64> = args
                .first()
                .and_then(Value::as_array)
                .map(|ids| ids.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default();
            let values = args
                .get(1)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            for id in &ids {
                if !records.update(model, *id, &values) {
                    return Err(OdooError::new(
                        "odoo.exceptions.MissingError",
                        format!(
                            "Record does not exist or has been deleted. (Record: {model}({id},))"
                        ),
                    ));
                }
            }
            Ok(json!(true))
        }
        other => Err(OdooError::new(
            "builtins.AttributeError",
            format!("type object '{model}' has no attribute '{other}'"),
        )),
    }
}

/// A domain of `[field, "=", value]` terms, all of which must hold (the
/// only form the sink sends).
fn matches(record: &Map<String, Value>, domain: &[Value]) -> bool {
    domain
        .iter()
        .all(|term| match term.as_array().map(Vec::as_slice) {
            Some([Value::String(field), Value::String(op), value]) if op == "=" => {
                record.get(field) == Some(value)
            }
            Some(
                [
                    Value::String(field),
                    Value::String(op),
                    Value::Array(values),
                ],
            ) if op == "in" => record.get(field).is_some_and(|v| values.contains(v)),
            _ => false,
        })
}

fn read(records: &ErpRecords, model: &str, ids: &[i64], fields: Option<&[Value]>) -> Value {
    let rows: Vec<Value> = ids
        .iter()
        .filter_map(|id| records.get(model, *id).map(|record| (id, record)))
        .map(|(id, record)| {
            let mut row = Map::new();
            row.insert("id".into(), json!(id));
            for (name, value) in record {
                let wanted = fields.is_none_or(|f| f.iter().any(|w| w.as_str() == Some(name)));
                if wanted {
                    row.insert(name.clone(), value.clone());
                }
            }
            Value::Object(row)
        })
        .collect();
    Value::Array(rows)
}
