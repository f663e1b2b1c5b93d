//! Decoding the pgoutput messages the relay needs: Relation (which table a
//! relation id is, and its column names) and Insert (a new row's values, as
//! text). Begin, Commit and logical messages are decoded by the replication
//! client; every other message (Update, Delete, Truncate, Type, Origin) is
//! of no interest to an outbox and is skipped.

use std::collections::HashMap;
use std::sync::Arc;

/// A pgoutput message the relay acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A table's description, sent before its first change in a session.
    Relation(Relation),
    /// A row inserted into the relation `relation_id`.
    Insert {
        /// The relation.
        relation_id: u32,
        /// Column values as text; `None` for SQL NULL.
        values: Vec<Option<String>>,
    },
    /// Anything else.
    Other,
}

/// A table as pgoutput describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// Relation id.
    pub id: u32,
    /// Schema name.
    pub namespace: String,
    /// Table name.
    pub name: String,
    /// Column names, in order; shared with the rows decoded with them.
    pub columns: Arc<[String]>,
}

impl Relation {
    /// The row's values by column name.
    pub fn named<'a>(&'a self, values: &'a [Option<String>]) -> HashMap<&'a str, Option<&'a str>> {
        self.columns
            .iter()
            .map(String::as_str)
            .zip(values.iter().map(Option::as_deref))
            .collect()
    }
}

/// A pgoutput message that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed pgoutput {message} message: {reason}")]
pub struct DecodeError {
    /// Which message.
    pub message: &'static str,
    /// What is wrong.
    pub reason: String,
}

/// Decodes one pgoutput message (the payload of an XLogData frame).
pub fn decode(data: &[u8]) -> Result<Change, DecodeError> {
    let Some((&kind, rest)) = data.split_first() else {
        return Ok(Change::Other);
    };
    match kind {
        b'R' => relation(&mut Reader::new(rest, "Relation")).map(Change::Relation),
        b'I' => insert(&mut Reader::new(rest, "Insert")),
        _ => Ok(Change::Other),
    }
}

fn relation(reader: &mut Reader<'_>) -> Result<Relation, DecodeError> {
    let id = reader.u32()?;
    let namespace = reader.cstring()?;
    let name = reader.cstring()?;
    let _replica_identity = reader.u8()?;
    let count = reader.u16()?;
    let mut columns = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let _flags = reader.u8()?;
        columns.push(reader.cstring()?);
        let _type_oid = reader.u32()?;
        let _type_modifier = reader.u32()?;
    }
    Ok(Relation {
        id,
        namespace,
        name,
        columns: columns.into(),
    })
}

fn insert(reader: &mut Reader<'_>) -> Result<Change, DecodeError> {
    let relation_id = reader.u32()?;
    if reader.u8()? != b'N' {
        return Err(reader.error("expected a new tuple ('N')"));
    }
    let count = reader.u16()?;
    let mut values = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        values.push(match reader.u8()? {
            b'n' | b'u' => None,
            b't' => {
                let len = reader.u32()? as usize;
                let bytes = reader.take(len)?;
                Some(
                    String::from_utf8(bytes.to_vec())
                        .map_err(|_| reader.error("a text column is not UTF-8"))?,
                )
            }
            other => return Err(reader.error(&format!("unknown column kind {other:#04x}"))),
        });
    }
    Ok(Change::Insert {
        relation_id,
        values,
    })
}

/// A cursor over a message's bytes that names the message in its errors.
struct Reader<'a> {
    bytes: &'a [u8],
    message: &'static str,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], message: &'static str) -> Self {
        Self { bytes, message }
    }

    fn error(&self, reason: &str) -> DecodeError {
        DecodeError {
            message: self.message,
            reason: reason.to_owned(),
        }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < len {
            return Err(self.error(&format!("needs {len} more bytes, has {}", self.bytes.len())));
        }
        let (taken, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(taken)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        let bytes = self.take(2)?;
        Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let bytes = self.take(4)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn cstring(&mut self) -> Result<String, DecodeError> {
        let end = self
            .bytes
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| self.error("unterminated string"))?;
        let text = String::from_utf8(self.bytes[..end].to_vec())
            .map_err(|_| self.error("a name is not UTF-8"))?;
        self.bytes = &self.bytes[end + 1..];
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relation_message() -> Vec<u8> {
        let mut m = vec![b'R'];
        m.extend(16_385_u32.to_be_bytes());
        m.extend(b"public\0outbox\0");
        m.push(b'd');
        m.extend(2_u16.to_be_bytes());
        for column in ["id", "payload"] {
            m.push(1);
            m.extend(column.as_bytes());
            m.push(0);
            m.extend(25_u32.to_be_bytes());
            m.extend(u32::MAX.to_be_bytes());
        }
        m
    }

    fn insert_message(values: &[Option<&str>]) -> Vec<u8> {
        let mut m = vec![b'I'];
        m.extend(16_385_u32.to_be_bytes());
        m.push(b'N');
        m.extend(u16::try_from(values.len()).unwrap().to_be_bytes());
        for value in values {
            match value {
                Some(text) => {
                    m.push(b't');
                    m.extend(u32::try_from(text.len()).unwrap().to_be_bytes());
                    m.extend(text.as_bytes());
                }
                None => m.push(b'n'),
            }
        }
        m
    }

    #[test]
    fn relation_and_insert_decode() {
        let Change::Relation(relation) = decode(&relation_message()).unwrap() else {
            panic!()
        };
        assert_eq!(
            (relation.id, relation.name.as_str(), relation.columns.len()),
            (16_385, "outbox", 2)
        );
        let Change::Insert {
            relation_id,
            values,
        } = decode(&insert_message(&[Some("e-1"), None])).unwrap()
        else {
            panic!()
        };
        assert_eq!(relation_id, 16_385);
        let named = relation.named(&values);
        assert_eq!((named["id"], named["payload"]), (Some("e-1"), None));
    }

    #[test]
    fn other_messages_are_skipped_and_truncated_ones_refused() {
        assert_eq!(decode(b"D\0\0\0\x01").unwrap(), Change::Other);
        let mut truncated = insert_message(&[Some("abcdef")]);
        truncated.truncate(truncated.len() - 2);
        assert_eq!(
            decode(&truncated).unwrap_err().to_string(),
            "malformed pgoutput Insert message: needs 6 more bytes, has 4"
        );
    }
}
