//! The chart's probes asked as the kubelet asks them, on the running fleet:
//! every startup, liveness and readiness probe of every pod answers 200
//! once the stream is reconciled. Then a Kafka blip (the broker stopped
//! with SIGSTOP): ingest's own dependency check (`/readyz`) fails, and its
//! readiness probe must still answer 200 on every replica. A blip of a
//! server all replicas share must not take them all out of the Service at
//! once (clients would see refused connections); ingest itself answers 503
//! with Retry-After when Kafka does not acknowledge in time.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use sluice_fleet::faults::stack_script;
use sluice_fleet::{Finished, Harness};

/// Longest wait for ingest's dependency check to see the blip.
const SEEN_WITHIN: Duration = Duration::from_secs(30);

/// Asks every probe of every pod.
pub async fn check(finished: &Finished) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let mut asked = 0;
    for service in &finished.fleet.services {
        for probe in &service.spec.probes {
            let status = status(&client, &format!("{}{}", service.http, probe.path)).await;
            ensure!(
                status == Some(200),
                "{} (replica {}): its {} probe {} answered {status:?}",
                service.spec.name,
                service.spec.replica,
                probe.kind,
                probe.path
            );
            asked += 1;
        }
    }
    ensure!(asked > 0, "the chart's pods have no HTTP probes");
    println!("[probes] {asked} probes of the chart's pods answered 200");
    Ok(())
}

/// Stops Kafka for a moment: ingest's replicas must stay ready.
pub async fn blip(finished: &Finished, harness: &Harness) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let outcome = match stack_script(&harness.root, "kafka.sh", &["pause", "1"]).await {
        Ok(()) => ingest_through_blip(finished, &client).await,
        Err(error) => Err(error),
    };
    stack_script(&harness.root, "kafka.sh", &["resume", "1"])
        .await
        .context("resuming Kafka")?;
    outcome
}

/// While Kafka is stopped: ingest's /readyz fails, its readiness probe not.
async fn ingest_through_blip(finished: &Finished, client: &reqwest::Client) -> Result<()> {
    let ingest: Vec<_> = finished.fleet.replicas("ingest").collect();
    let first = ingest.first().context("no ingest in the fleet")?;
    let deadline = Instant::now() + SEEN_WITHIN;
    while status(client, &format!("{}/readyz", first.http)).await == Some(200) {
        if Instant::now() > deadline {
            bail!("ingest's /readyz still answers 200 {SEEN_WITHIN:?} into the Kafka blip");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for replica in &ingest {
        for probe in replica.spec.probes.iter().filter(|p| p.kind == "readiness") {
            let status = status(client, &format!("{}{}", replica.http, probe.path)).await;
            ensure!(
                status == Some(200),
                "ingest replica {}: its readiness probe {} answered {status:?} during a Kafka blip: \
                 every replica would leave the Service at once",
                replica.spec.replica,
                probe.path
            );
        }
    }
    println!(
        "[probes] Kafka stopped: ingest's /readyz fails, its readiness probe still answers 200 on {} replicas",
        ingest.len()
    );
    Ok(())
}

async fn status(client: &reqwest::Client, url: &str) -> Option<u16> {
    client
        .get(url)
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}
