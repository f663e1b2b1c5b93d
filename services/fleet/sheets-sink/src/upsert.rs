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
//!
//! An older upsert never overwrites a newer one, cell by cell: each row
//! keeps, in a column of its own ([`VERSION_COLUMN`], which moves with the
//! row when a person sorts the sheet), the `occurred_at` of the upsert that
//! wrote each of its cells. A command's cell older than the cell's is not
//! written (one as old is: a redelivery, two commands of one event); its
//! other cells are, so a replayed event still fills the columns no newer
//! one wrote. Sheets' developer metadata would hide the versions, but
//! Google caps that at 30 000 characters per sheet, a few hundred rows'
//! worth.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use sluice_contracts::column_name;
use sluice_contracts::types::{ScalarValue, SheetRowUpsert};
use tokio::sync::OwnedMutexGuard;

use crate::google::{GoogleError, SheetsClient, ValueInput};

/// The header of the column holding each row's versions: for each column,
/// the `occurred_at` (ms since the epoch) of the upsert that wrote its
/// cell, as a JSON object (`{"Status":1795437296789,…}`). A command's cell
/// under this name is dropped: a command could forge the versions.
pub const VERSION_COLUMN: &str = sluice_contracts::SHEET_VERSIONS_COLUMN;

/// A row's versions: column → `occurred_at` of its cell.
type Versions = BTreeMap<String, i64>;

/// A sheet: (spreadsheet id, sheet title).
type SheetId = (String, String);

/// A sheet's header and where its keys are.
#[derive(Debug, Default)]
struct SheetIndex {
    header: Vec<String>,
    /// Row key → its row.
    rows: HashMap<String, Row>,
    /// The [`Upserter::generation`] it was read in.
    generation: u64,
}

/// A sheet's index, loaded on first use; writes to the sheet hold its lock.
type SheetSlot = Arc<tokio::sync::Mutex<Option<SheetIndex>>>;

/// A sheet a batch writes: its rows, and its index, locked.
type LockedSheet = (SheetId, Vec<RowWrite>, OwnedMutexGuard<Option<SheetIndex>>);

/// A key's row in the sheet.
#[derive(Debug, Clone)]
struct Row {
    /// 0-based row index.
    at: usize,
    /// Its versions cell's text, parsed only when the row is written: with
    /// a parsed map per row, sheets-sink's resident set grew 30.5 MiB over
    /// the end-to-end benchmark's 44 000 rows, with the text 18.2. Empty,
    /// or anything that does not parse: none known, every cell is written.
    versions: Box<str>,
}

/// One key's commands in a batch, in the batch's order.
#[derive(Debug)]
struct RowWrite {
    key: String,
    /// The key column's name, for a sheet that has no header yet.
    key_column: String,
    updates: Vec<Update>,
}

/// One command's cells for its row.
#[derive(Debug)]
struct Update {
    /// Its place in the batch.
    command: usize,
    occurred_at: i64,
    cells: Vec<(String, Value)>,
}

/// A key's row as the batch leaves it: its new cells (the versions'
/// among them), in first-seen order.
struct Folded<'a> {
    key: &'a str,
    /// Where it is, unless it is new.
    at: Option<usize>,
    /// Its versions cell's text.
    versions: String,
    cells: Vec<(String, Value)>,
}

/// Rows written at a range: one `values.batchUpdate` datum.
type RangeWrite = (String, Vec<Vec<Value>>);

/// Rows of new keys, for one append.
struct NewRows {
    /// Each row's key and versions cell.
    keys: Vec<(String, String)>,
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
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Rows appended (new keys).
    pub appended: usize,
    /// Rows updated in place.
    pub updated: usize,
    /// API requests it took, the index reads included.
    pub requests: usize,
    /// The commands not written, by their place in the batch: newer
    /// upserts had written each of their cells.
    pub superseded: Vec<usize>,
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
                let (new_rows, updated) =
                    index.lay_out(sheet, rows, input, &mut writes, &mut applied.superseded);
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
                        let rows = keys.into_iter().enumerate().map(|(i, (key, versions))| {
                            (
                                key,
                                Row {
                                    at: first + i,
                                    versions: versions.into_boxed_str(),
                                },
                            )
                        });
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
        let header: Vec<String> = rows
            .first()
            .map(|row| row.iter().map(text).collect())
            .unwrap_or_default();
        let version_at = header.iter().position(|name| name == VERSION_COLUMN);
        let rows = rows
            .iter()
            .enumerate()
            .skip(1)
            .filter_map(|(at, row)| {
                let versions = version_at
                    .and_then(|column| row.get(column))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .into();
                Some((text(row.first()?), Row { at, versions }))
            })
            .collect();
        Ok(SheetIndex {
            header,
            rows,
            generation,
        })
    }
}

