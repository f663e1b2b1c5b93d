//! A fleet process run in a container of the Sluice image instead of from
//! the workspace's binary: `podman run` in the foreground, so the harness
//! supervises, signals and logs it as any other process (podman passes
//! SIGTERM on to the container). Host networking: the local stack listens
//! on loopback and advertises loopback addresses, which a bridge network
//! could not reach.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Marks the containers a harness started, so a script can remove those a
/// SIGKILLed `podman run` left behind.
pub const LABEL: &str = "sluice.fleet=harness";

/// The image, and what is bound into the container.
#[derive(Debug, Clone)]
pub struct InImage {
    /// The image (`sluice:local`).
    pub image: String,
    /// Host paths and where the container sees them.
    pub mounts: Vec<Mount>,
    /// What the pod's security context asks of the container.
    pub security: Security,
}

/// A pod's security context, as podman can make it.
#[derive(Debug, Clone, Default)]
pub struct Security {
    /// `uid[:gid]` (else the image's user).
    pub user: Option<String>,
    /// The image's files cannot be written (only mounted volumes can).
    pub read_only_root: bool,
    /// Every capability dropped.
    pub drop_all_capabilities: bool,
    /// No privilege escalation (setuid binaries stay unprivileged).
    pub no_new_privileges: bool,
}

/// A bind mount.
#[derive(Debug, Clone)]
pub struct Mount {
    /// The file or folder here.
    pub here: PathBuf,
    /// Where the container sees it.
    pub inside: String,
    /// Read-only, as a Secret or ConfigMap volume is.
    pub read_only: bool,
}

impl InImage {
    /// `podman run … <image> <binary> <args>` for a container named after
    /// `label`, whose whole environment (beside the image's) is `env`.
    pub fn command(
        &self,
        label: &str,
        binary: &str,
        args: &[String],
        env: &[(String, String)],
    ) -> Command {
        let mut command = Command::new("podman");
        // runc: crun fails on these machines' hybrid cgroups; the limits
        // stay within what this machine grants (podman's defaults may not).
        command.args(["--runtime", "runc", "run", "--rm", "--replace"]);
        command.args(["--network", "host", "--label", LABEL]);
        if let Some(hard) = hard_limit("Max open files") {
            command.arg(format!("--ulimit=nofile={hard}:{hard}"));
        }
        // Refused above 32768 here, though the hard limit is higher
        // (deploy/local/image.sh).
        command.args(["--ulimit", "nproc=32768:32768"]);
        command.arg(format!("--name={}", name(label)));
        let security = &self.security;
        if let Some(user) = &security.user {
            command.arg(format!("--user={user}"));
        }
        if security.read_only_root {
            // As a pod's: no scratch tmpfs beside the volumes it mounts.
            command.args(["--read-only", "--read-only-tmpfs=false"]);
        }
        if security.drop_all_capabilities {
            command.arg("--cap-drop=all");
        }
        if security.no_new_privileges {
            command.arg("--security-opt=no-new-privileges");
        }
        for mount in &self.mounts {
            let mode = if mount.read_only { ":ro" } else { "" };
            command.arg(format!(
                "--volume={}:{}{mode}",
                mount.here.display(),
                mount.inside
            ));
        }
        // A later entry wins, as in a pod's env list.
        let mut seen = std::collections::HashSet::new();
        let last_first: Vec<&(String, String)> = env
            .iter()
            .rev()
            .filter(|(key, _)| seen.insert(key.as_str()))
            .collect();
        for (key, value) in last_first.into_iter().rev() {
            command.arg(format!("--env={key}={value}"));
        }
        command.arg(&self.image).arg(binary).args(args);
        command
    }
}

/// The container of the process labelled `label`.
fn name(label: &str) -> String {
    format!("sluice-{label}")
}

/// SIGKILLs the container of `label`. Killing its `podman run` would not:
/// podman passes SIGTERM on, but a SIGKILLed podman leaves the container
/// running.
pub async fn kill(label: &str) -> Result<()> {
    let status = tokio::process::Command::new("podman")
        .args([
            "--runtime",
            "runc",
            "kill",
            "--signal",
            "KILL",
            &name(label),
        ])
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .context("running podman kill")?;
    if !status.success() {
        bail!("podman kill {}: {status}", name(label));
    }
    Ok(())
}

/// This process's hard limit on `resource` (as /proc/self/limits names it;
/// `-1` is unlimited): the most a container may be granted, and what a
/// pod's container gets on a node with default settings.
fn hard_limit(resource: &str) -> Option<String> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|line| line.starts_with(resource))?;
    let hard = line[resource.len()..].split_whitespace().nth(1)?;
    Some(if hard == "unlimited" {
        "-1".to_owned()
    } else {
        hard.to_owned()
    })
}
