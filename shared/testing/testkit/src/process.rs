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

    /// Sends `signal` (`STOP`, `CONT`) to the child: paused where it
    /// stands, its connections open, until it is continued.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.0.id().to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} {}", self.0.id());
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
///
/// Drawn below the kernel's ephemeral range: a port the kernel hands out
/// for `127.0.0.1:0` lies inside it, and once released it can become the
/// local port of an outgoing connection before the child binds it ("Address
/// already in use", seen in the demo).
pub fn free_port() -> u16 {
    const LOWEST: u16 = 10_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .filter(|low| *low > LOWEST + 1_000)
        .unwrap_or(32_768);
    (0..1_000)
        .map(|_| fastrand::u16(LOWEST..ephemeral_low))
        .find(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("a free loopback port below the ephemeral range")
}

/// SHA-256 of a bearer token, hex: what ingest's `--token-sha256` takes.
pub fn token_sha256(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}
