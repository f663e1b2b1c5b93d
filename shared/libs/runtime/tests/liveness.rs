//! A loop that dies takes the service down: a task of
//! [`ServiceRuntime::spawn_loop`] that panics before shutdown marks the
//! process dead (`/healthz` 503 with the loop's name and panic), asks the
//! service to stop, and makes [`ServiceRuntime::stop`] return why. Before,
//! the saga's timeout loop could panic and the orchestrator ran on, never
//! firing a timeout again, with /healthz "ok". Its own test binary: the
//! liveness is process-wide.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sluice_runtime::{RuntimeArgs, RuntimeError, ServiceRuntime};

#[tokio::test]
async fn a_loop_that_panics_fails_healthz_and_stops_the_service() {
    let args = RuntimeArgs::loopback("pretty", "warn");
    let runtime = ServiceRuntime::start("liveness-test", &args, vec![])
        .await
        .unwrap();
    let healthz = format!("http://{}/healthz", runtime.http_address());
    let get = || async {
        let response = reqwest::get(&healthz).await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    assert_eq!(get().await, (200, "ok\n".to_owned()));

    let (release, released) = tokio::sync::oneshot::channel::<()>();
    runtime.spawn_loop("the timeout loop", async move {
        released.await.unwrap();
        panic!("the clock broke");
    });
    assert_eq!(get().await.0, 200, "nothing has died yet");
    release.send(()).unwrap();

    tokio::time::timeout(Duration::from_secs(10), runtime.shutdown_requested())
        .await
        .expect("the runtime asked the service to stop");
    let (status, body) = get().await;
    assert_eq!(status, 503);
    assert_eq!(body, "dead: the timeout loop panicked: the clock broke\n");
    match runtime.stop().await {
        Err(RuntimeError::Died(reason)) => {
            assert_eq!(reason, "the timeout loop panicked: the clock broke");
        }
        other => panic!("stop returned {other:?}"),
    }
}
