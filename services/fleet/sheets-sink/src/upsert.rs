//! Upsert by row key. Column A holds the row key and row 1 the header; a
//! command's cells land under the columns of their names (added to the
//! header when new). A key already in the sheet is updated in place, cell by
//! cell; a new one is appended, the API choosing the row.
//!
//! Commands come in batches: per spreadsheet, the header changes and every
//! in-place update go in one `values.batchUpdate`, and each sheet's new rows
//! in one `values.append`. Commands for the same key are merged first, the
//! later cell winning, so a batch writes each key once.
//!
//! The key → row index is rebuilt by reading the sheet, not kept in
//! Postgres: the sheet is the truth (people edit and sort it), and a
//! redelivered command after a crash finds the row its first delivery
//! appended. Within a process the index is cached per sheet and dropped
//! after any failed call, so a retry after an append whose answer was lost
//! reads the sheet again instead of appending twice, and whenever the group
//! assigns the replica partitions (another replica may have appended their
//! keys meanwhile). A batch that updates a
//! row in place reads the index again first: people sort the sheet, insert
//! and delete rows between two writes, and a row number remembered from an
//! earlier batch can point at another key's row by then (a person's edit
//! between that read and the write, one round trip, can still move a row
//! under it). A batch of new keys only appends, which a moved row cannot
//! misdirect, so it goes on the cached index and costs no read.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use sluice_contracts::column_name;
use sluice_contracts::types::{ScalarValue, SheetRowUpsert};
use tokio::sync::OwnedMutexGuard;

use crate::google::{GoogleError, SheetsClient, ValueInput};

/// A sheet: (spreadsheet id, sheet title).
type SheetId = (String, String);

/// A sheet's header and where its keys are.
#[derive(Debug, Default)]
struct SheetIndex {
    header: Vec<String>,
    /// Row key → 0-based row index.
    rows: HashMap<String, usize>,
    /// The [`Upserter::generation`] it was read in.
    generation: u64,
}

/// A sheet's index, loaded on first use; writes to the sheet hold its lock.
type SheetSlot = Arc<tokio::sync::Mutex<Option<SheetIndex>>>;

/// A sheet a batch writes: its rows, and its index, locked.
type LockedSheet = (SheetId, Vec<RowWrite>, OwnedMutexGuard<Option<SheetIndex>>);

/// One key's row as a batch leaves it: its cells, in first-seen order.
#[derive(Debug)]
struct RowWrite {
    key: String,
    /// The key column's name, for a sheet that has no header yet.
    key_column: String,
    cells: Vec<(String, Value)>,
}

/// Rows written at a range: one `values.batchUpdate` datum.
type RangeWrite = (String, Vec<Vec<Value>>);

/// Rows of new keys, for one append.
struct NewRows {
    keys: Vec<String>,
    values: Vec<Vec<Value>>,
}

/// Applies row upserts through the Sheets API.
pub struct Upserter {
    client: SheetsClient,
    /// Sheets written USER_ENTERED: `spreadsheet` or `spreadsheet/sheet`.
    user_entered: Vec<String>,
    sheets: Mutex<HashMap<SheetId, SheetSlot>>,
    /// Bumped by [`Upserter::forget`]: an index read in an older
    /// generation is read again before use.
    generation: AtomicU64,
}

/// What a batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Rows appended (new keys).
    pub appended: usize,
    /// Rows updated in place.
    pub updated: usize,
    /// API requests it took, the index reads included.
    pub requests: usize,
}

