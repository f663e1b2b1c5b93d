//! A loop that ends because the service was asked to stop is not a death:
//! `stop()` is Ok and `/healthz` stays "ok" to the end. Its own test binary:
//! the liveness is process-wide, and `liveness.rs` kills its process.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sluice_runtime::{RuntimeArgs, ServiceRuntime};

#[tokio::test]
async fn a_loop_that_ends_at_shutdown_leaves_the_service_alive() {
    let args = RuntimeArgs::loopback("pretty", "warn");
    let runtime = ServiceRuntime::start("clean-stop-test", &args, vec![])
        .await
        .unwrap();
    let healthz = format!("http://{}/healthz", runtime.http_address());

    let looping = runtime.spawn_loop("the well-behaved loop", runtime.shutdown_requested());
    runtime.request_shutdown();
    looping.await.unwrap();

    let response = reqwest::get(&healthz).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.text().await.unwrap(), "ok\n");
    assert_eq!(sluice_telemetry::liveness::dead(), None);
    runtime.stop().await.unwrap();
}
