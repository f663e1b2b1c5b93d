//! Serving the events API so that no client can hold it: a connection that
//! does not finish its headers in time is closed, a body that does not
//! arrive in time is answered 408, connections beyond the cap are closed at
//! once, and requests beyond the in-flight cap are answered 503 with
//! Retry-After. Handling itself is not cut short: dropping it halfway would
//! leave a Kafka transaction and an Idempotency-Key claim open. It is
//! bounded by the ack timeout, but for a batch's commit whose outcome is
//! open, which waits until Kafka decides it.
//!
//! Hand-written accept loop rather than `axum::serve`: axum 0.8's server
//! gives hyper no timer, so hyper's header-read timeout never fires, and it
//! caps nothing. Measured with `tests/limits.rs` on `axum::serve`: a client
//! that sent half a request line and then nothing kept its connection open
//! past the 6 s the test waits (here it is closed after the 1 s set).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How much of the server a client may take.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// A connection must send a request's headers within this.
    pub header_read_timeout: Duration,
    /// A request's body must arrive within this, else 408.
    pub body_timeout: Duration,
    /// Largest body read, in bytes; a larger one is a 413.
    pub max_body_bytes: usize,
    /// Open connections at most; more are closed at once.
    pub max_connections: usize,
    /// Requests handled at once at most; more are answered 503.
    pub max_in_flight: usize,
}

/// How long in-flight requests get to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` within `limits` until `shutdown` completes,
/// then lets the requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) {
    let in_flight = Arc::new(Semaphore::new(limits.max_in_flight.max(1)));
    let app = app.layer(axum::middleware::from_fn(move |request, next| {
        bounded(Arc::clone(&in_flight), limits, request, next)
    }));
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(error = %err, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            metrics::counter!("sluice_ingest_connections_refused_total").increment(1);
            tracing::debug!(%peer, "connection cap reached; closing");
            continue;
        };
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%peer, error = %err, "connection ended");
            }
            drop(permit);
        });
    }
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after {DRAIN:?}; stopping anyway");
    }
}

/// 503 beyond the in-flight cap; the body read within the body timeout
/// (408) and the size limit (413) before the handler runs.
async fn bounded(
    in_flight: Arc<Semaphore>,
    limits: ServerLimits,
    request: Request,
    next: Next,
) -> Response {
    let Ok(_permit) = in_flight.try_acquire_owned() else {
        metrics::counter!("sluice_ingest_requests_shed_total").increment(1);
        let mut response = refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many requests in flight; try again shortly".into(),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    let (parts, body) = request.into_parts();
    let read = axum::body::to_bytes(body, limits.max_body_bytes);
    let body = match tokio::time::timeout(limits.body_timeout, read).await {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the body is larger than {} bytes, or was cut off",
                    limits.max_body_bytes
                ),
            );
        }
        Err(_) => {
            return refuse(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {} s",
                    limits.body_timeout.as_secs()
                ),
            );
        }
    };
    next.run(Request::from_parts(parts, axum::body::Body::from(body)))
        .await
}

fn refuse(status: StatusCode, error: String) -> Response {
    (status, axum::Json(json!({ "error": error }))).into_response()
}
