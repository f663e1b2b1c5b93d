//! The shared stack's Postgres stopped for a test, and started again even
//! when the test fails first: later test binaries need it.

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
        if let Err(failure) = stack_script("deploy/local/postgres.sh", "stop") {
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

fn restore() -> Result<(), String> {
    stack_script("deploy/local/postgres.sh", "start")?;
    stack_script("deploy/local/registry.sh", "restart")
}

fn stack_script(script: &str, action: &str) -> Result<(), String> {
    let status = Command::new("bash")
        .arg(Stack::get().path(script))
        .arg(action)
        .status()
        .map_err(|err| format!("{script} {action}: {err}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{script} {action}: {status}"))
    }
}
