//! What every Sluice binary starts first, so that `main.rs` only wires:
//! parse config → [`ServiceRuntime::start`] → build the handler → run its
//! loop until [`ServiceRuntime::shutdown_requested`] → [`ServiceRuntime::stop`].
//! What it needs in Postgres first it makes with [`ServiceRuntime::prepare`],
//! which waits out a database that is not there yet.
//!
//! On SIGTERM or SIGINT the runtime asks the service to stop: the loops stop
//! taking messages, finish or hand back what they hold, commit, and return;
//! the process then exits 0. A process marked dead
//! ([`sluice_telemetry::liveness`]: a Kafka client librdkafka gave up on, a
//! loop of [`ServiceRuntime::spawn_loop`] that ended) is stopped the same
//! way, and [`ServiceRuntime::stop`] returns why, so it exits non-zero.

mod postgres;
mod prepare;

pub use postgres::{PostgresReadiness, lazy_pool, transient, transient_migration};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sluice_telemetry::{LogFormat, ReadinessCheck, Telemetry, TelemetryConfig, TelemetryError};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a returning `main` waits for blocking calls still running.
const BLOCKING_GRACE: Duration = Duration::from_secs(2);

/// Runs a binary's `main` on a multi-threaded Tokio runtime, as
/// `#[tokio::main]` does, but does not wait for blocking calls still
/// running once it returns (their threads end with the process): a
/// runtime's drop waits for every one, and a librdkafka transaction call
/// can block forever (sluice-kafka counts it as wedged and returns an error,
/// which must end the process so that another instance takes over).
pub fn block_on<T, E: From<std::io::Error>>(
    main: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let ended = runtime.block_on(main);
    runtime.shutdown_timeout(BLOCKING_GRACE);
    ended
}

/// Settings every service shares for logs, traces and its HTTP endpoints.
#[derive(Debug, Clone, clap::Args)]
pub struct RuntimeArgs {
    /// Log format: pretty (for a terminal) or json (for containers).
    #[arg(
        long,
        env = "SLUICE_LOG_FORMAT",
        default_value = "pretty",
        value_parser = ["pretty", "json"]
    )]
    pub log_format: String,

    /// Log filter in RUST_LOG syntax, e.g. info,rdkafka=warn.
    #[arg(long, env = "SLUICE_LOG", default_value = "info")]
    pub log_filter: String,

    /// Base URL of the OTLP/HTTP receiver spans are exported to
    /// (`/v1/traces` is appended, as the OpenTelemetry spec says); none
    /// exports nothing.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// Full URL spans are posted to, taken as it is; wins over
    /// --otlp-endpoint.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")]
    pub otlp_traces_endpoint: Option<String>,

    /// Address of the /metrics, /healthz and /readyz server.
    #[arg(long, env = "SLUICE_HTTP_LISTEN", default_value = "127.0.0.1:9464")]
    pub http_listen: SocketAddr,
}

