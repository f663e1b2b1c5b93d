//! A1 notation: `Orders!A2:G2`, `Orders!A:A`, `'My sheet'!B3`, `Orders`.

/// A parsed range: the sheet and the cells it covers (0-based, inclusive;
/// `None` rows run to the end of the sheet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// Sheet title.
    pub sheet: String,
    /// First column.
    pub first_column: usize,
    /// Last column, if bounded.
    pub last_column: Option<usize>,
    /// First row.
    pub first_row: usize,
    /// Last row, if bounded.
    pub last_row: Option<usize>,
}

impl Range {
    /// Parses A1 notation; the error is Google's wording.
    pub fn parse(text: &str) -> Result<Self, String> {
        let refuse = || format!("Unable to parse range: {text}");
        let (sheet, cells) = match text.rsplit_once('!') {
            Some((sheet, cells)) => (sheet, Some(cells)),
            None => (text, None),
        };
        let sheet = sheet
            .strip_prefix('\'')
            .and_then(|s| s.strip_suffix('\''))
            .map_or_else(|| sheet.to_owned(), |s| s.replace("''", "'"));
        if sheet.is_empty() {
            return Err(refuse());
        }
        let Some(cells) = cells else {
            return Ok(Self {
                sheet,
                first_column: 0,
                last_column: None,
                first_row: 0,
                last_row: None,
            });
        };
        let (start, end) = cells.split_once(':').unwrap_or((cells, cells));
        let (first_column, first_row) = cell(start).ok_or_else(refuse)?;
        let (last_column, last_row) = cell(end).ok_or_else(refuse)?;
        Ok(Self {
            sheet,
            first_column: first_column.ok_or_else(refuse)?,
            last_column,
            first_row: first_row.unwrap_or(0),
            last_row: if first_row.is_none() { None } else { last_row },
        })
    }
}

/// `B3` → (column 1, row 2); `B` → (1, None); `3` is refused.
fn cell(text: &str) -> Option<(Option<usize>, Option<usize>)> {
    let letters: String = text.chars().take_while(char::is_ascii_alphabetic).collect();
    let digits = &text[letters.len()..];
    if letters.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let column = letters
        .chars()
        .try_fold(0usize, |n, c| {
            let digit = usize::from(c.to_ascii_uppercase() as u8 - b'A') + 1;
            n.checked_mul(26)?.checked_add(digit)
        })?
        .checked_sub(1)?;
    let row = if digits.is_empty() {
        None
    } else {
        Some(digits.parse::<usize>().ok()?.checked_sub(1)?)
    };
    Some((Some(column), row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_like_google_reads_them() {
        let range = Range::parse("Orders!A2:G2").unwrap();
        assert_eq!(
            (
                range.sheet.as_str(),
                range.first_column,
                range.last_column,
                range.first_row,
                range.last_row
            ),
            ("Orders", 0, Some(6), 1, Some(1))
        );
        let column = Range::parse("Orders!A:A").unwrap();
        assert_eq!(
            (column.first_row, column.last_row, column.last_column),
            (0, None, Some(0))
        );
        let quoted = Range::parse("'Q''s sheet'!AB10").unwrap();
        assert_eq!(
            (quoted.sheet.as_str(), quoted.first_column, quoted.first_row),
            ("Q's sheet", 27, 9)
        );
        assert_eq!(Range::parse("Orders").unwrap().last_row, None);
        assert!(Range::parse("Orders!3:4").is_err());
        assert!(Range::parse("!A1").is_err());
    }
}
