//! The subset of Google Sheets API v4 the sink uses: `values.get`,
//! `values.append` and `values.batchUpdate`, with bearer tokens from the
//! sandbox's token endpoint and Google's error shape.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::a1::Range;
use crate::faults::Refusal;
use crate::{Api, AppState, Grid};
use sluice_contracts::column_name;

/// A Google API error: status and message, answered in Google's shape.
#[derive(Debug)]
pub struct GoogleError {
    status: u16,
    message: String,
}

/// Google's error for `status` with `message`.
pub fn google_error(status: u16, message: &str) -> GoogleError {
    GoogleError {
        status,
        message: message.to_owned(),
    }
}

impl IntoResponse for GoogleError {
    fn into_response(self) -> Response {
        let name = match self.status {
            400 => "INVALID_ARGUMENT",
            401 => "UNAUTHENTICATED",
            403 => "PERMISSION_DENIED",
            404 => "NOT_FOUND",
            429 => "RESOURCE_EXHAUSTED",
            503 => "UNAVAILABLE",
            _ => "INTERNAL",
        };
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            Json(json!({"error": {"code": self.status, "message": self.message, "status": name}})),
        )
            .into_response()
    }
}

/// `valueInputOption` and friends.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteOptions {
    value_input_option: Option<String>,
}

/// A body with rows.
#[derive(Debug, Deserialize)]
pub struct Rows {
    values: Vec<Vec<Value>>,
}

/// The body of values.batchUpdate.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchUpdate {
    value_input_option: Option<String>,
    data: Vec<RangeValues>,
}

/// One range of a batch update.
#[derive(Debug, Deserialize)]
pub struct RangeValues {
    range: String,
    values: Vec<Vec<Value>>,
}

/// How written values are taken (`valueInputOption`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    /// As they are.
    Raw,
    /// As if a person typed them.
    UserEntered,
}

fn input_option(option: Option<&str>) -> Result<Input, GoogleError> {
    match option {
        Some("RAW") => Ok(Input::Raw),
        Some("USER_ENTERED") => Ok(Input::UserEntered),
        Some(other) => Err(google_error(
            400,
            &format!("Invalid valueInputOption: {other}"),
        )),
        None => Err(google_error(
            400,
            "'valueInputOption' is required but not specified",
        )),
    }
}

/// A1 text of a block of rows.
fn a1(sheet: &str, first_column: usize, first_row: usize, rows: &[Vec<Value>]) -> String {
    let width = rows.iter().map(Vec::len).max().unwrap_or(1).max(1);
    format!(
        "{sheet}!{}{}:{}{}",
        column_name(first_column),
        first_row + 1,
        column_name(first_column + width - 1),
        first_row + rows.len().max(1)
    )
}

/// What a Sheets request is: which spreadsheet, which operation, whether
/// it writes, and the value the faults refuse among those it writes.
struct Request<'a> {
    spreadsheet: &'a str,
    operation: &'static str,
    write: bool,
    refused: Option<(Refusal, String)>,
}

/// Runs a Sheets request: token, sharing, faults, refused values, then
/// `handle` on the grid.
async fn call(
    app: &AppState,
    headers: &HeaderMap,
    request: Request<'_>,
    handle: impl FnOnce(&mut crate::Spreadsheets) -> Result<Value, GoogleError>,
) -> Response {
    let Request {
        spreadsheet,
        operation,
        write,
        refused,
    } = request;
    let principal = app.principal(headers);
    let response = if principal.is_none() {
        google_error(
            401,
            "Request had invalid authentication credentials. Expected OAuth 2 access token.",
        )
        .into_response()
    } else if principal.is_some_and(|principal| !app.shared(spreadsheet, &principal)) {
        google_error(403, "The caller does not have permission").into_response()
    } else if let Some(failure) = app.admit(Api::Sheets, operation, write).await {
        return failure.google();
    } else if let Some((refusal, message)) = refused {
        let status = match refusal {
            Refusal::Invalid => 400,
            Refusal::ServerError => 500,
        };
        google_error(status, &message).into_response()
    } else {
        match app.with_spreadsheets(handle) {
            Ok(body) => (StatusCode::OK, Json(body)).into_response(),
            Err(error) => error.into_response(),
        }
    };
    app.log(Api::Sheets, operation, response.status().as_u16(), None);
    response
}

