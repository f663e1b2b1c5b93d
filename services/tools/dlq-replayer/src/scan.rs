//! Reading dead letters: every `dlq.*.v1` topic (or the ones named) from its
//! start to its end as it was when the read began, or one coordinate; and
//! the audit trail the same way.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use sluice_avro::{AvroCodec, CodecError};
use sluice_contracts::types::{AuditRecord, DeadLetter};
use sluice_kafka::KafkaConfig;

use crate::coordinate::Coordinate;

/// A dead letter and where it is.
#[derive(Debug, Clone)]
pub struct Letter {
    /// Its place in the DLQ topic.
    pub at: Coordinate,
    /// The record.
    pub record: DeadLetter,
}

/// Why dead letters could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// Kafka failed or was unreachable.
    #[error("kafka ({doing}): {source}")]
    Kafka {
        /// What was being done.
        doing: String,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// The topic does not exist.
    #[error("unknown topic {0}: no such topic on the cluster")]
    UnknownTopic(String),
    /// The topic is not a DLQ.
    #[error("{0} is not a dead-letter topic (they are named dlq.<service>.v1)")]
    NotDlq(String),
    /// No message at the coordinate.
    #[error("bad coordinates {at}: {why}")]
    NoMessage {
        /// The coordinate.
        at: Coordinate,
        /// Why.
        why: String,
    },
    /// The registry could not be reached.
    #[error("schema registry unreachable: {0}")]
    Registry(String),
    /// The message at a coordinate is not a DeadLetter.
    #[error("{at} is not a DeadLetter record: {source}")]
    NotDeadLetter {
        /// The coordinate.
        at: Coordinate,
        /// The codec's error.
        source: CodecError,
    },
}

/// Whether `topic` is named like a DLQ.
pub fn is_dlq(topic: &str) -> bool {
    topic.starts_with("dlq.") && topic.ends_with(".v1")
}

/// Reads DLQ topics.
pub struct Scanner {
    consumer: StreamConsumer,
    codec: AvroCodec,
    timeout: Duration,
}

impl Scanner {
    /// A scanner on `kafka`, decoding through `codec`.
    pub fn new(
        kafka: &KafkaConfig,
        codec: AvroCodec,
        timeout: Duration,
    ) -> Result<Self, ScanError> {
        let consumer = kafka
            .client_config(&[
                // Assigned partitions only, never committed: the group is a name.
                ("group.id", "sluice-dlq-replayer"),
                ("enable.auto.commit", "false"),
                ("enable.partition.eof", "true"),
                ("isolation.level", "read_committed"),
            ])
            .create()
            .map_err(|source| ScanError::Kafka {
                doing: "creating a consumer".into(),
                source,
            })?;
        Ok(Self {
            consumer,
            codec,
            timeout,
        })
    }

    /// Serves what the client queued meanwhile: librdkafka's log lines
    /// (why a broker refused the TLS handshake, say) reach the log only when
    /// the consumer is polled, so a failed command calls this before it
    /// reports its error. Waits at most 200 ms for a message it discards.
    pub async fn serve_events(&self) {
        let _ = tokio::time::timeout(Duration::from_millis(200), self.consumer.recv()).await;
    }

    /// Every topic on the cluster.
    fn all_topics(&self) -> Result<Vec<String>, ScanError> {
        let metadata = self
            .consumer
            .fetch_metadata(None, self.timeout)
            .map_err(|source| ScanError::Kafka {
                doing: "listing topics".into(),
                source,
            })?;
        Ok(metadata
            .topics()
            .iter()
            .map(|t| t.name().to_owned())
            .collect())
    }

    /// Checks that each of `topics` exists (where a replay will send).
    pub fn require(&self, topics: &[&str]) -> Result<(), ScanError> {
        let all = self.all_topics()?;
        match topics.iter().find(|t| !all.iter().any(|a| a == *t)) {
            Some(missing) => Err(ScanError::UnknownTopic((*missing).to_owned())),
            None => Ok(()),
        }
    }

    /// The DLQ topics: `named` after checking each exists and is a DLQ, or
    /// every `dlq.*.v1` on the cluster.
    pub fn topics(&self, named: &[String]) -> Result<Vec<String>, ScanError> {
        let all = self.all_topics()?;
        if named.is_empty() {
            let mut dlqs: Vec<String> = all.into_iter().filter(|t| is_dlq(t)).collect();
            dlqs.sort();
            return Ok(dlqs);
        }
        for topic in named {
            if !all.contains(topic) {
                return Err(ScanError::UnknownTopic(topic.clone()));
            }
            if !is_dlq(topic) {
                return Err(ScanError::NotDlq(topic.clone()));
            }
        }
        Ok(named.to_vec())
    }

    /// Every dead letter in `topics`, up to each partition's end when the
    /// read began, in coordinate order. Records that are not DeadLetters are
    /// skipped with a warning on stderr.
    pub async fn scan(&self, topics: &[String]) -> Result<Vec<Letter>, ScanError> {
        let mut letters = Vec::new();
        // A topic at a time: librdkafka names only the partition at its end.
        for topic in topics {
            self.read(topic, async |message| {
                match self.letter(&message).await {
                    Ok(letter) => letters.push(letter),
                    Err(ScanError::NotDeadLetter { at, source }) => {
                        eprintln!("warning: skipping {at}: not a DeadLetter record ({source})");
                    }
                    Err(err) => return Err(err),
                }
                Ok(())
            })
            .await?;
        }
        letters.sort_by(|a, b| a.at.cmp(&b.at));
        Ok(letters)
    }

