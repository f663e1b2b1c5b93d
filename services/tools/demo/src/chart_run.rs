//! `sluice-chart-run` (`deploy/local/chart-run.sh`, part of `make test`):
//! the fleet started from the Helm chart's rendered objects instead of the
//! harness's topology, on the local stack, then the demo's kind of stream
//! (orders with refusals, requests, poison) pushed through it and every
//! event reconciled: nothing lost, nothing applied twice, every dead
//! letter expected. The release's values files are the chart's own; the
//! last one only points the release at the stack and its Secrets hold the
//! stack's credentials, as a user's would. With `--transport tls` Kafka
//! is reached over SASL_SSL (SCRAM), the registry over HTTPS and Postgres
//! with `sslmode=verify-full`, all checked against the stack's CA mounted
//! from a ConfigMap as `extraVolumes` mounts it.

mod alerting;
mod probes;

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use serde_json::{Value, json};
use sluice_fleet::chart::{Chart, ChartRun, Data, Local, Namespace};
use sluice_fleet::topology::Wiring;
use sluice_fleet::{Finished, Harness, Scenario, StackArgs, Topology};

/// How the release reaches the stack.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Transport {
    /// Kafka PLAINTEXT, the registry over HTTP, Postgres without TLS.
    Plaintext,
    /// Kafka SASL_SSL with SCRAM, the registry over HTTPS, Postgres with
    /// verify-full, against the stack's CA.
    Tls,
}

/// Run the chart's rendered objects as the fleet and reconcile a stream.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The release's values files, in order.
    #[arg(long)]
    values: Vec<PathBuf>,
    /// How the release reaches the stack.
    #[arg(long, value_enum, default_value = "plaintext")]
    transport: Transport,
    /// `helm`.
    #[arg(long, default_value = ".local/bin/helm")]
    helm: PathBuf,
    /// The chart.
    #[arg(long, default_value = "helm/sluice")]
    chart: PathBuf,
    /// The image's Dockerfile.
    #[arg(long, default_value = "Dockerfile")]
    dockerfile: PathBuf,
    /// Then check the shipped alerts and dashboards against a real
    /// Prometheus scraping the fleet (alerting.rs).
    #[arg(long)]
    alerts: bool,
    /// Run every pod in a container of this image (built by
    /// deploy/local/image.sh), not from the workspace's binaries.
    #[arg(long)]
    image: Option<String>,
    /// The Kubernetes version the chart is rendered for (chart.sh checks 1.31).
    #[arg(long, default_value = "1.31.0")]
    kube_version: String,
    /// Where the built binaries are.
    #[arg(long, default_value = "target/debug")]
    bin_dir: PathBuf,
    /// Logs, rendered objects, the pods' files.
    #[arg(long, default_value = ".local/chart-run")]
    work_dir: PathBuf,
    #[command(flatten)]
    stack: StackArgs,
    #[command(flatten)]
    secure: Secure,
}

/// The stack's TLS and SASL side (from .local/stack.env).
#[derive(Debug, Clone, clap::Args)]
struct Secure {
    /// Kafka's SASL_SSL listener.
    #[arg(long, env = "SLUICE_KAFKA_SASL_SSL_BOOTSTRAP")]
    kafka_sasl_ssl_bootstrap: Option<String>,
    /// Kafka's SCRAM user.
    #[arg(long, env = "SLUICE_KAFKA_SCRAM_USER")]
    kafka_scram_user: Option<String>,
    /// Its password.
    #[arg(long, env = "SLUICE_KAFKA_SCRAM_PASSWORD", hide_env_values = true)]
    kafka_scram_password: Option<String>,
    /// The registry over HTTPS.
    #[arg(long, env = "SLUICE_SCHEMA_REGISTRY_TLS_URL")]
    schema_registry_tls_url: Option<String>,
    /// The stack's CA (PEM).
    #[arg(long, env = "SLUICE_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Where traces go (OTLP/HTTP).
    #[arg(long, env = "SLUICE_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
}

