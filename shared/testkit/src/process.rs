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
    /// Panics, naming `when`, if the child has exited.
    pub fn assert_running(&mut self, when: &str) {
        let exited = self.0.try_wait().expect("polling the child process");
        assert!(exited.is_none(), "exited {when}: {exited:?}");
    }

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

/// A loopback port free now, for a child process to listen on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}
