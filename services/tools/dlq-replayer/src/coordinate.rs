//! Where a message is: `topic:partition:offset`.

use std::fmt;
use std::str::FromStr;

/// A message's place in Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Coordinate {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

impl fmt::Display for Coordinate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.topic, self.partition, self.offset)
    }
}

impl FromStr for Coordinate {
    type Err = String;

    /// `topic:partition:offset`; the topic may itself hold colons.
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("{text:?} is not topic:partition:offset ({why})");
        let mut parts = text.rsplitn(3, ':');
        let offset = parts.next().ok_or_else(|| bad("no offset"))?;
        let partition = parts.next().ok_or_else(|| bad("no partition"))?;
        let topic = parts
            .next()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| bad("no topic"))?;
        Ok(Self {
            topic: topic.to_owned(),
            partition: partition
                .parse()
                .ok()
                .filter(|p| *p >= 0)
                .ok_or_else(|| bad("the partition is not a number ≥ 0"))?,
            offset: offset
                .parse()
                .ok()
                .filter(|o| *o >= 0)
                .ok_or_else(|| bad("the offset is not a number ≥ 0"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinates_parse_and_print() {
        let c: Coordinate = "dlq.erp-sink.v1:2:41"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (c.topic.as_str(), c.partition, c.offset),
            ("dlq.erp-sink.v1", 2, 41)
        );
        assert_eq!(c.to_string(), "dlq.erp-sink.v1:2:41");
        for bad in ["", "dlq:1", ":1:2", "dlq:x:2", "dlq:1:-3"] {
            assert!(bad.parse::<Coordinate>().is_err(), "{bad}");
        }
    }
}
