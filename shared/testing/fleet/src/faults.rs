//! What goes wrong, and when: SIGKILLs of every service at random moments,
//! one broker restart, one Postgres restart, and the sandbox's APIs through
//! error storms and outages. Times are fractions of the load window, drawn
//! from a seed the report prints, so a run can be repeated.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// One thing that goes wrong.
#[derive(Debug, Clone)]
pub enum Fault {
    /// SIGKILL a service, start it again after `down`.
    Kill {
        /// The service.
        service: &'static str,
        /// How long it stays dead.
        down: Duration,
    },
    /// Stop and start the Kafka broker.
    RestartBroker,
    /// Stop and start Postgres.
    RestartPostgres,
    /// Set an API's faults in the sandbox for a while, then the baseline.
    Storm {
        /// `sheets` or `odoo`.
        api: &'static str,
        /// What to say, for the report.
        what: &'static str,
        /// The sandbox's fault settings during the storm.
        faults: Value,
        /// How long it lasts.
        lasts: Duration,
    },
}

/// A fault and when it strikes.
#[derive(Debug, Clone)]
pub struct Scheduled {
    /// Offset from the start of the load.
    pub at: Duration,
    /// What happens.
    pub fault: Fault,
}

/// Every fault of a run, in time order.
pub fn schedule(
    seed: u64,
    window: Duration,
    services: &[&'static str],
    kills_per_service: usize,
) -> Vec<Scheduled> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let at = |fraction: f64| window.mul_f64(fraction);
    let mut faults = vec![
        Scheduled {
            at: at(0.40),
            fault: Fault::RestartBroker,
        },
        Scheduled {
            at: at(0.70),
            fault: Fault::RestartPostgres,
        },
        Scheduled {
            at: at(0.15),
            fault: Fault::Storm {
                api: "sheets",
                what: "30 % 500s",
                faults: json!({"error_rates": {"500": 0.3}}),
                lasts: Duration::from_secs(15),
            },
        },
        Scheduled {
            at: at(0.25),
            fault: Fault::Storm {
                api: "odoo",
                what: "30 % 500s and 20 × 429",
                faults: json!({"error_rates": {"500": 0.3}, "burst_429": 20, "retry_after_secs": 1}),
                lasts: Duration::from_secs(15),
            },
        },
        Scheduled {
            at: at(0.55),
            fault: Fault::Storm {
                api: "odoo",
                what: "20 s outage",
                faults: json!({"outage_secs": 20}),
                lasts: Duration::from_secs(20),
            },
        },
        Scheduled {
            at: at(0.85),
            fault: Fault::Storm {
                api: "sheets",
                what: "20 s outage",
                faults: json!({"outage_secs": 20}),
                lasts: Duration::from_secs(20),
            },
        },
    ];
    for &service in services {
        for _ in 0..kills_per_service {
            faults.push(Scheduled {
                at: at(0.05 + 0.9 * rng.f64()),
                fault: Fault::Kill {
                    service,
                    down: Duration::from_millis(rng.u64(0..3_000)),
                },
            });
        }
    }
    faults.sort_by_key(|scheduled| scheduled.at);
    faults
}

/// Restarts a server of the local stack with its script, returning how long
/// it was away.
pub async fn restart_server(root: &std::path::Path, script: &str) -> Result<Duration> {
    let started = Instant::now();
    let path: PathBuf = root.join("deploy/local").join(script);
    let status = tokio::process::Command::new("bash")
        .arg(&path)
        .arg("restart")
        .status()
        .await
        .with_context(|| format!("running {}", path.display()))?;
    if !status.success() {
        bail!("{} restart failed: {status}", path.display());
    }
    Ok(started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_is_killed_as_often_as_asked_within_the_window() {
        let window = Duration::from_secs(100);
        let faults = schedule(7, window, &["a", "b"], 5);
        for service in ["a", "b"] {
            let kills = faults
                .iter()
                .filter(|s| matches!(s.fault, Fault::Kill { service: name, .. } if name == service))
                .count();
            assert_eq!(kills, 5);
        }
        assert!(faults.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(faults.iter().all(|s| s.at <= window));
        let restarts = faults
            .iter()
            .filter(|s| matches!(s.fault, Fault::RestartBroker | Fault::RestartPostgres))
            .count();
        assert_eq!(restarts, 2);
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let times = |seed| {
            schedule(seed, Duration::from_secs(60), &["a"], 5)
                .iter()
                .map(|s| s.at)
                .collect::<Vec<_>>()
        };
        assert_eq!(times(3), times(3));
        assert_ne!(times(3), times(4));
    }
}
