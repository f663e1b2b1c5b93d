//! The ERP's limit is the fleet's: three replicas of one group, each
//! configured with the whole rate, pace to the share of the partitions
//! each owns, and together stay within the rate, as the sandbox's request
//! log shows.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::num::NonZeroU32;

use common::{Topics, Tuning, command, request_times, results, sandbox, send, start};
use sluice_contracts::types::{ErpCommand, ErpOperation, ErpOutcome};
use sluice_resilience::LimiterConfig;
use sluice_testkit::{Pace, unique_name};

/// Requests a second the ERP allows the whole fleet.
const RATE: f64 = 20.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_keep_to_the_erp_limit_together() {
    let base = sandbox().await;
    let topics = Topics::create("erp-quota", 6).await;
    let group = unique_name("erp-quota");
    let replicas: Vec<_> = (0..3)
        .map(|_| {
            let tuning = Tuning {
                limiter: LimiterConfig {
                    capacity: NonZeroU32::MIN,
                    refill_per_second: RATE,
                },
                group: group.clone(),
                shared_quota: true,
                ..Tuning::quick()
            };
            start(&base, &topics, tuning)
        })
        .collect();
    let commands: Vec<ErpCommand> = (1..=120)
        .map(|n| command(n, ErpOperation::Create, &format!("so-{n}"), 1.0, "c"))
        .collect();
    send(&topics.commands.name, &commands).await;
    let results = results(&topics.results.name, commands.len()).await;
    for stop in replicas {
        stop.send(()).unwrap();
    }
    assert!(
        results.iter().all(|r| r.outcome == ErpOutcome::Applied),
        "{results:?}"
    );

    // Every request, the logins and model checks too: all are paced.
    let pace = Pace::of(&request_times(&base).await);
    println!(
        "{} requests, {:.1}/s together against {RATE}/s",
        pace.requests, pace.per_second
    );
    assert!(
        pace.per_second <= RATE * 1.05,
        "{:.1} requests/s, over {RATE}/s by more than 5 %",
        pace.per_second
    );
}
