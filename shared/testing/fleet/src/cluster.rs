//! The Kafka cluster as the chaos run needs to see it: which node leads the
//! most partitions, which node coordinates a transactional id's
//! transactions, and whether every replica is back in sync.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::metadata::Metadata;

/// Where the broker keeps transaction state: one partition per
/// transactional id, led by that id's coordinator.
const TRANSACTION_STATE: &str = "__transaction_state";

/// A metadata client of the cluster.
pub struct Cluster {
    client: BaseConsumer,
}

/// A node and how many partition leaders it holds.
#[derive(Debug, Clone, Copy)]
pub struct Leading {
    /// The node id (kafka.sh's node number).
    pub node: i32,
    /// Partitions it leads.
    pub leads: usize,
    /// Partitions in the cluster.
    pub of: usize,
}

impl Cluster {
    /// A client of the cluster at `bootstrap`.
    pub fn connect(bootstrap: &str) -> Result<Self> {
        let client = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .context("creating the cluster's metadata client")?;
        Ok(Self { client })
    }

    fn metadata(&self) -> Result<Metadata> {
        // librdkafka's metadata call blocks; the runtime moves its other
        // tasks off this worker meanwhile (multi-threaded runtimes only).
        tokio::task::block_in_place(|| {
            self.client
                .fetch_metadata(None, Duration::from_secs(10))
                .context("reading the cluster's metadata")
        })
    }

    /// The node leading the most partitions (the lowest id on a tie).
    pub fn most_leaders(&self) -> Result<Leading> {
        let metadata = self.metadata()?;
        let leaders: Vec<i32> = metadata
            .topics()
            .iter()
            .flat_map(|topic| topic.partitions().iter().map(|p| p.leader()))
            .collect();
        let node = metadata
            .brokers()
            .iter()
            .map(|broker| broker.id())
            .max_by_key(|&id| (leaders.iter().filter(|&&l| l == id).count(), -id))
            .ok_or_else(|| anyhow!("the cluster has no brokers"))?;
        Ok(Leading {
            node,
            leads: leaders.iter().filter(|&&l| l == node).count(),
            of: leaders.len(),
        })
    }

    /// The node coordinating `transactional_id`: the leader of its
    /// partition of the transaction state, as the broker picks it
    /// (TransactionStateManager.partitionFor).
    pub fn transaction_coordinator(&self, transactional_id: &str) -> Result<i32> {
        let metadata = self.metadata()?;
        let state = metadata
            .topics()
            .iter()
            .find(|topic| topic.name() == TRANSACTION_STATE)
            .filter(|topic| !topic.partitions().is_empty())
            .ok_or_else(|| anyhow!("no {TRANSACTION_STATE} yet: no transaction has begun"))?;
        let count = i32::try_from(state.partitions().len()).context("partition count")?;
        let partition = java_abs(java_hash(transactional_id)) % count;
        state
            .partitions()
            .iter()
            .find(|p| p.id() == partition)
            .map(|p| p.leader())
            .filter(|&leader| leader >= 0)
            .ok_or_else(|| anyhow!("{TRANSACTION_STATE} partition {partition} has no leader"))
    }

    /// Partitions with a replica out of sync (or no leader).
    pub fn under_replicated(&self) -> Result<usize> {
        Ok(self
            .metadata()?
            .topics()
            .iter()
            .flat_map(|topic| topic.partitions())
            .filter(|p| p.leader() < 0 || p.isr().len() < p.replicas().len())
            .count())
    }

    /// Waits until every replica is in sync again, up to `within`: two
    /// readings in a row, a second apart, since a node just back (or not
    /// yet fenced) may answer from stale metadata once.
    pub async fn wait_whole(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        let mut whole_before = false;
        loop {
            // A node just back may not answer yet: ask again.
            let whole = matches!(self.under_replicated(), Ok(0));
            if whole && whole_before {
                return Ok(());
            }
            whole_before = whole;
            if Instant::now() > deadline {
                bail!(
                    "partitions still under-replicated after {within:?}: {:?}",
                    self.under_replicated()
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Java's `String.hashCode` over UTF-16 code units.
fn java_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// Kafka's `Utils.abs`: `Math.abs`, except that `MIN_VALUE` is 0.
fn java_abs(n: i32) -> i32 {
    if n == i32::MIN { 0 } else { n.abs() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coordinator_partition_is_the_brokers_own() {
        // Values of Java's "…".hashCode().
        assert_eq!(java_hash("hello"), 99_162_322);
        assert_eq!(java_hash("sluice-transformer-chaos"), 297_487_182);
        assert_eq!(java_hash("polygenelubricants"), i32::MIN);
        assert_eq!(java_abs(java_hash("polygenelubricants")), 0);
        assert_eq!(java_abs(-7), 7);
    }
}
