//! Odoo 19's External JSON-2 API: `POST /json/2/<model>/<method>`, an API
//! key as `Authorization: bearer`, the method's parameters by name in a JSON
//! object (`ids` for the records a method runs on, `context`), its return
//! value as the body. Errors use HTTP statuses and Odoo's JSON error
//! (odoo/http.py `Json2Dispatcher.handle_error`): 401 for a missing or bad
//! key, 404 for an unknown model, method or record, 403 for access, 422 for
//! a user error or wrong parameters, 500 for the rest, each with `name`,
//! `message`, `arguments`, `context` and `debug`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::orm::{OdooError, schema};
use crate::{Api, AppState};

/// The parameters each served method takes by name, and whether it runs on
/// records (`ids`) or on the model (`@api.model`, which refuses `ids`).
fn signature(model: &str, method: &str) -> Option<(bool, &'static [&'static str])> {
    Some(match method {
        "create" => (false, &["vals_list"]),
        "search" => (false, &["domain", "offset", "limit", "order"]),
        "search_read" => (false, &["domain", "fields", "offset", "limit", "order"]),
        "search_count" => (false, &["domain", "limit"]),
        "fields_get" => (false, &["allfields", "attributes"]),
        "name_search" => (false, &["name", "domain", "operator", "limit"]),
        "read" => (true, &["fields", "load"]),
        "write" => (true, &["vals"]),
        "action_confirm" | "action_cancel" if model == "sale.order" => (true, &[]),
        "action_post" | "button_cancel" | "button_draft" if model == "account.move" => (true, &[]),
        _ => return None,
    })
}

/// An error as the JSON-2 dispatcher sends it.
fn error(status: u16, name: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({
        "name": name,
        "message": message,
        "arguments": [message, status.as_u16()],
        "context": {},
        "debug": format!("Traceback (most recent call last):\n{name}: {message}"),
    });
    let mut response = (status, Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("bearer"),
        );
    }
    response
}

/// The status Odoo gives an exception the method raised
/// (`odoo/exceptions.py` `http_status`).
fn status_of(error: &OdooError) -> u16 {
    match error.name {
        "odoo.exceptions.UserError" | "odoo.exceptions.ValidationError" => 422,
        "odoo.exceptions.AccessError" | "odoo.exceptions.AccessDenied" => 403,
        "odoo.exceptions.MissingError" => 404,
        _ => 500,
    }
}

/// `POST /json/2/{model}/{method}`.
pub async fn call(
    State(app): State<AppState>,
    Path((model, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let operation = crate::odoo::operation(&method);
    let write = crate::is_write(operation);
    if let Some(failure) = app.admit(Api::Odoo, operation, write).await {
        return failure.plain();
    }
    let (response, note) = match answer(&app, &model, &method, &headers, &body) {
        Ok(response) => (response, None),
        Err(raised) => (
            error(status_of(&raised), raised.name, &raised.message),
            Some(raised.name),
        ),
    };
    app.log(Api::Odoo, operation, response.status().as_u16(), note);
    response
}

/// The answer, or the exception the method raised.
fn answer(
    app: &AppState,
    model: &str,
    method: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, OdooError> {
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(char::is_whitespace))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim());
    let unauthorized = |message| error(401, "werkzeug.exceptions.Unauthorized", message);
    match key {
        None => {
            return Ok(unauthorized(
                "User not authenticated, use an API Key with a Bearer Authorization header.",
            ));
        }
        Some(key) if key != app.odoo.password => return Ok(unauthorized("Invalid apikey")),
        Some(_) => {}
    }
    let database = headers.get("x-odoo-database").and_then(|v| v.to_str().ok());
    if database.is_some_and(|database| database != app.odoo.database) {
        // No such database: Odoo serves its database-less 404 page.
        return Ok((StatusCode::NOT_FOUND, "Not Found").into_response());
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json && !body.is_empty() {
        return Ok((StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported Media Type").into_response());
    }
    let mut params = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(params)) => params,
        // A body that is not an object is ignored, as Odoo does.
        Ok(_) => Map::new(),
        Err(_) if body.is_empty() => Map::new(),
        Err(_) => {
            return Ok(error(
                400,
                "werkzeug.exceptions.BadRequest",
                "could not parse the body as json",
            ));
        }
    };
    if schema::model(model).is_none() {
        let message = format!("the model '{model}' does not exist");
        return Ok(error(404, "werkzeug.exceptions.NotFound", &message));
    }
    let Some((on_records, names)) = signature(model, method) else {
        let message = format!("The method '{model}.{method}' does not exist");
        return Ok(error(404, "werkzeug.exceptions.NotFound", &message));
    };
    let ids = params.remove("ids");
    if ids.is_some() && !on_records {
        let message = format!("cannot call {model}.{method} with ids");
        return Ok(error(
            422,
            "werkzeug.exceptions.UnprocessableEntity",
            &message,
        ));
    }
    let context = params.remove("context");
    if let Some(unexpected) = params.keys().find(|k| !names.contains(&k.as_str())) {
        let message = format!("{method}() got an unexpected keyword argument '{unexpected}'");
        return Ok(error(
            422,
            "werkzeug.exceptions.UnprocessableEntity",
            &message,
        ));
    }
    // A single record's values are a list of one.
    if let Some(values) = params.get_mut("vals_list")
        && values.is_object()
    {
        *values = Value::Array(vec![values.take()]);
    }
    if let Some(context) = context {
        params.insert("context".into(), context);
    }
    let args: Vec<Value> = ids.into_iter().collect();
    let values: Vec<Value> = params.values().cloned().collect();
    if matches!(method, "create" | "write")
        && let Some(refused) = app.refused_fields(&values)
    {
        return Err(refused);
    }
    if let Some(refused) = app.refused_method(method) {
        return Err(refused);
    }
    let result = app.with_erp(|records| records.call(model, method, &args, &params))?;
    Ok((StatusCode::OK, Json(result)).into_response())
}
