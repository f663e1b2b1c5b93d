//! The shared stack's Postgres stopped, or its Kafka broker cut off, for a
//! test, and back again even when the test fails first: later test
//! binaries need them.

use std::process::Command;

use crate::Stack;

/// Postgres stopped until [`PostgresOutage::end`], or until dropped.
#[derive(Debug)]
#[must_use = "Postgres starts again when this is dropped"]
pub struct PostgresOutage {
    ended: bool,
}

impl PostgresOutage {
    /// Stops the stack's Postgres.
    pub fn begin() -> Self {
        if let Err(failure) = stack_script("deploy/local/postgres.sh", &["stop"]) {
            panic!("{failure}");
        }
        Self { ended: false }
    }

    /// Starts Postgres again, then restarts the registry: it keeps its
    /// schemas in this Postgres, and its pooled connections died with it.
    pub fn end(mut self) {
        self.ended = true;
        if let Err(failure) = restore() {
            panic!("{failure}");
        }
    }
}

impl Drop for PostgresOutage {
    fn drop(&mut self) {
        if !self.ended
            && let Err(failure) = restore()
        {
            // Panicking while the test unwinds would abort the run.
            eprintln!("{failure}");
        }
    }
}

/// The stack's (first) Kafka broker cut off — SIGSTOP: its connections open
/// and silent — until [`KafkaCutOff::end`], or until dropped.
#[derive(Debug)]
#[must_use = "the broker runs again when this is dropped"]
pub struct KafkaCutOff {
    ended: bool,
}

impl KafkaCutOff {
    /// Stops the broker's process where it stands.
    pub fn begin() -> Self {
        if let Err(failure) = stack_script("deploy/local/kafka.sh", &["pause", "1"]) {
            panic!("{failure}");
        }
        Self { ended: false }
    }

    /// Lets the broker run again.
    pub fn end(mut self) {
        self.ended = true;
        if let Err(failure) = stack_script("deploy/local/kafka.sh", &["resume", "1"]) {
            panic!("{failure}");
        }
    }
}

impl Drop for KafkaCutOff {
    fn drop(&mut self) {
        if !self.ended
            && let Err(failure) = stack_script("deploy/local/kafka.sh", &["resume", "1"])
        {
            eprintln!("{failure}");
        }
    }
}

fn restore() -> Result<(), String> {
    stack_script("deploy/local/postgres.sh", &["start"])?;
    stack_script("deploy/local/registry.sh", &["restart"])
}

fn stack_script(script: &str, args: &[&str]) -> Result<(), String> {
    let command = format!("{script} {}", args.join(" "));
    let status = Command::new("bash")
        .arg(Stack::get().path(script))
        .args(args)
        .status()
        .map_err(|err| format!("{command}: {err}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command}: {status}"))
    }
}
