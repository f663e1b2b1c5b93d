//! The batches each partition task has in hand, so that a revoke waits for
//! them. librdkafka hands a revoked partition to its next owner as soon as
//! the rebalance callback returns; a batch this member was still applying
//! then ran twice at once, here and there, and a sink whose idempotence is
//! "look up, then create" created the record twice (the chart-run, two
//! erp-sink replicas: one sale order twice when the second replica joined
//! under load). Now the callback stops the revoked partitions' tasks from
//! starting another batch and waits, up to a grace, for the batch in hand
//! to be settled and its offset stored, as a Java consumer's
//! `onPartitionsRevoked` does.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::context::Partition;

/// Batches in hand and the stop of each partition's task.
#[derive(Debug)]
pub(crate) struct InHand {
    state: Mutex<State>,
    /// For the revoke callback's blocking wait.
    settled: Condvar,
    /// For a task waiting on an earlier task's batch.
    released: Notify,
    grace: Duration,
}

#[derive(Debug, Default)]
struct State {
    batches: HashMap<Partition, usize>,
    stops: HashMap<Partition, CancellationToken>,
}

/// A batch in hand; dropping it settles it.
pub(crate) struct Batch<'a> {
    in_hand: &'a InHand,
    partition: Partition,
}

impl InHand {
    /// Revokes wait up to `grace` for batches in hand.
    pub(crate) fn new(grace: Duration) -> Self {
        Self {
            state: Mutex::default(),
            settled: Condvar::new(),
            released: Notify::new(),
            grace,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Notes the stop of `partition`'s task, for a revoke to fire.
    pub(crate) fn watch(&self, partition: Partition, stop: CancellationToken) {
        self.lock().stops.insert(partition, stop);
    }

    /// Waits until no earlier task of `partition` has a batch in hand (its
    /// revoke outwaited the grace, and the partition came back); `false`
    /// once `stop` fires. A task waits here before it takes a permit, so
    /// that the wait holds no other partition back.
    pub(crate) async fn until_free(&self, partition: &Partition, stop: &CancellationToken) -> bool {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            {
                let state = self.lock();
                if !state.batches.contains_key(partition) {
                    return true;
                }
                // Registered before the lock goes: a release in between wakes it.
                released.as_mut().enable();
            }
            tokio::select! {
                () = stop.cancelled() => return false,
                () = released => {}
            }
        }
    }

    /// Takes a batch of `partition` in hand, unless its task was stopped
    /// (checked after counting, so a revoke either sees the batch or the
    /// task sees the stop). A batch that an earlier task of the partition
    /// still holds is waited for first ([`Self::until_free`]): it is applied
    /// once, and its offset is stored before this task stores a later one.
    pub(crate) async fn begin(
        &self,
        partition: &Partition,
        stop: &CancellationToken,
    ) -> Option<Batch<'_>> {
        loop {
            if !self.until_free(partition, stop).await {
                return None;
            }
            let mut state = self.lock();
            if let Entry::Vacant(free) = state.batches.entry(partition.clone()) {
                free.insert(1);
                break;
            }
        }
        let batch = Batch {
            in_hand: self,
            partition: partition.clone(),
        };
        (!stop.is_cancelled()).then_some(batch)
    }

    /// Stops the tasks of `revoked` and waits, up to the grace, until none
    /// has a batch in hand. Called from librdkafka's rebalance callback:
    /// on a multi-threaded runtime the wait hands this worker's other tasks
    /// to another thread; on a single-threaded one the tasks could not run
    /// while it waits, so it does not.
    pub(crate) fn revoke(&self, revoked: &[Partition]) {
        {
            let mut state = self.lock();
            for partition in revoked {
                if let Some(stop) = state.stops.remove(partition) {
                    stop.cancel();
                }
            }
        }
        // A loop whose batches are not held (the transactional one: its
        // revoked work is aborted with its transaction) does not wait, nor
        // leave its worker for a blocking section.
        if self.grace.is_zero() {
            return;
        }
        let wait = || self.wait_settled(revoked);
        match Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::CurrentThread => {}
            Ok(_) => tokio::task::block_in_place(wait),
            Err(_) => wait(),
        }
    }

    fn wait_settled(&self, revoked: &[Partition]) {
        let deadline = Instant::now() + self.grace;
        let mut state = self.lock();
        loop {
            let busy: Vec<&Partition> = revoked
                .iter()
                .filter(|p| state.batches.get(*p).is_some_and(|n| *n > 0))
                .collect();
            if busy.is_empty() {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(?busy, grace = ?self.grace,
                    "revoked partitions still have a batch in hand; its messages may be handled twice");
                return;
            }
            state = self
                .settled
                .wait_timeout(state, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        let mut state = self.in_hand.lock();
        if let Some(count) = state.batches.get_mut(&self.partition) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                state.batches.remove(&self.partition);
            }
        }
        drop(state);
        self.in_hand.settled.notify_all();
        self.in_hand.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn partition() -> Partition {
        ("t".to_owned(), 0)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_revoke_waits_for_the_batch_in_hand_and_stops_the_next() {
        let in_hand = Arc::new(InHand::new(Duration::from_secs(10)));
        let stop = CancellationToken::new();
        in_hand.watch(partition(), stop.clone());
        let (held, release) = tokio::sync::oneshot::channel::<()>();
        let worker = {
            let in_hand = Arc::clone(&in_hand);
            let stop = stop.clone();
            tokio::spawn(async move {
                let batch = in_hand.begin(&partition(), &stop).await;
                assert!(batch.is_some());
                held.send(()).ok();
                tokio::time::sleep(Duration::from_millis(300)).await;
                // Taken before the release: the revoke may wake first.
                let released = Instant::now();
                drop(batch);
                released
            })
        };
        release.await.ok();
        in_hand.revoke(&[partition()]);
        let revoked_at = Instant::now();
        let settled_at = worker.await.expect("the worker");
        assert!(
            settled_at <= revoked_at,
            "the revoke returned before the batch was settled"
        );
        assert!(stop.is_cancelled());
        assert!(
            in_hand.begin(&partition(), &stop).await.is_none(),
            "a stopped task took another batch"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_that_outlasts_the_grace_lets_the_revoke_go_and_holds_the_next_owner() {
        let in_hand = Arc::new(InHand::new(Duration::from_millis(100)));
        let old = CancellationToken::new();
        let batch = in_hand.begin(&partition(), &old).await;
        assert!(batch.is_some());
        let started = Instant::now();
        in_hand.revoke(&[partition()]);
        assert!(started.elapsed() < Duration::from_secs(5));
        // The partition comes back to this member: its new task waits for
        // the old task's batch.
        let (calling, called) = tokio::sync::oneshot::channel::<()>();
        let next = {
            let in_hand = Arc::clone(&in_hand);
            tokio::spawn(async move {
                let fresh = CancellationToken::new();
                calling.send(()).ok();
                in_hand
                    .begin(&partition(), &fresh)
                    .await
                    .is_some()
                    .then(Instant::now)
            })
        };
        called.await.ok();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!next.is_finished(), "the next owner did not wait");
        let released_at = Instant::now();
        drop(batch);
        let began_at = next.await.expect("the next task").expect("a batch");
        assert!(
            began_at >= released_at,
            "the next owner began beside the old batch"
        );
    }
}
