//! Polling for a condition with a deadline, instead of sleeping.

use std::future::Future;
use std::time::Duration;

/// Calls `check` until it returns `Some`, every 100 ms, for at most `within`;
/// panics naming `what` when the deadline passes.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The status a service's `/readyz` on its health `port` answers, once it
/// answers at all (within 30 s).
pub async fn readiness_status(port: u16) -> u16 {
    eventually("/readyz to answer", Duration::from_secs(30), || async {
        let response = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await;
        Some(response.ok()?.status().as_u16())
    })
    .await
}

/// The log file at `path` once it holds `text` (within 60 s): a process
/// says what it did or why it cannot.
pub async fn logged(path: &std::path::Path, text: &str) -> String {
    eventually(
        &format!("{text:?} in {}", path.display()),
        Duration::from_secs(60),
        || async {
            let log = std::fs::read_to_string(path).ok()?;
            log.contains(text).then_some(log)
        },
    )
    .await
}
