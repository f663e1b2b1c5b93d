//! Upsert by row key. Column A holds the row key and row 1 the header; a
//! command's cells land under the columns of their names (added to the
//! header when new). A key already in the sheet is updated in place, cell by
//! cell; a new one is appended, the API choosing the row.
//!
//! The key → row index is rebuilt by reading the sheet, not kept in
//! Postgres: the sheet is the truth (people edit and sort it), and a
//! redelivered command after a crash finds the row its first delivery
//! appended. Within a process the index is cached per sheet and dropped
//! after any failed call, so a retry after an append whose answer was lost
//! reads the sheet again instead of appending twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use sluice_contracts::types::{ScalarValue, SheetRowUpsert};

use crate::google::{GoogleError, SheetsClient};

/// A sheet's header and where its keys are.
#[derive(Debug, Default)]
struct SheetIndex {
    header: Vec<String>,
    /// Row key → 0-based row index.
    rows: HashMap<String, usize>,
}

/// A sheet's index, loaded on first use; writes to the sheet hold its lock.
type SheetSlot = Arc<tokio::sync::Mutex<Option<SheetIndex>>>;

/// Applies row upserts through the Sheets API.
pub struct Upserter {
    client: SheetsClient,
    /// By (spreadsheet, sheet).
    sheets: Mutex<HashMap<(String, String), SheetSlot>>,
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    /// The key was new: a row was appended.
    Appended,
    /// The key's row was updated.
    Updated,
}

impl Upserter {
    /// Upserts through `client`.
    pub fn new(client: SheetsClient) -> Self {
        Self {
            client,
            sheets: Mutex::new(HashMap::new()),
        }
    }

    /// Makes the command's row hold its cells. Writes to one sheet are
    /// serialised within the process (its index is shared).
    pub async fn upsert(&self, command: &SheetRowUpsert) -> Result<Upserted, GoogleError> {
        let slot = {
            let mut sheets = self.sheets.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(
                sheets
                    .entry((command.spreadsheet_id.clone(), command.sheet.clone()))
                    .or_default(),
            )
        };
        let mut index = slot.lock().await;
        let result = self.upsert_with(&mut index, command).await;
        if result.is_err() {
            // An append may have landed without its answer: read the sheet
            // again before the retry.
            *index = None;
        }
        result
    }

    async fn upsert_with(
        &self,
        cached: &mut Option<SheetIndex>,
        command: &SheetRowUpsert,
    ) -> Result<Upserted, GoogleError> {
        let (spreadsheet, sheet) = (&command.spreadsheet_id, &command.sheet);
        let index = match cached {
            Some(index) => index,
            None => cached.insert(self.load(spreadsheet, sheet).await?),
        };
        let mut writes: Vec<(String, Vec<Vec<Value>>)> = Vec::new();
        let key_column = command.cells.first().map_or("key", |c| c.column.as_str());
        let mut header_changed = false;
        if index.header.is_empty() {
            index.header.push(key_column.to_owned());
            header_changed = true;
        }
        for cell in &command.cells {
            if !index.header.contains(&cell.column) {
                index.header.push(cell.column.clone());
                header_changed = true;
            }
        }
        if header_changed {
            let header = index
                .header
                .iter()
                .map(|h| Value::String(h.clone()))
                .collect();
            writes.push((format!("{}!A1", quoted(sheet)), vec![header]));
        }
        let key_header = index.header[0].clone();
        let column_of = |name: &str| index.header.iter().position(|h| h == name);
        if let Some(&row) = index.rows.get(&command.row_key) {
            for cell in command.cells.iter().filter(|c| c.column != key_header) {
                if let Some(column) = column_of(&cell.column) {
                    writes.push((
                        format!("{}!{}{}", quoted(sheet), column_name(column), row + 1),
                        vec![vec![json_value(&cell.value)]],
                    ));
                }
            }
            self.client.batch_update(spreadsheet, &writes).await?;
            return Ok(Upserted::Updated);
        }
        if !writes.is_empty() {
            self.client.batch_update(spreadsheet, &writes).await?;
        }
        let mut row = vec![Value::String(String::new()); index.header.len()];
        row[0] = Value::String(command.row_key.clone());
        for cell in command.cells.iter().filter(|c| c.column != key_header) {
            if let Some(column) = column_of(&cell.column) {
                row[column] = json_value(&cell.value);
            }
        }
        // Trailing empty cells are not sent (nothing to clear in a new row).
        while row.len() > 1 && row.last() == Some(&Value::String(String::new())) {
            row.pop();
        }
        let updated = self
            .client
            .append(spreadsheet, &format!("{}!A1", quoted(sheet)), &[row])
            .await?;
        match first_row(&updated) {
            Some(at) => {
                index.rows.insert(command.row_key.clone(), at);
            }
            // Unknown row: read the sheet again next time.
            None => *cached = None,
        }
        Ok(Upserted::Appended)
    }

    async fn load(&self, spreadsheet: &str, sheet: &str) -> Result<SheetIndex, GoogleError> {
        let rows = self.client.get(spreadsheet, &quoted(sheet)).await?;
        let text = |value: &Value| match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let header = rows
            .first()
            .map(|row| row.iter().map(text).collect())
            .unwrap_or_default();
        let rows = rows
            .iter()
            .enumerate()
            .skip(1)
            .filter_map(|(i, row)| row.first().map(|key| (text(key), i)))
            .collect();
        Ok(SheetIndex { header, rows })
    }
}

/// A sheet title as A1 notation wants it.
fn quoted(sheet: &str) -> String {
    if sheet.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        sheet.to_owned()
    } else {
        format!("'{}'", sheet.replace('\'', "''"))
    }
}

/// A cell value as the API takes it; null clears the cell.
fn json_value(value: &ScalarValue) -> Value {
    match value {
        ScalarValue::Null => Value::String(String::new()),
        ScalarValue::String(text) => Value::String(text.clone()),
        ScalarValue::Long(n) => Value::from(*n),
        ScalarValue::Double(x) => Value::from(*x),
        ScalarValue::Boolean(b) => Value::Bool(*b),
    }
}

/// Column index → letters (0 → A, 26 → AA).
fn column_name(mut index: usize) -> String {
    let mut name = Vec::new();
    loop {
        name.push(b'A' + u8::try_from(index % 26).unwrap_or(0));
        if index < 26 {
            break;
        }
        index = index / 26 - 1;
    }
    name.reverse();
    String::from_utf8(name).unwrap_or_default()
}

/// The 0-based first row of an updated range (`Orders!A7:C7` → 6).
fn first_row(range: &str) -> Option<usize> {
    let cells = range.rsplit_once('!').map_or(range, |(_, cells)| cells);
    let start = cells.split(':').next()?;
    let digits: String = start
        .chars()
        .skip_while(char::is_ascii_alphabetic)
        .collect();
    digits.parse::<usize>().ok()?.checked_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_names() {
        assert_eq!(first_row("Orders!A7:C7"), Some(6));
        assert_eq!(first_row("'My sheet'!B12"), Some(11));
        assert_eq!(first_row("Orders!A:A"), None);
        assert_eq!(column_name(0), "A");
        assert_eq!(column_name(27), "AB");
        assert_eq!(quoted("Orders"), "Orders");
        assert_eq!(quoted("Q's list"), "'Q''s list'");
    }
}
