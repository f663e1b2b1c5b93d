//! `/admin`: set faults, create spreadsheets, read back what the APIs were
//! sent, and the request log.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::{Api, AppState, Faults};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/faults/{api}", put(set_faults).get(get_faults))
        .route("/admin/spreadsheets", post(create_spreadsheet))
        .route(
            "/admin/spreadsheets/{spreadsheet}/{sheet}",
            get(grid).put(edit_grid),
        )
        .route("/admin/erp/{model}", get(records))
        .route("/admin/requests", get(requests))
        .route("/admin/reset", post(reset))
}

async fn set_faults(
    State(app): State<AppState>,
    Path(api): Path<Api>,
    Json(faults): Json<Faults>,
) -> Response {
    let now = sluice_contracts::now_millis();
    app.lock().faults.entry(api).or_default().set(faults, now);
    StatusCode::NO_CONTENT.into_response()
}

async fn get_faults(State(app): State<AppState>, Path(api): Path<Api>) -> Response {
    let faults = app
        .lock()
        .faults
        .get(&api)
        .map(|f| f.faults().clone())
        .unwrap_or_default();
    Json(faults).into_response()
}

#[derive(Debug, Deserialize)]
struct NewSpreadsheet {
    id: String,
    sheets: Vec<String>,
    /// Shared with exactly these accounts and users; none: the service
    /// account.
    #[serde(default)]
    shared_with: Option<Vec<String>>,
}

async fn create_spreadsheet(
    State(app): State<AppState>,
    Json(new): Json<NewSpreadsheet>,
) -> Response {
    app.create_spreadsheet(&new.id, &new.sheets);
    if let Some(principals) = &new.shared_with {
        let principals: Vec<&str> = principals.iter().map(String::as_str).collect();
        app.share_only(&new.id, &principals);
    }
    StatusCode::CREATED.into_response()
}

/// Which rows of a sheet to read: from the `from`-th (0-based), so that a
/// reader polling for appended rows reads only those.
#[derive(Debug, Deserialize)]
struct Rows {
    #[serde(default)]
    from: usize,
}

async fn grid(
    State(app): State<AppState>,
    Path((spreadsheet, sheet)): Path<(String, String)>,
    Query(rows): Query<Rows>,
) -> Response {
    let state = app.lock();
    match state
        .spreadsheets
        .get(&spreadsheet)
        .and_then(|s| s.get(&sheet))
    {
        Some(grid) => {
            let values = grid.get(rows.from..).unwrap_or_default();
            Json(json!({"values": values})).into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            format!("no sheet {sheet} in {spreadsheet}"),
        )
            .into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct NewGrid {
    values: Vec<Vec<serde_json::Value>>,
}

/// What a person does in the browser between two writes: sorts the rows,
/// inserts or deletes some, edits cells. The sheet becomes `values`.
async fn edit_grid(
    State(app): State<AppState>,
    Path((spreadsheet, sheet)): Path<(String, String)>,
    Json(new): Json<NewGrid>,
) -> Response {
    let mut state = app.lock();
    match state
        .spreadsheets
        .get_mut(&spreadsheet)
        .and_then(|s| s.get_mut(&sheet))
    {
        Some(grid) => {
            *grid = new.values;
            StatusCode::NO_CONTENT.into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            format!("no sheet {sheet} in {spreadsheet}"),
        )
            .into_response(),
    }
}

/// Which records to read: those with an id above `after`, so that a reader
/// polling for created records reads only those.
#[derive(Debug, Deserialize)]
struct Records {
    #[serde(default)]
    after: i64,
}

async fn records(
    State(app): State<AppState>,
    Path(model): Path<String>,
    Query(records): Query<Records>,
) -> Response {
    let table = app.lock().erp.table(&model, records.after);
    let rows: Vec<_> = table
        .into_iter()
        .map(|(id, mut fields)| {
            fields.insert("id".into(), json!(id));
            fields
        })
        .collect();
    Json(rows).into_response()
}

#[derive(Debug, Deserialize)]
struct Filter {
    api: Option<Api>,
}

async fn requests(State(app): State<AppState>, Query(filter): Query<Filter>) -> Response {
    let state = app.lock();
    let log: Vec<_> = state
        .requests
        .iter()
        .filter(|r| filter.api.is_none_or(|api| r.api == api))
        .cloned()
        .collect();
    Json(log).into_response()
}

async fn reset(State(app): State<AppState>) -> Response {
    let mut state = app.lock();
    let spreadsheets: Vec<(String, Vec<String>)> = state
        .spreadsheets
        .iter()
        .map(|(id, sheets)| (id.clone(), sheets.keys().cloned().collect()))
        .collect();
    let shared_with = std::mem::take(&mut state.shared_with);
    *state = crate::State {
        shared_with,
        ..crate::State::default()
    };
    // Spreadsheets stay, empty, shared as they were: they stand for
    // documents that exist.
    for (id, sheets) in spreadsheets {
        let spreadsheet = state.spreadsheets.entry(id).or_default();
        for title in sheets {
            spreadsheet.entry(title).or_default();
        }
    }
    StatusCode::NO_CONTENT.into_response()
}
