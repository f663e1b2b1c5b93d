//! The largest record a topic takes: the lower of the producer's own
//! `message.max.bytes` and the topic's `max.message.bytes`, so a writer can
//! refuse (or dead-letter) a record before Kafka does — a refused send is
//! no help to a caller and, retried, wedges whatever waits behind it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;

use crate::{KafkaConfig, KafkaSetupError};

/// How long a topic's size limit is trusted before it is read again.
const LIMIT_TTL: Duration = Duration::from_secs(60);

/// Room for the record batch's framing around one record's key, value and
/// headers (61 bytes of batch header, up to 21 of record varints, rounded up).
pub const RECORD_OVERHEAD: usize = 128;

/// Each topic's `max.message.bytes`, read from the broker and cached.
pub struct TopicLimits {
    admin: AdminClient<DefaultClientContext>,
    /// The producer's own `message.max.bytes` (librdkafka's default 1 MB).
    producer_limit: usize,
    known: tokio::sync::Mutex<HashMap<String, (Instant, usize)>>,
}

impl TopicLimits {
    /// Limits as `kafka`'s producers and topics set them.
    pub fn new(kafka: &KafkaConfig) -> Result<Self, KafkaSetupError> {
        let producer_limit = kafka
            .properties()
            .iter()
            .find(|(key, _)| key == "message.max.bytes")
            .and_then(|(_, value)| value.parse().ok())
            .unwrap_or(1_000_000);
        let admin = kafka
            .client_config(&[])
            .create()
            .map_err(|source| KafkaSetupError {
                client: "admin client",
                source,
            })?;
        Ok(Self {
            admin,
            producer_limit,
            known: tokio::sync::Mutex::default(),
        })
    }

    /// The largest record `topic` takes; the producer's limit when the
    /// broker cannot say (the send then finds out). Either answer is kept
    /// for a while: a broker that does not answer would otherwise cost
    /// every request the admin timeout.
    pub async fn max_message_bytes(&self, topic: &str) -> usize {
        if let Some((read_at, limit)) = self.known.lock().await.get(topic)
            && read_at.elapsed() < LIMIT_TTL
        {
            return *limit;
        }
        let limit = self
            .read(topic)
            .await
            .map_or(self.producer_limit, |limit| limit.min(self.producer_limit));
        self.known
            .lock()
            .await
            .insert(topic.to_owned(), (Instant::now(), limit));
        limit
    }

    async fn read(&self, topic: &str) -> Option<usize> {
        let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(5)));
        let described = self
            .admin
            .describe_configs(&[ResourceSpecifier::Topic(topic)], &options)
            .await
            .ok()?;
        let resource = described.into_iter().next()?.ok()?;
        resource
            .get("max.message.bytes")?
            .value
            .as_deref()?
            .parse()
            .ok()
    }
}
