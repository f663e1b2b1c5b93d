//! The audit trail's flags: where the services that act on the outside
//! world record what they did, and who the operator is.

/// The audit topic flag, shared by every program that writes the trail.
#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    /// Topic of the audit trail: every external write, webhook and replay.
    #[arg(
        long,
        env = "SLUICE_AUDIT_TOPIC",
        default_value = "audit.v1",
        global = true
    )]
    pub audit_topic: String,
}

/// The instance a service's audit records name as their actor:
/// `service@host` (the pod's name under Kubernetes).
pub fn instance_actor(service: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|host| host.trim().to_owned())
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned());
    format!("{service}@{host}")
}
