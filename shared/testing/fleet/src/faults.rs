//! What goes wrong, and when: SIGKILLs of every service at random moments;
//! on the three-node Kafka cluster a graceful broker restart, the node
//! leading the most partitions and the transaction coordinator's node
//! SIGKILLed, a node cut off (SIGSTOP); Postgres SIGKILLed and restarted;
//! and the sandbox's APIs through error storms and outages. Times are
//! fractions of the load window, drawn from a seed the report prints, so a
//! run can be repeated. The servers' faults run one after another, each once
//! the cluster is whole again (see `run`).

use std::path::PathBuf;
use std::time::Duration;

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
    /// Stop a Kafka node gracefully and start it again (a rolling restart).
    RestartBroker,
    /// SIGKILL a Kafka node, start it again after `down`.
    KillBroker {
        /// Which node.
        which: Broker,
        /// How long it stays dead.
        down: Duration,
    },
    /// SIGSTOP a Kafka node, SIGCONT it after `lasts`: to the others and
    /// to clients it is cut off, its connections open but silent.
    PauseBroker {
        /// How long it is cut off.
        lasts: Duration,
    },
    /// Stop Postgres (fast shutdown) and start it again.
    RestartPostgres,
    /// SIGKILL Postgres and every backend, start it again after `down`.
    KillPostgres {
        /// How long it stays dead.
        down: Duration,
    },
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

/// A Kafka node, named by its role when the fault strikes.
#[derive(Debug, Clone, Copy)]
pub enum Broker {
    /// The node leading the most partitions.
    MostLeaders,
    /// The coordinator of this transactional id's transactions.
    Coordinator(&'static str),
}

impl Fault {
    /// Whether it strikes a server of the stack (they strike one at a time).
    pub fn is_server(&self) -> bool {
        !matches!(self, Fault::Kill { .. } | Fault::Storm { .. })
    }
}

/// A fault and when it strikes.
#[derive(Debug, Clone)]
pub struct Scheduled {
    /// Offset from the start of the load.
    pub at: Duration,
    /// What happens.
    pub fault: Fault,
}

/// Every fault of a run, in time order; `transactional_id` is the
/// transactional producer whose coordinator is killed.
pub fn schedule(
    seed: u64,
    window: Duration,
    services: &[&'static str],
    kills_per_service: usize,
    transactional_id: &'static str,
) -> Vec<Scheduled> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let at = |fraction: f64| window.mul_f64(fraction);
    let server = |fraction, fault| Scheduled {
        at: at(fraction),
        fault,
    };
    let mut faults = vec![
        server(0.05, Fault::RestartBroker),
        server(
            0.20,
            Fault::KillBroker {
                which: Broker::MostLeaders,
                down: Duration::from_secs(5),
            },
        ),
        server(
            0.40,
            Fault::KillBroker {
                which: Broker::Coordinator(transactional_id),
                down: Duration::from_secs(5),
            },
        ),
        server(
            0.55,
            Fault::PauseBroker {
                lasts: Duration::from_secs(15),
            },
        ),
        server(
            0.70,
            Fault::KillPostgres {
                down: Duration::from_secs(2),
            },
        ),
        server(0.85, Fault::RestartPostgres),
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

/// Runs a script of the local stack (`kafka.sh kill 2`).
pub async fn stack_script(root: &std::path::Path, script: &str, args: &[&str]) -> Result<()> {
    let path: PathBuf = root.join("deploy/local").join(script);
    let status = tokio::process::Command::new("bash")
        .arg(&path)
        .args(args)
        .status()
        .await
        .with_context(|| format!("running {}", path.display()))?;
    if !status.success() {
        bail!("{} {} failed: {status}", path.display(), args.join(" "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_is_killed_as_often_as_asked_within_the_window() {
        let window = Duration::from_secs(100);
        let faults = schedule(7, window, &["a", "b"], 5, "t");
        for service in ["a", "b"] {
            let kills = faults
                .iter()
                .filter(|s| matches!(s.fault, Fault::Kill { service: name, .. } if name == service))
                .count();
            assert_eq!(kills, 5);
        }
        assert!(faults.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(faults.iter().all(|s| s.at <= window));
        let servers = faults.iter().filter(|s| s.fault.is_server()).count();
        assert_eq!(servers, 6);
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let times = |seed| {
            schedule(seed, Duration::from_secs(60), &["a"], 5, "t")
                .iter()
                .map(|s| s.at)
                .collect::<Vec<_>>()
        };
        assert_eq!(times(3), times(3));
        assert_ne!(times(3), times(4));
    }
}
