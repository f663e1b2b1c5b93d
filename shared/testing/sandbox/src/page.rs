//! `/sheets/{spreadsheet}/{sheet}`: a sheet as an HTML table, for people
//! looking at what the sinks wrote (and the demo's browser check).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use maud::{DOCTYPE, html};
use serde_json::Value;

use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/sheets/{spreadsheet}/{sheet}", get(sheet))
}

async fn sheet(
    State(app): State<AppState>,
    Path((spreadsheet, sheet)): Path<(String, String)>,
) -> Response {
    let grid = {
        let state = app.lock();
        state
            .spreadsheets
            .get(&spreadsheet)
            .and_then(|sheets| sheets.get(&sheet))
            .cloned()
    };
    let Some(grid) = grid else {
        return (
            StatusCode::NOT_FOUND,
            format!("no sheet {sheet} in {spreadsheet}"),
        )
            .into_response();
    };
    let (header, rows) = grid
        .split_first()
        .map_or((&[][..], &[][..]), |(h, r)| (&h[..], r));
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (spreadsheet) " · " (sheet) }
                style {
                    "body { font: 14px system-ui, sans-serif; margin: 2em; }"
                    "table { border-collapse: collapse; }"
                    "th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; }"
                    "th { background: #eef; }"
                }
            }
            body {
                h1 { (spreadsheet) " · " (sheet) }
                p { (rows.len()) " rows" }
                table id="sheet" {
                    thead { tr { @for cell in header { th { (text(cell)) } } } }
                    tbody {
                        @for row in rows {
                            tr { @for cell in row { td { (text(cell)) } } }
                        }
                    }
                }
            }
        }
    };
    Html(page.into_string()).into_response()
}

fn text(cell: &Value) -> String {
    match cell {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