/// Where the CA ConfigMap is mounted in every pod.
const CA_DIR: &str = "/etc/sluice/ca";

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.values.is_empty() {
        bail!("name the release's values files with --values");
    }
    let harness = args.stack.harness(
        &args.bin_dir,
        &args.work_dir,
        true,
        env!("CARGO_PKG_VERSION"),
    )?;
    let chart = Chart {
        helm: args.helm.clone(),
        dir: args.chart.clone(),
        values: args.values.clone(),
        dockerfile: args.dockerfile.clone(),
        kube_version: args.kube_version.clone(),
    };
    let (stack, secure, transport, alerts) = (
        args.stack.clone(),
        args.secure.clone(),
        args.transport,
        args.alerts,
    );
    let local =
        Box::new(move |wiring: &Wiring<'_>| local(&stack, &secure, transport, alerts, wiring));
    let topology = Topology::Chart(ChartRun {
        chart,
        local,
        image: args.image.clone(),
    });
    let scenario = Scenario::deployment("Chart-run", 'c', topology);
    let finished = harness.run(scenario).await?;
    println!("{}", finished.report);
    let passed = finished.passed;
    let diagnosis = finished.diagnosis.clone();
    let checks = if passed {
        checks_on_the_running_fleet(&finished, &harness, args.alerts).await
    } else {
        Ok(())
    };
    finished.stop().await;
    checks?;
    if !passed {
        for line in &diagnosis {
            eprintln!("[chart-run] {line}");
        }
        bail!(
            "the chart's fleet did not reconcile the stream (logs in {})",
            harness.place.logs.display()
        );
    }
    println!(
        "\nchart-run passed: {} (logs in {})",
        args.values
            .iter()
            .map(|v| v.display().to_string())
            .collect::<Vec<_>>()
            .join(" + "),
        harness.place.logs.display()
    );
    Ok(())
}

/// Once the stream is reconciled: the pods' probes, the alerts and
/// dashboards (`alerts`), then a Kafka blip ingest must stay ready through.
async fn checks_on_the_running_fleet(
    finished: &Finished,
    harness: &Harness,
    alerts: bool,
) -> Result<()> {
    probes::check(finished).await?;
    if alerts {
        alerting::check(finished, harness).await?;
    }
    probes::blip(finished, harness).await
}