impl SheetIndex {
    /// Folds each key's commands onto its row (those older than the row
    /// listed in `superseded`), adds their columns to the header and queues
    /// the header and the in-place updates in `writes`; returns the new
    /// rows, for one append, and how many rows were updated in place.
    fn lay_out(
        &mut self,
        sheet: &str,
        rows: &[RowWrite],
        input: ValueInput,
        writes: &mut Vec<(ValueInput, RangeWrite)>,
        superseded: &mut Vec<usize>,
    ) -> (NewRows, usize) {
        let cell = |value: &Value, key: bool| match (input, value) {
            (ValueInput::UserEntered, Value::String(text)) => Value::String(entered(text, key)),
            _ => value.clone(),
        };
        let folded: Vec<Folded<'_>> = rows
            .iter()
            .filter_map(|row| {
                // The sheet's key column, or the one this batch makes.
                let key_column = self.header.first().unwrap_or(&row.key_column);
                fold(row, key_column, self.rows.get(&row.key), superseded)
            })
            .collect();
        let sheet = quoted(sheet);
        let mut header_changed = false;
        if self.header.is_empty()
            && let Some(first) = folded.first()
        {
            let key_column = rows.iter().find(|row| row.key == first.key);
            self.header
                .push(key_column.map_or("key", |row| &row.key_column).to_owned());
            header_changed = true;
        }
        for row in &folded {
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
        for row in folded {
            // Column 0 is the key, written only when the row is made; the
            // version is text, whatever the sheet would make of it.
            let cells = row.cells.iter().filter_map(|(column, value)| {
                let literal = column == VERSION_COLUMN;
                Some((column_of(column)? + 1, cell(value, literal)))
            });
            if let Some(at) = row.at {
                updated += 1;
                for (column, value) in cells {
                    let range = format!("{sheet}!{}{}", column_name(column), at + 1);
                    writes.push((input, (range, vec![vec![value]])));
                }
                continue;
            }
            let mut line = vec![Value::String(String::new()); self.header.len()];
            line[0] = cell(&Value::String(row.key.to_owned()), true);
            for (column, value) in cells {
                line[column] = value;
            }
            // Trailing empty cells are not sent (nothing to clear in a new row).
            while line.len() > 1 && line.last() == Some(&Value::String(String::new())) {
                line.pop();
            }
            keys.push((row.key.to_owned(), row.versions));
            values.push(line);
        }
        (NewRows { keys, values }, updated)
    }
}

/// `row`'s commands applied in order onto the row the sheet holds
/// (`stored`), cell by cell: a cell older than the one the row holds by
/// then is passed over, and a command none of whose cells is written is
/// listed in `superseded`. `None` when nothing is to be written.
fn fold<'a>(
    row: &'a RowWrite,
    key_column: &str,
    stored: Option<&Row>,
    superseded: &mut Vec<usize>,
) -> Option<Folded<'a>> {
    let mut versions = stored
        .and_then(|row| versions_of(&row.versions))
        .unwrap_or_default();
    let mut cells: Vec<(String, Value)> = Vec::new();
    for update in &row.updates {
        // The key column is the key: written when the row is made, never
        // versioned.
        let own = update
            .cells
            .iter()
            .filter(|(column, _)| column != key_column);
        let (mut offered, mut written) = (0, 0);
        for (column, value) in own {
            offered += 1;
            if versions
                .get(column)
                .is_some_and(|&newer| update.occurred_at < newer)
            {
                continue;
            }
            written += 1;
            versions.insert(column.clone(), update.occurred_at);
            match cells.iter_mut().find(|(name, _)| name == column) {
                Some((_, old)) => *old = value.clone(),
                None => cells.push((column.clone(), value.clone())),
            }
        }
        if offered > 0 && written == 0 {
            superseded.push(update.command);
        }
    }
    if cells.is_empty() && stored.is_some() {
        return None;
    }
    let versions = versions_text(&versions);
    if !cells.is_empty() {
        cells.push((VERSION_COLUMN.to_owned(), Value::String(versions.clone())));
    }
    Some(Folded {
        key: &row.key,
        at: stored.map(|row| row.at),
        versions,
        cells,
    })
}

/// The batch's rows by sheet (in sheet order, which is the lock order),
/// each key once with its commands in the batch's order.
fn plan(commands: &[SheetRowUpsert]) -> BTreeMap<SheetId, Vec<RowWrite>> {
    let mut plan: BTreeMap<SheetId, Vec<RowWrite>> = BTreeMap::new();
    for (at, command) in commands.iter().enumerate() {
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
                    updates: Vec::new(),
                });
                rows.len() - 1
            }
        };
        let cells = command.cells.iter().filter(|cell| {
            let forged = cell.column == VERSION_COLUMN;
            if forged {
                tracing::warn!(
                    command_id = command.command_id,
                    column = VERSION_COLUMN,
                    "a command writes sheets-sink's own column; that cell is dropped"
                );
            }
            !forged
        });
        rows[position].updates.push(Update {
            command: at,
            occurred_at: command.occurred_at,
            cells: cells
                .map(|cell| (cell.column.clone(), json_value(&cell.value)))
                .collect(),
        });
    }
    plan
}