impl RuntimeArgs {
    /// A runtime that logs at `log_filter`, exports no spans and serves its
    /// endpoints on a free loopback port: for a process embedded in
    /// another's tests.
    pub fn loopback(log_format: &str, log_filter: &str) -> Self {
        Self {
            log_format: log_format.to_owned(),
            log_filter: log_filter.to_owned(),
            otlp_endpoint: None,
            otlp_traces_endpoint: None,
            http_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

/// The runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Logging, tracing or metrics could not be set up.
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    /// The health server's address could not be bound.
    #[error("binding the health server to {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The service was stopped because it could not go on.
    #[error("stopped because {0}")]
    Died(String),
}

/// Telemetry, the health server and the shutdown signal of one service.
#[derive(Debug)]
pub struct ServiceRuntime {
    shutdown: CancellationToken,
    /// Stops the health server, in [`Self::stop`]: while the loops drain,
    /// `/healthz` still says whether the process died.
    server_stop: CancellationToken,
    http_address: SocketAddr,
    server: JoinHandle<std::io::Result<()>>,
    telemetry: Telemetry,
}

impl ServiceRuntime {
    /// Sets up telemetry for `service`, serves the health endpoints with
    /// `checks` behind `/readyz`, and watches for SIGTERM and SIGINT.
    pub async fn start(
        service: &str,
        args: &RuntimeArgs,
        checks: Vec<Arc<dyn ReadinessCheck>>,
    ) -> Result<Self, RuntimeError> {
        let telemetry = sluice_telemetry::init(&TelemetryConfig {
            service_name: service.to_owned(),
            log_format: if args.log_format == "json" {
                LogFormat::Json
            } else {
                LogFormat::Pretty
            },
            log_filter: args.log_filter.clone(),
            otlp_endpoint: sluice_telemetry::traces_endpoint(
                args.otlp_endpoint.as_deref(),
                args.otlp_traces_endpoint.as_deref(),
            ),
        })?;
        let metrics = sluice_telemetry::prometheus_handle()?;
        let listener = TcpListener::bind(args.http_listen)
            .await
            .map_err(|source| RuntimeError::Bind {
                address: args.http_listen,
                source,
            })?;
        let http_address = listener.local_addr().map_err(|source| RuntimeError::Bind {
            address: args.http_listen,
            source,
        })?;
        let shutdown = CancellationToken::new();
        let server_stop = CancellationToken::new();
        let server = tokio::spawn(sluice_telemetry::serve_health(
            listener,
            sluice_telemetry::health_router(metrics, checks),
            server_stop.clone().cancelled_owned(),
        ));
        tokio::spawn(request_shutdown_on_signal(shutdown.clone()));
        let stopping = shutdown.clone();
        tokio::spawn(async move {
            stopping.cancelled().await;
            sluice_telemetry::liveness::mark_stopping();
        });
        tracing::info!(service, %http_address, "started");
        Ok(Self {
            shutdown,
            server_stop,
            http_address,
            server,
            telemetry,
        })
    }

    /// Completes when SIGTERM or SIGINT arrived (or [`Self::request_shutdown`]
    /// was called): the service should stop taking work.
    pub fn shutdown_requested(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.shutdown.clone().cancelled_owned()
    }

    /// Asks the service to stop, as a signal would.
    pub fn request_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Where /metrics, /healthz and /readyz are served.
    pub fn http_address(&self) -> SocketAddr {
        self.http_address
    }

    /// Runs `work`, which should only end at shutdown, on a task of its
    /// own; if it ends or panics before shutdown was asked for, the process
    /// is marked dead, since what it did is no longer done.
    pub fn spawn_loop(
        &self,
        name: &'static str,
        work: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> JoinHandle<()> {
        let shutdown = self.shutdown.clone();
        let running = tokio::spawn(work);
        tokio::spawn(async move {
            let ended = match running.await {
                Ok(()) => "ended".to_owned(),
                Err(err) if err.is_panic() => format!("panicked: {}", panic_message(err)),
                Err(err) => format!("was cancelled: {err}"),
            };
            if !shutdown.is_cancelled() {
                sluice_telemetry::liveness::mark_dead(format!("{name} {ended}"));
            }
        })
    }

    /// Stops the health server and flushes pending spans; `Err` when the
    /// service stopped because the process was marked dead.
    pub async fn stop(self) -> Result<(), RuntimeError> {
        self.shutdown.cancel();
        self.server_stop.cancel();
        match self.server.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "health server failed"),
            Err(err) => tracing::warn!(error = %err, "health server task failed"),
        }
        tracing::info!("stopped");
        drop(self.telemetry);
        sluice_telemetry::liveness::dead().map_or(Ok(()), |reason| Err(RuntimeError::Died(reason)))
    }
}

fn panic_message(err: tokio::task::JoinError) -> String {
    let payload = err.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|message| (*message).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

async fn request_shutdown_on_signal(shutdown: CancellationToken) {
    let mut terminate = match tokio::signal::unix::signal(
        tokio::signal::unix::SignalKind::terminate(),
    ) {
        Ok(signal) => signal,
        Err(err) => {
            tracing::error!(error = %err, "cannot watch SIGTERM; only SIGINT stops the service cleanly");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = sluice_telemetry::liveness::died() => {}
            }
            shutdown.cancel();
            return;
        }
    };
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        _ = sluice_telemetry::liveness::died() => {}
        () = shutdown.cancelled() => return,
    }
    shutdown.cancel();
}
