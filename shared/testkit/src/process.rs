//! Child processes a test kills, also when it fails first.

use std::process::{Child, Command, Stdio};

/// A child process SIGKILLed and reaped when dropped, so a failing test
/// leaves no process behind.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Already gone is fine: the point is that it is gone.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl KillOnDrop {
    /// Runs the ignored test `name` of the running test binary as a child
    /// process with `env` (the way a test gets a process it can SIGKILL).
    pub fn test_child(name: &str, env: &[(&str, &str)]) -> Self {
        let child = Command::new(std::env::current_exe().expect("the test binary"))
            .stdout(Stdio::null())
            .args(["--exact", name, "--ignored", "--nocapture"])
            .envs(env.iter().copied())
            .spawn()
            .expect("spawning the test's child process");
        Self(child)
    }
}
