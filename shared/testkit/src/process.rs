//! Child processes a test kills, also when it fails first.

use std::process::Child;

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
