//! The one topology the demo and the chaos run start: two outbox relays (the
//! business outbox and the saga's), the transformer with the shipped rules,
//! both sinks against the sandbox, ingest and the saga orchestrator. What a
//! run changes is only its tuning (rates, timeouts), never who handles what.

use std::path::Path;

use crate::ServiceSpec;

/// Flags a run adds to a service of the topology, by service name.
pub type Tuning = &'static [(&'static str, &'static [&'static str])];

/// The services, when they start: the orchestrator first (it makes its
/// outbox's slot before writing a row), ingest last.
pub const SERVICES: [&str; 7] = [
    "saga-orchestrator",
    "saga-outbox-relay",
    "outbox-relay",
    "transformer",
    "sheets-sink",
    "erp-sink",
    "ingest",
];

/// What the topology is wired to.
pub struct Wiring<'a> {
    /// The sandbox's base URL (Sheets and Odoo).
    pub sandbox: &'a str,
    /// The service account key the sandbox's token endpoint trusts.
    pub service_account: &'a Path,
    /// ingest's API port.
    pub ingest_port: u16,
    /// SHA-256 (hex) of ingest's bearer token.
    pub token_sha256: &'a str,
}

/// The topology's services, each with the run's tuning added.
pub fn services(wiring: &Wiring<'_>, tuning: Tuning) -> Vec<ServiceSpec> {
    SERVICES
        .iter()
        .map(|&name| {
            let mut spec = base(name, wiring);
            for (_, extra) in tuning.iter().filter(|(service, _)| *service == name) {
                spec.args.extend(extra.iter().map(|a| (*a).to_owned()));
            }
            spec
        })
        .collect()
}

/// Service `name` as the chart runs it: the flags that say what it does.
fn base(name: &'static str, wiring: &Wiring<'_>) -> ServiceSpec {
    let key = wiring.service_account.display().to_string();
    let owned = |args: &[&str]| args.iter().map(|a| (*a).to_owned()).collect();
    let spec = |binary: &str, args| ServiceSpec {
        name,
        replica: 0,
        binary: binary.to_owned(),
        args,
        env: vec![],
        clear_env: false,
        in_image: None,
        probes: vec![],
        progress: progress(binary),
    };
    match name {
        "saga-orchestrator" => spec("saga-orchestrator", owned(&["run"])),
        "saga-outbox-relay" => spec(
            "outbox-relay",
            owned(&[
                "--outbox-table",
                "saga.outbox",
                "--outbox-format",
                "addressed",
                "--outbox-slot",
                "sluice_saga_outbox",
                "--outbox-publication",
                "sluice_saga_outbox",
            ]),
        ),
        "outbox-relay" => spec("outbox-relay", vec![]),
        "transformer" => spec(
            "transformer",
            owned(&["--rules", "services/fleet/transformer/rules.toml"]),
        ),
        "sheets-sink" => spec(
            "sheets-sink",
            owned(&[
                "--service-account",
                &key,
                "--sheets-base-url",
                wiring.sandbox,
            ]),
        ),
        "erp-sink" => spec("erp-sink", owned(&sandbox_odoo(wiring.sandbox))),
        _ => ServiceSpec {
            env: vec![
                (
                    "SLUICE_INGEST_TOKEN_SHA256".into(),
                    wiring.token_sha256.to_owned(),
                ),
                (
                    "SLUICE_INGEST_LISTEN".into(),
                    format!("127.0.0.1:{}", wiring.ingest_port),
                ),
            ],
            ..spec("ingest", vec![])
        },
    }
}

/// The counter of a binary's /metrics that moves when it works (ingest has
/// none: it works when called).
pub fn progress(binary: &str) -> Option<&'static str> {
    match binary {
        "ingest" => None,
        "outbox-relay" => Some("sluice_outbox_relayed_total"),
        _ => Some("sluice_consumed_total"),
    }
}

/// erp-sink's flags for the sandbox's Odoo at `sandbox` (the database,
/// login and password the sandbox binary serves by default).
pub fn sandbox_odoo(sandbox: &str) -> [&str; 8] {
    [
        "--odoo-url",
        sandbox,
        "--odoo-database",
        "sluice",
        "--odoo-login",
        "sluice",
        "--odoo-password",
        "sandbox",
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuning_adds_flags_and_changes_no_one_s_role() {
        let wiring = Wiring {
            sandbox: "http://127.0.0.1:1",
            service_account: Path::new("/k.json"),
            ingest_port: 2,
            token_sha256: "ab",
        };
        let plain = services(&wiring, &[]);
        let tuned = services(&wiring, &[("erp-sink", &["--burst", "5"])]);
        assert_eq!(plain.len(), SERVICES.len());
        for (plain, tuned) in plain.iter().zip(&tuned) {
            assert_eq!(plain.binary, tuned.binary);
            assert!(tuned.args.starts_with(&plain.args));
        }
        let erp = tuned.iter().find(|s| s.name == "erp-sink").unwrap();
        assert!(erp.args.ends_with(&["--burst".to_owned(), "5".to_owned()]));
    }
}