fn sheet<'a>(
    spreadsheets: &'a mut crate::Spreadsheets,
    spreadsheet: &str,
    title: &str,
) -> Result<&'a mut Grid, GoogleError> {
    let sheets = spreadsheets
        .get_mut(spreadsheet)
        .ok_or_else(|| google_error(404, "Requested entity was not found."))?;
    sheets
        .get_mut(title)
        .ok_or_else(|| google_error(400, &format!("Unable to parse range: {title}")))
}

/// `GET /v4/spreadsheets/{id}/values/{range}`.
pub async fn get(
    State(app): State<AppState>,
    Path((spreadsheet, range)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let request = Request {
        spreadsheet: &spreadsheet,
        operation: "values.get",
        write: false,
        refused: None,
    };
    call(&app, &headers, request, |spreadsheets| {
        let range = Range::parse(&range).map_err(|m| google_error(400, &m))?;
        let grid = sheet(spreadsheets, &spreadsheet, &range.sheet)?;
        let last_row = range.last_row.unwrap_or(usize::MAX);
        let mut values: Vec<Vec<Value>> = grid
            .iter()
            .enumerate()
            .filter(|(i, _)| *i >= range.first_row && *i <= last_row)
            .map(|(_, row)| {
                let end = range.last_column.map_or(row.len(), |last| (last + 1).min(row.len()));
                row.get(range.first_column.min(end)..end)
                    .unwrap_or_default()
                    .iter()
                    .map(formatted)
                    .collect()
            })
            .collect();
        // Google leaves out trailing empty rows.
        while values.last().is_some_and(Vec::is_empty) {
            values.pop();
        }
        Ok(json!({"range": a1(&range.sheet, range.first_column, range.first_row, &values), "majorDimension": "ROWS", "values": values}))
    })
    .await
}

/// `POST /v4/spreadsheets/{id}/values/{range}:append`: rows after the last
/// row holding data.
pub async fn append(
    State(app): State<AppState>,
    Path((spreadsheet, range)): Path<(String, String)>,
    Query(options): Query<WriteOptions>,
    headers: HeaderMap,
    Json(body): Json<Rows>,
) -> Response {
    let Some(range) = range.strip_suffix(":append").map(str::to_owned) else {
        return google_error(404, "Requested entity was not found.").into_response();
    };
    let input = match input_option(options.value_input_option.as_deref()) {
        Ok(input) => input,
        Err(error) => return error.into_response(),
    };
    let request = Request {
        spreadsheet: &spreadsheet,
        operation: "values.append",
        write: true,
        refused: app.refused(Api::Sheets, &body.values),
    };
    call(&app, &headers, request, |spreadsheets| {
        let range = Range::parse(&range).map_err(|m| google_error(400, &m))?;
        let grid = sheet(spreadsheets, &spreadsheet, &range.sheet)?;
        let start = grid
            .iter()
            .rposition(|row| !row.is_empty())
            .map_or(0, |last| last + 1);
        for (offset, row) in body.values.iter().enumerate() {
            put(grid, start + offset, range.first_column, row, input);
        }
        let updated = a1(&range.sheet, range.first_column, start, &body.values);
        Ok(json!({
            "spreadsheetId": spreadsheet,
            "updates": {
                "spreadsheetId": spreadsheet,
                "updatedRange": updated,
                "updatedRows": body.values.len(),
                "updatedCells": body.values.iter().map(Vec::len).sum::<usize>(),
            }
        }))
    })
    .await
}

/// `POST /v4/spreadsheets/{id}/values:batchUpdate`.
pub async fn batch_update(
    State(app): State<AppState>,
    Path(spreadsheet): Path<String>,
    headers: HeaderMap,
    Json(body): Json<BatchUpdate>,
) -> Response {
    let input = match input_option(body.value_input_option.as_deref()) {
        Ok(input) => input,
        Err(error) => return error.into_response(),
    };
    let all: Vec<Vec<Value>> = body.data.iter().flat_map(|d| d.values.clone()).collect();
    let request = Request {
        spreadsheet: &spreadsheet,
        operation: "values.batchUpdate",
        write: true,
        refused: app.refused(Api::Sheets, &all),
    };
    call(&app, &headers, request, |spreadsheets| {
        // Parsed and checked whole before anything is written: a bad range
        // fails the request and changes nothing, as in Google's API.
        let mut writes = Vec::with_capacity(body.data.len());
        for data in &body.data {
            let range = Range::parse(&data.range).map_err(|m| google_error(400, &m))?;
            sheet(spreadsheets, &spreadsheet, &range.sheet)?;
            writes.push((range, &data.values));
        }
        let mut cells = 0;
        for (range, values) in &writes {
            let grid = sheet(spreadsheets, &spreadsheet, &range.sheet)?;
            for (offset, row) in values.iter().enumerate() {
                put(
                    grid,
                    range.first_row + offset,
                    range.first_column,
                    row,
                    input,
                );
                cells += row.len();
            }
        }
        Ok(json!({
            "spreadsheetId": spreadsheet,
            "totalUpdatedRows": writes.iter().map(|(_, v)| v.len()).sum::<usize>(),
            "totalUpdatedCells": cells,
            "responses": writes.iter().map(|(range, values)| json!({
                "updatedRange": a1(&range.sheet, range.first_column, range.first_row, values)
            })).collect::<Vec<_>>(),
        }))
    })
    .await
}

/// Writes `row` at (`row_index`, `first_column`), growing the grid.
fn put(grid: &mut Grid, row_index: usize, first_column: usize, row: &[Value], input: Input) {
    if grid.len() <= row_index {
        grid.resize_with(row_index + 1, Vec::new);
    }
    let target = &mut grid[row_index];
    if target.len() < first_column + row.len() {
        target.resize(first_column + row.len(), Value::String(String::new()));
    }
    for (i, value) in row.iter().enumerate() {
        target[first_column + i] = match (input, value) {
            (Input::UserEntered, Value::String(text)) => typed(text),
            _ => value.clone(),
        };
    }
}

/// A cell as `values.get` answers it by default (FORMATTED_VALUE): text.
/// A formula shows its text (the sandbox computes none).
fn formatted(cell: &Value) -> Value {
    match cell {
        Value::String(_) => cell.clone(),
        Value::Bool(true) => json!("TRUE"),
        Value::Bool(false) => json!("FALSE"),
        Value::Object(formula) => formula.get("formula").cloned().unwrap_or(json!("")),
        other => json!(other.to_string()),
    }
}

/// What a cell holds when `text` is entered as a person types it: after a
/// leading apostrophe, text; a formula (`=…`, and `+`, `-` or `@` before
/// something that is not a number), held as `{"formula": text}` (the
/// sandbox computes none); a number; TRUE or FALSE; else text.
fn typed(text: &str) -> Value {
    if let Some(literal) = text.strip_prefix('\'') {
        return Value::String(literal.to_owned());
    }
    let number = text.trim().parse::<f64>().ok().filter(|n| n.is_finite());
    if text.starts_with('=') || (text.starts_with(['+', '-', '@']) && number.is_none()) {
        return json!({ "formula": text });
    }
    match (number, text.to_ascii_uppercase().as_str()) {
        (Some(number), _) => json!(number),
        (None, "TRUE") => Value::Bool(true),
        (None, "FALSE") => Value::Bool(false),
        _ => Value::String(text.to_owned()),
    }
}