/// The last values file and the namespace's Secrets and ConfigMaps.
fn local(
    stack: &StackArgs,
    secure: &Secure,
    transport: Transport,
    alerts: bool,
    wiring: &Wiring<'_>,
) -> Result<Local> {
    let service_account = std::fs::read_to_string(wiring.service_account)
        .context("reading the sandbox's service account key")?;
    let mut values = json!({
        "kafka": {"bootstrap": stack.kafka_bootstrap},
        "schemaRegistry": {"url": stack.schema_registry_url},
        // One broker here.
        "provision": {"replicationFactor": 1},
        "services": {
            "sheetsSink": {"env": {"SLUICE_SHEETS_BASE_URL": wiring.sandbox}},
            "erpSink": {"odoo": {"url": wiring.sandbox, "database": "sluice", "login": "sluice"}},
        },
    });
    if alerts {
        // A partition held by an outage is reported after 5 s, not 5 min,
        // for alerting.rs to see SluicePartitionStalled fire.
        merge(
            &mut values,
            json!({"services": {"erpSink": {"env": {"SLUICE_PARTITION_STALL_AFTER": "5s"}}}}),
        );
    }
    let mut database_url = stack.database_url.clone();
    let mut secrets = BTreeMap::from([
        (
            "sluice-ingest",
            data(&[("token-sha256", wiring.token_sha256)]),
        ),
        (
            "sluice-sheets",
            data(&[("service-account.json", &service_account)]),
        ),
        // The default values name the key `password`, production's `api-key`.
        (
            "sluice-erp",
            data(&[("password", "sandbox"), ("api-key", "sandbox")]),
        ),
    ]);
    // What a team brings beside the chart (production's erp-sink envFrom).
    let mut config_maps = BTreeMap::from([(
        "sluice-erp-tuning".to_owned(),
        data(&[("SLUICE_MAX_RETRIES", "8")]),
    )]);
    if let Transport::Tls = transport {
        let need = |value: &Option<String>, name: &str| {
            value
                .clone()
                .with_context(|| format!("--transport tls needs {name} (from .local/stack.env)"))
        };
        let ca_path = secure
            .tls_ca
            .as_ref()
            .context("--transport tls needs SLUICE_TLS_CA")?;
        let ca = std::fs::read_to_string(ca_path)
            .with_context(|| format!("reading {}", ca_path.display()))?;
        let ca_file = format!("{CA_DIR}/ca.pem");
        merge(
            &mut values,
            json!({
                "kafka": {
                    "bootstrap": need(&secure.kafka_sasl_ssl_bootstrap, "SLUICE_KAFKA_SASL_SSL_BOOTSTRAP")?,
                    "properties": [
                        "security.protocol=SASL_SSL",
                        "sasl.mechanism=SCRAM-SHA-512",
                        format!("ssl.ca.location={ca_file}"),
                    ],
                    "sasl": {
                        "username": need(&secure.kafka_scram_user, "SLUICE_KAFKA_SCRAM_USER")?,
                        "passwordSecret": {"name": "sluice-kafka", "key": "password"},
                    },
                    // KEDA's scaler trusts the private CA too.
                    "keda": {"caSecret": {"name": "private-ca", "key": "ca.pem"}},
                },
                "schemaRegistry": {
                    "url": need(&secure.schema_registry_tls_url, "SLUICE_SCHEMA_REGISTRY_TLS_URL")?,
                    "caFile": ca_file,
                },
                "observability": {"otlpEndpoint": secure.otlp_endpoint},
                "extraVolumes": [{"name": "private-ca", "configMap": {"name": "private-ca"}}],
                "extraVolumeMounts": [{"name": "private-ca", "mountPath": CA_DIR, "readOnly": true}],
            }),
        );
        let separator = if database_url.contains('?') { '&' } else { '?' };
        database_url =
            format!("{database_url}{separator}sslmode=verify-full&sslrootcert={ca_file}");
        let scram = need(&secure.kafka_scram_password, "SLUICE_KAFKA_SCRAM_PASSWORD")?;
        secrets.insert("sluice-kafka", data(&[("password", &scram)]));
        // The local registry asks for no credentials; the values send some.
        secrets.insert("sluice-registry", data(&[("password", "unused")]));
        secrets.insert("private-ca", data(&[("ca.pem", &ca)]));
        config_maps.insert("private-ca".to_owned(), data(&[("ca.pem", &ca)]));
    }
    secrets.insert("sluice-database", data(&[("url", &database_url)]));
    let egress = egress_to_the_stack(&values, &database_url, wiring)?;
    merge(&mut values, egress);
    Ok(Local {
        values,
        namespace: Namespace {
            name: String::new(),
            secrets: secrets
                .into_iter()
                .map(|(name, data)| (name.to_owned(), data))
                .collect(),
            config_maps,
        },
    })
}

/// The egress policies' ports for the stack's servers, as a user's values
/// give their cluster's (the production values enable the policies).
fn egress_to_the_stack(values: &Value, database_url: &str, wiring: &Wiring<'_>) -> Result<Value> {
    let port = |url: &str| -> Result<u16> {
        reqwest::Url::parse(url)
            .ok()
            .and_then(|u| u.port())
            .with_context(|| format!("{url}: no port"))
    };
    let kafka = values["kafka"]["bootstrap"]
        .as_str()
        .context("kafka.bootstrap")?
        .split(',')
        .map(|broker| {
            broker
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .with_context(|| format!("broker {broker}: no port"))
        })
        .collect::<Result<Vec<_>>>()?;
    let registry = port(
        values["schemaRegistry"]["url"]
            .as_str()
            .context("schemaRegistry.url")?,
    )?;
    let mut egress = json!({
        "kafka": {"to": [], "ports": kafka},
        "schemaRegistry": {"to": [], "ports": [registry]},
        "postgres": {"to": [], "ports": [port(database_url)?]},
        "sheets": {"to": [], "ports": [port(wiring.sandbox)?]},
        "erp": {"to": [], "ports": [port(wiring.sandbox)?]},
    });
    if let Some(otlp) = values["observability"]["otlpEndpoint"].as_str() {
        egress["otlp"] = json!({"to": [], "ports": [port(otlp)?]});
    }
    Ok(json!({"networkPolicy": {"egress": egress}}))
}

fn data(pairs: &[(&str, &str)]) -> Data {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// `overlay` merged into `base`, objects key by key, anything else replaced.
fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                merge(base.entry(key).or_insert(Value::Null), value);
            }
        }
        (base, overlay) => *base = overlay,
    }
}