impl Upserter {
    /// Upserts through `client`.
    pub fn new(client: SheetsClient) -> Self {
        Self {
            client,
            user_entered: Vec::new(),
            sheets: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }

    /// Writes the sheets `selectors` name (`spreadsheet`, every sheet of
    /// it, or `spreadsheet/sheet`) USER_ENTERED, the others RAW.
    #[must_use]
    pub fn user_entered(mut self, selectors: Vec<String>) -> Self {
        self.user_entered = selectors;
        self
    }

    fn input(&self, spreadsheet: &str, sheet: &str) -> ValueInput {
        let named = self.user_entered.iter().any(|selector| {
            selector == spreadsheet
                || selector
                    .split_once('/')
                    .is_some_and(|(id, title)| id == spreadsheet && title == sheet)
        });
        if named {
            ValueInput::UserEntered
        } else {
            ValueInput::Raw
        }
    }

    /// Forgets every cached index: the partitions were with another replica,
    /// which may have appended keys this one has not seen (appending them
    /// again on the cached index would duplicate their rows). Batches in
    /// flight finish on what they hold; the next one reads the sheet.
    pub fn forget(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Makes each command's row hold its cells, later commands winning.
    /// Writes to one sheet are serialised within the process (its index is
    /// shared); a batch locks its sheets in one order, so batches over the
    /// same sheets cannot deadlock.
    pub async fn upsert(&self, commands: &[SheetRowUpsert]) -> Result<Applied, GoogleError> {
        let plan = plan(commands);
        let mut locked = Vec::with_capacity(plan.len());
        for (sheet, rows) in plan {
            let slot = self.slot(&sheet);
            locked.push((sheet, rows, slot.lock_owned().await));
        }
        let result = self.apply(&mut locked).await;
        if result.is_err() {
            // An append may have landed without its answer: read the sheets
            // again before the retry.
            for (_, _, index) in &mut locked {
                **index = None;
            }
        }
        result
    }

    fn slot(&self, sheet: &SheetId) -> SheetSlot {
        let mut sheets = self.sheets.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(sheets.entry(sheet.clone()).or_default())
    }

    /// Writes the locked sheets, a spreadsheet at a time.
    async fn apply(&self, locked: &mut [LockedSheet]) -> Result<Applied, GoogleError> {
        let mut applied = Applied::default();
        for spreadsheet in locked.chunk_by_mut(|a, b| a.0.0 == b.0.0) {
            let spreadsheet_id = spreadsheet[0].0.0.clone();
            let mut writes = Vec::new();
            let mut appends = Vec::new();
            for (at, ((_, sheet), rows, cached)) in spreadsheet.iter_mut().enumerate() {
                let generation = self.generation.load(Ordering::SeqCst);
                let fresh = match &**cached {
                    Some(index) => {
                        index.generation == generation
                            && !rows.iter().any(|row| index.rows.contains_key(&row.key))
                    }
                    None => false,
                };
                let index = match &mut **cached {
                    Some(index) if fresh => index,
                    _ => {
                        applied.requests += 1;
                        cached.insert(self.load(&spreadsheet_id, sheet, generation).await?)
                    }
                };
                let input = self.input(&spreadsheet_id, sheet);
                let (new_rows, updated) = index.lay_out(sheet, rows, input, &mut writes);
                applied.updated += updated;
                if !new_rows.keys.is_empty() {
                    appends.push((at, input, new_rows));
                }
            }
            // One request per way of taking values (one, unless the
            // spreadsheet mixes RAW and USER_ENTERED sheets).
            writes.sort_by_key(|(input, _)| *input);
            for same in writes.chunk_by(|a, b| a.0 == b.0) {
                applied.requests += 1;
                let data: Vec<_> = same.iter().map(|(_, write)| write.clone()).collect();
                self.client
                    .batch_update(&spreadsheet_id, &data, same[0].0)
                    .await?;
            }
            for (at, input, NewRows { keys, values }) in appends {
                let ((_, sheet), _, cached) = &mut spreadsheet[at];
                applied.requests += 1;
                let range = format!("{}!A1", quoted(sheet));
                let updated = self
                    .client
                    .append(&spreadsheet_id, &range, &values, input)
                    .await?;
                applied.appended += keys.len();
                match (first_row(&updated), cached.as_mut()) {
                    (Some(first), Some(index)) => {
                        let rows = keys.into_iter().enumerate().map(|(i, k)| (k, first + i));
                        index.rows.extend(rows);
                    }
                    // Unknown rows: read the sheet again next time.
                    _ => **cached = None,
                }
            }
        }
        Ok(applied)
    }

    async fn load(
        &self,
        spreadsheet: &str,
        sheet: &str,
        generation: u64,
    ) -> Result<SheetIndex, GoogleError> {
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
        Ok(SheetIndex {
            header,
            rows,
            generation,
        })
    }
}

impl SheetIndex {
    /// Adds `rows`' columns to the header and queues the header and the
    /// in-place updates in `writes`; returns the new rows, for one append,
    /// and how many rows were updated in place.
    fn lay_out(
        &mut self,
        sheet: &str,
        rows: &[RowWrite],
        input: ValueInput,
        writes: &mut Vec<(ValueInput, RangeWrite)>,
    ) -> (NewRows, usize) {
        let cell = |value: &Value, key: bool| match (input, value) {
            (ValueInput::UserEntered, Value::String(text)) => Value::String(entered(text, key)),
            _ => value.clone(),
        };
        let sheet = quoted(sheet);
        let mut header_changed = false;
        if self.header.is_empty()
            && let Some(first) = rows.first()
        {
            self.header.push(first.key_column.clone());
            header_changed = true;
        }
        for row in rows {
            for (column, _) in &row.cells {
                if !self.header.contains(column) {
                    self.header.push(column.clone());
                    header_changed = true;
                }
            }
        }
        if header_changed {
            let header = self
                .header
                .iter()
                .map(|name| cell(&Value::String(name.clone()), true))
                .collect();
            writes.push((input, (format!("{sheet}!A1"), vec![header])));
        }
        let column_of = |name: &str| self.header.iter().skip(1).position(|h| h == name);
        let (mut keys, mut values, mut updated) = (Vec::new(), Vec::new(), 0);
        for row in rows {
            // Column 0 is the key, written only when the row is made.
            let cells = row
                .cells
                .iter()
                .filter_map(|(column, value)| Some((column_of(column)? + 1, value)));
            if let Some(&at) = self.rows.get(&row.key) {
                updated += 1;
                for (column, value) in cells {
                    let range = format!("{sheet}!{}{}", column_name(column), at + 1);
                    writes.push((input, (range, vec![vec![cell(value, false)]])));
                }
                continue;
            }
            let mut line = vec![Value::String(String::new()); self.header.len()];
            line[0] = cell(&Value::String(row.key.clone()), true);
            for (column, value) in cells {
                line[column] = cell(value, false);
            }
            // Trailing empty cells are not sent (nothing to clear in a new row).
            while line.len() > 1 && line.last() == Some(&Value::String(String::new())) {
                line.pop();
            }
            keys.push(row.key.clone());
            values.push(line);
        }
        (NewRows { keys, values }, updated)
    }
}

/// The batch's rows by sheet (in sheet order, which is the lock order), each
/// key once with its commands' cells merged, the later value winning.
fn plan(commands: &[SheetRowUpsert]) -> BTreeMap<SheetId, Vec<RowWrite>> {
    let mut plan: BTreeMap<SheetId, Vec<RowWrite>> = BTreeMap::new();
    for command in commands {
        let rows = plan
            .entry((command.spreadsheet_id.clone(), command.sheet.clone()))
            .or_default();
        let key_column = command.cells.first().map_or("key", |c| c.column.as_str());
        let position = match rows.iter().position(|row| row.key == command.row_key) {
            Some(position) => position,
            None => {
                rows.push(RowWrite {
                    key: command.row_key.clone(),
                    key_column: key_column.to_owned(),
                    cells: Vec::new(),
                });
                rows.len() - 1
            }
        };
        let row = &mut rows[position];
        for cell in &command.cells {
            let value = json_value(&cell.value);
            match row
                .cells
                .iter_mut()
                .find(|(column, _)| *column == cell.column)
            {
                Some((_, old)) => *old = value,
                None => row.cells.push((cell.column.clone(), value)),
            }
        }
    }
    plan
}

/// A text cell as USER_ENTERED must receive it to stay text where Sheets
/// would take it for something else. Sheets reads what it is sent as a
/// person's typing: a formula (`=…`, or `+`, `-`, `@` before what is not a
/// number) from an event would run in the sheet (`=IMPORTXML(…)` sends the
/// sheet's data away), and a leading apostrophe would vanish. These go with
/// an apostrophe before them, which Sheets keeps out of the cell; so does a
/// row key and a header name, always (`00123` stays `00123`, and its row is
/// found again). A number or a date in a value is left to Sheets, as the
/// option asks.
fn entered(text: &str, literal: bool) -> String {
    let number = text.trim().parse::<f64>().is_ok_and(f64::is_finite);
    let formula = text.starts_with('=') || (text.starts_with(['+', '-', '@']) && !number);
    if literal || formula || text.starts_with('\'') {
        format!("'{text}")
    } else {
        text.to_owned()
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
        assert_eq!(quoted("Orders"), "Orders");
        assert_eq!(quoted("Q's list"), "'Q''s list'");
    }
}
