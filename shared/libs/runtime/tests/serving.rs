//! `/serving`, a serving pod's readiness: 200 while the process takes
//! work, whatever its dependencies answer; 503 "stopping" once it was asked
//! to stop, while `/healthz` still says it is alive. Its own test binary:
//! the state is process-wide.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sluice_runtime::{RuntimeArgs, ServiceRuntime};

#[tokio::test]
async fn serving_turns_503_when_the_service_is_asked_to_stop() {
    let args = RuntimeArgs::loopback("pretty", "warn");
    let runtime = ServiceRuntime::start("serving-test", &args, vec![])
        .await
        .unwrap();
    let get = |path: &'static str| {
        let url = format!("http://{}{path}", runtime.http_address());
        async move {
            let response = reqwest::get(&url).await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    assert_eq!(get("/serving").await, (200, "serving\n".to_owned()));

    runtime.request_shutdown();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while get("/serving").await.0 == 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "/serving still 200 after the stop"
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(get("/serving").await, (503, "stopping\n".to_owned()));
    assert_eq!(get("/healthz").await.0, 200, "stopping is not dead");
    runtime.stop().await.unwrap();
}