    /// The audit entries of `topic` (a write of many rows is an entry per
    /// row) that `keep` keeps, up to each partition's end when the read
    /// began, in the order they were recorded. Records that are not AuditRecords are skipped with a
    /// warning on stderr. Read as they come: the trail is kept for a year.
    pub async fn audit(
        &self,
        topic: &str,
        keep: impl Fn(&AuditRecord) -> bool,
    ) -> Result<Vec<AuditRecord>, ScanError> {
        let mut kept = Vec::new();
        self.read(topic, async |message| {
            let bytes = message.payload().unwrap_or_default();
            match self.codec.decode::<AuditRecord>(bytes).await {
                Ok(record) => kept.extend(record.entries().into_iter().filter(&keep)),
                Err(CodecError::RegistryUnavailable(why)) => return Err(ScanError::Registry(why)),
                Err(err) => eprintln!(
                    "warning: skipping {topic}:{}:{}: not an AuditRecord ({err})",
                    message.partition(),
                    message.offset()
                ),
            }
            Ok(())
        })
        .await?;
        kept.sort_by_key(|record| record.recorded_at);
        Ok(kept)
    }

    /// Hands every message of `topic` to `each`, up to each partition's end
    /// when the read began.
    async fn read(
        &self,
        topic: &str,
        mut each: impl AsyncFnMut(OwnedMessage) -> Result<(), ScanError>,
    ) -> Result<(), ScanError> {
        let mut ends: HashMap<i32, i64> = HashMap::new();
        let mut assignment = TopicPartitionList::new();
        for partition in self.partitions(topic)? {
            let (low, high) = self.watermarks(topic, partition)?;
            if high > low {
                ends.insert(partition, high);
                assignment
                    .add_partition_offset(topic, partition, Offset::Offset(low))
                    .map_err(|source| ScanError::Kafka {
                        doing: format!("assigning {topic} partition {partition}"),
                        source,
                    })?;
            }
        }
        if ends.is_empty() {
            return Ok(());
        }
        self.assign(&assignment)?;
        while !ends.is_empty() {
            let received = tokio::time::timeout(self.timeout, self.consumer.recv())
                .await
                .map_err(|_| ScanError::Kafka {
                    doing: format!("reading {topic}: nothing arrived in time"),
                    source: KafkaError::MessageConsumption(
                        rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
                    ),
                })?;
            match received {
                Ok(message) => {
                    let message = message.detach();
                    if ends
                        .get(&message.partition())
                        .is_some_and(|end| message.offset() + 1 >= *end)
                    {
                        ends.remove(&message.partition());
                    }
                    each(message).await?;
                }
                // The end of a partition (transaction markers can close it,
                // so its last offsets never arrive as messages).
                Err(KafkaError::PartitionEOF(partition)) => {
                    ends.remove(&partition);
                }
                Err(source) => {
                    return Err(ScanError::Kafka {
                        doing: format!("reading {topic}"),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// The dead letter at `at`.
    pub async fn fetch(&self, at: &Coordinate) -> Result<Letter, ScanError> {
        let no_message = |why: String| ScanError::NoMessage {
            at: at.clone(),
            why,
        };
        if !is_dlq(&at.topic) {
            return Err(ScanError::NotDlq(at.topic.clone()));
        }
        let partitions = self.partitions(&at.topic)?;
        if !partitions.contains(&at.partition) {
            return Err(no_message(format!(
                "{} has partitions 0..{}",
                at.topic,
                partitions.len()
            )));
        }
        let (low, high) = self.watermarks(&at.topic, at.partition)?;
        if at.offset < low || at.offset >= high {
            return Err(no_message(format!(
                "partition {} holds offsets {low}..{high}",
                at.partition
            )));
        }
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&at.topic, at.partition, Offset::Offset(at.offset))
            .map_err(|source| ScanError::Kafka {
                doing: format!("assigning {at}"),
                source,
            })?;
        self.assign(&assignment)?;
        let received = tokio::time::timeout(self.timeout, self.consumer.recv())
            .await
            .map_err(|_| no_message("nothing arrived from it in time".into()))?;
        match received {
            Ok(message) if message.offset() == at.offset => self.letter(&message.detach()).await,
            // A transaction marker sits there: what follows is another message.
            Ok(_) | Err(KafkaError::PartitionEOF(_)) => {
                Err(no_message("no message at that offset".into()))
            }
            Err(source) => Err(ScanError::Kafka {
                doing: format!("reading {at}"),
                source,
            }),
        }
    }

    async fn letter(&self, message: &OwnedMessage) -> Result<Letter, ScanError> {
        let at = Coordinate {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
        };
        let decoded = self
            .codec
            .decode(message.payload().unwrap_or_default())
            .await;
        let record = match decoded {
            Ok(record) => record,
            Err(CodecError::RegistryUnavailable(why)) => return Err(ScanError::Registry(why)),
            Err(source) => return Err(ScanError::NotDeadLetter { at, source }),
        };
        Ok(Letter { at, record })
    }

    fn partitions(&self, topic: &str) -> Result<Vec<i32>, ScanError> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(topic), self.timeout)
            .map_err(|source| ScanError::Kafka {
                doing: format!("reading the metadata of {topic}"),
                source,
            })?;
        let topic_metadata = metadata
            .topics()
            .first()
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .ok_or_else(|| ScanError::UnknownTopic(topic.to_owned()))?;
        Ok(topic_metadata.partitions().iter().map(|p| p.id()).collect())
    }

    fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64), ScanError> {
        self.consumer
            .fetch_watermarks(topic, partition, self.timeout)
            .map_err(|source| ScanError::Kafka {
                doing: format!("reading the offsets of {topic} partition {partition}"),
                source,
            })
    }

    fn assign(&self, assignment: &TopicPartitionList) -> Result<(), ScanError> {
        self.consumer
            .assign(assignment)
            .map_err(|source| ScanError::Kafka {
                doing: "assigning partitions".into(),
                source,
            })
    }
}
