//! Timeouts fire from the database: every tick, the sagas whose deadline
//! passed are taken with `FOR UPDATE SKIP LOCKED`, so each fires on exactly
//! one replica. The same loop keeps the per-state gauges current and prunes
//! the outbox.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::definition::Saga;
use crate::metrics;
use crate::store::{Sagas, Store};

/// How long a saga the definition cannot read is passed over before it is
/// read again (and named again, if it still cannot be).
const UNREADABLE_RECHECK: Duration = Duration::from_secs(300);

/// How the timeout loop runs.
#[derive(Debug, Clone, Copy)]
pub struct TimeoutSettings {
    /// How often passed deadlines are looked for.
    pub tick: Duration,
    /// Deadlines fired per transaction.
    pub batch: i64,
    /// How often the per-state census is taken.
    pub census_every: Duration,
    /// A saga overdue by this much counts as stuck.
    pub overdue: Duration,
    /// Outbox rows older than this are deleted (the relay streams the WAL,
    /// not the table; the rows are kept only for operators to look at).
    pub outbox_retention: Duration,
}

/// [`run`] with shares of what it needs, for a task of its own.
pub fn owned<D: Serialize + DeserializeOwned + Send + Sync + 'static>(
    store: &Store,
    sagas: &Sagas,
    saga: &Arc<Saga<D>>,
    settings: TimeoutSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = ()> + Send + 'static {
    let (store, sagas, saga) = (store.clone(), sagas.clone(), Arc::clone(saga));
    async move { run(&store, &sagas, &saga, settings, shutdown).await }
}

/// Fires timeouts until `shutdown` completes.
pub async fn run<D: Serialize + DeserializeOwned>(
    store: &Store,
    sagas: &Sagas,
    saga: &Saga<D>,
    settings: TimeoutSettings,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut tick = tokio::time::interval(settings.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut census = tokio::time::interval(settings.census_every);
    census.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut unreadable, mut since) = (Vec::new(), Instant::now());
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = tick.tick() => {
                // An operator may have fixed them: read them again.
                if since.elapsed() >= UNREADABLE_RECHECK {
                    (unreadable, since) = (Vec::new(), Instant::now());
                }
                fire(store, saga, settings.batch, &mut unreadable).await;
            }
            _ = census.tick() => {
                match sagas.census(&saga.name, settings.overdue).await {
                    Ok((states, stuck)) => metrics::census(&saga.name, &states, stuck),
                    Err(err) => tracing::warn!(error = %err, "saga census failed"),
                }
                if let Err(err) = sagas.prune_outbox(settings.outbox_retention).await {
                    tracing::warn!(error = %err, "pruning the outbox failed");
                }
            }
        }
    }
}

/// Fires every passed deadline, a batch at a time. A saga this definition
/// cannot read is named and passed over (it counts as stuck until an
/// operator sees to it).
async fn fire<D: Serialize + DeserializeOwned>(
    store: &Store,
    saga: &Saga<D>,
    batch: i64,
    unreadable: &mut Vec<Uuid>,
) {
    loop {
        match store.fire_due(saga, batch, unreadable).await {
            Ok(fired) => {
                for (saga_id, reason) in fired.unreadable {
                    tracing::error!(%saga_id, reason, "a saga this definition cannot read: its timeout does not fire; `show` it, then fix or delete it");
                    unreadable.push(saga_id);
                }
                if usize::try_from(batch).is_ok_and(|batch| fired.rows < batch) {
                    return;
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "firing saga timeouts failed; next tick tries again");
                return;
            }
        }
    }
}