/// A row's versions as the sheet holds them.
fn versions_text(versions: &Versions) -> String {
    serde_json::to_string(versions).unwrap_or_default()
}

/// A versions cell's text read back; one a person cleared or wrote over
/// says nothing, and the next upsert writes every cell and its own versions.
fn versions_of(text: &str) -> Option<Versions> {
    serde_json::from_str(text).ok()
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

    #[test]
    fn versions_read_back_as_written_and_anything_else_says_nothing() {
        let versions = Versions::from([("Status".into(), i64::MAX), ("Total".into(), -1)]);
        let text = versions_text(&versions);
        assert_eq!(versions_of(&text), Some(versions));
        for other in ["checked", "", "4915112345678", "[1]", "{\"Status\": \"x\"}"] {
            assert_eq!(versions_of(other), None, "{other}");
        }
    }

    fn update(command: usize, occurred_at: i64, cells: &[(&str, &str)]) -> Update {
        let cells = cells
            .iter()
            .map(|(column, value)| ((*column).to_owned(), Value::from(*value)))
            .collect();
        Update {
            command,
            occurred_at,
            cells,
        }
    }

    fn keyed(updates: Vec<Update>) -> RowWrite {
        RowWrite {
            key: "k-1".into(),
            key_column: "Order".into(),
            updates,
        }
    }

    #[test]
    fn an_older_command_fills_only_the_cells_no_newer_one_wrote() {
        let stored = Row {
            at: 3,
            versions: versions_text(&Versions::from([("Status".into(), 200)])).into(),
        };
        let row = keyed(vec![
            update(
                0,
                100,
                &[("Order", "k-1"), ("Status", "NEW"), ("Note", "first")],
            ),
            update(1, 150, &[("Order", "k-1"), ("Status", "PAID")]),
            update(2, 300, &[("Order", "k-1"), ("Note", "last")]),
            update(3, 250, &[("Order", "k-1"), ("Note", "late")]),
        ]);
        let mut superseded = Vec::new();
        let folded = fold(&row, "Order", Some(&stored), &mut superseded).unwrap();
        assert_eq!(
            superseded,
            [1, 3],
            "PAID and late were older than the row's"
        );
        assert_eq!(folded.at, Some(3));
        assert_eq!(
            versions_of(&folded.versions),
            Some(Versions::from([
                ("Note".into(), 300),
                ("Status".into(), 200)
            ]))
        );
        assert_eq!(
            folded.cells,
            [
                ("Note".to_owned(), Value::from("last")),
                (
                    VERSION_COLUMN.to_owned(),
                    Value::from(r#"{"Note":300,"Status":200}"#)
                ),
            ]
        );
    }

    #[test]
    fn a_command_without_cells_makes_a_new_row_and_leaves_an_old_one() {
        let bare = keyed(vec![update(0, 100, &[("Order", "k-1")])]);
        let mut superseded = Vec::new();
        let made = fold(&bare, "Order", None, &mut superseded).unwrap();
        assert_eq!((made.at, made.cells.len()), (None, 0));
        let stored = Row {
            at: 1,
            versions: "".into(),
        };
        assert!(fold(&bare, "Order", Some(&stored), &mut superseded).is_none());
        assert!(superseded.is_empty());
    }

    /// The sheet's key column is the key, whatever a command names first:
    /// a command led by another column still writes it.
    #[test]
    fn only_the_sheets_key_column_is_left_out() {
        let row = RowWrite {
            key: "k-1".into(),
            key_column: "Status".into(),
            updates: vec![update(0, 100, &[("Status", "PAID"), ("Note", "n")])],
        };
        let stored = Row {
            at: 2,
            versions: "".into(),
        };
        let folded = fold(&row, "Order", Some(&stored), &mut Vec::new()).unwrap();
        let columns: Vec<&str> = folded.cells.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(columns, ["Status", "Note", VERSION_COLUMN]);
    }

    #[test]
    fn a_commands_cell_in_the_versions_column_is_dropped() {
        let mut command = SheetRowUpsert {
            command_id: "c".into(),
            spreadsheet_id: "s".into(),
            sheet: "Orders".into(),
            row_key: "k-1".into(),
            cells: Vec::new(),
            source_event_id: "e".into(),
            occurred_at: 100,
            saga: None,
            correlation_id: None,
            causation_id: None,
        };
        for (column, value) in [("Order", "k-1"), (VERSION_COLUMN, r#"{"Status":9e18}"#)] {
            command.cells.push(sluice_contracts::types::SheetCell {
                column: column.into(),
                value: ScalarValue::String(value.into()),
            });
        }
        let plan = plan(&[command]);
        let updates = &plan.values().next().unwrap()[0].updates;
        let columns: Vec<&str> = updates[0].cells.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(columns, ["Order"]);
    }
}
