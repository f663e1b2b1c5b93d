//! `/metrics`, `/healthz`, `/readyz` and `/serving`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

/// A dependency `/readyz` checks (Kafka, the registry, Postgres).
pub trait ReadinessCheck: Send + Sync + 'static {
    /// What is checked, as shown in `/readyz`.
    fn name(&self) -> &str;

    /// `Err` with the reason when the dependency cannot be reached.
    fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>>;
}

struct HealthState {
    metrics: PrometheusHandle,
    checks: Vec<Arc<dyn ReadinessCheck>>,
}

/// The router of the health server; tests call it directly.
pub fn health_router(metrics: PrometheusHandle, checks: Vec<Arc<dyn ReadinessCheck>>) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(liveness))
        .route("/readyz", get(readiness))
        .route("/serving", get(serving))
        .with_state(Arc::new(HealthState { metrics, checks }))
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve_health(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn render_metrics(State(state): State<Arc<HealthState>>) -> String {
    state.metrics.render()
}

/// 200 while the process can work, 503 with the reason once it cannot.
async fn liveness() -> (StatusCode, String) {
    match crate::liveness::dead() {
        None => (StatusCode::OK, "ok\n".to_owned()),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("dead: {reason}\n")),
    }
}

/// 200 while the process takes work: alive and not stopping. A serving
/// pod's readiness (ingest's), which a blip of a server every replica
/// shares does not fail; the pod answers 503 itself meanwhile.
async fn serving() -> (StatusCode, String) {
    if let Some(reason) = crate::liveness::dead() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("dead: {reason}\n"));
    }
    if crate::liveness::stopping() {
        return (StatusCode::SERVICE_UNAVAILABLE, "stopping\n".to_owned());
    }
    (StatusCode::OK, "serving\n".to_owned())
}

/// 200 when every check passes, 503 otherwise; one line per check.
async fn readiness(State(state): State<Arc<HealthState>>) -> (StatusCode, String) {
    let mut ready = true;
    let mut body = String::new();
    for check in &state.checks {
        match check.check().await {
            Ok(()) => body.push_str(&format!("{}: ok\n", check.name())),
            Err(reason) => {
                ready = false;
                body.push_str(&format!("{}: {reason}\n", check.name()));
            }
        }
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}
