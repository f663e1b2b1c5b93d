//! `sluice-compose-run` (`make image`): docker-compose.yml's Sluice
//! services run in containers of the image built by deploy/local/image.sh
//! (podman with the file's definitions, host networking), on the local
//! stack, and the demo's kind of stream (orders with refusals, requests,
//! poison) pushed through them and reconciled: nothing lost, nothing
//! applied twice, every dead letter expected. What the run changes in the
//! file, and why, is in `sluice_fleet::compose`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Parser;
use sluice_fleet::compose::ComposeRun;
use sluice_fleet::{Scenario, StackArgs, Topology};

/// Run the compose file's services in the image and reconcile a stream.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The compose file.
    #[arg(long, default_value = "docker-compose.yml")]
    file: PathBuf,
    /// The image its Sluice services run.
    #[arg(long, default_value = "localhost/sluice:local")]
    image: String,
    /// Where the built binaries are (the harness's sandbox).
    #[arg(long, default_value = "target/debug")]
    bin_dir: PathBuf,
    /// Logs, the volumes.
    #[arg(long, default_value = ".local/compose-run")]
    work_dir: PathBuf,
    /// Where traces go (OTLP/HTTP), in place of the file's collector.
    #[arg(long, env = "SLUICE_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    #[command(flatten)]
    stack: StackArgs,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut harness = args.stack.harness(
        &args.bin_dir,
        &args.work_dir,
        true,
        env!("CARGO_PKG_VERSION"),
    )?;
    if let Some(endpoint) = &args.otlp_endpoint {
        harness
            .place
            .stack_env
            .push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint.clone()));
    }
    let topology = Topology::Compose(ComposeRun {
        file: args.file.clone(),
        image: args.image.clone(),
    });
    let scenario = Scenario::deployment("Compose-run", 'k', topology);
    let finished = harness.run(scenario).await?;
    println!("{}", finished.report);
    let (passed, diagnosis) = (finished.passed, finished.diagnosis.clone());
    finished.stop().await;
    if !passed {
        for line in &diagnosis {
            eprintln!("[compose-run] {line}");
        }
        bail!(
            "the compose file's fleet did not reconcile the stream (logs in {})",
            harness.place.logs.display()
        );
    }
    println!(
        "\ncompose-run passed: {} in {} (logs in {})",
        args.file.display(),
        args.image,
        harness.place.logs.display()
    );
    Ok(())
}
