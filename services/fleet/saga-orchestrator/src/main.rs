//! `saga-orchestrator`: runs a saga (`run`: order fulfilment, or the file
//! `--saga` names), and shows operators where they stand (`list`, `show`).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use secrecy::SecretString;
use sluice_runtime::PostgresReadiness;
use sluice_saga_orchestrator::cli::{Cli, Command, RunArgs};
use sluice_saga_orchestrator::{SagaHandler, Sagas, StoreError, render, timeout_loop};
use sluice_service::Service;

fn main() -> Result<ExitCode> {
    sluice_runtime::block_on(service_main())
}

async fn service_main() -> Result<ExitCode> {
    let cli: Cli = sluice_config::parse().context("reading the configuration")?;
    let url = cli.database.required()?;
    match cli.command {
        Command::Run(args) => run(&url, *args).await?,
        Command::List {
            state,
            limit,
            output,
        } => {
            let sagas = Sagas::connect(&url, 2).await?;
            print!("{}", render::list(&sagas, state, limit, output).await?);
        }
        Command::Show { saga, output } => {
            let sagas = Sagas::connect(&url, 2).await?;
            let Some(shown) = render::show(&sagas, &saga, output).await? else {
                eprintln!("no saga {saga:?} (neither a saga id nor an order id)");
                return Ok(ExitCode::from(1));
            };
            print!("{shown}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn run(url: &SecretString, args: RunArgs) -> Result<()> {
    let definition = Arc::new(args.load_saga()?);
    let sagas = Sagas::lazy(url, args.max_connections)?;
    let postgres = Arc::new(PostgresReadiness::new(sagas.pool().clone()));
    let service = Service::start(&args.consumer, vec![postgres]).await?;
    let what = "preparing the sagas' tables and the outbox's slot";
    let (publication, slot) = (&args.outbox_publication, &args.outbox_slot);
    let (name, recreate) = (&definition.saga.name, args.recreate_lost_slot);
    let prepare = || sagas.prepare(name, publication, slot, recreate);
    let prepared = service
        .runtime()
        .prepare(what, StoreError::is_transient, prepare);
    if prepared.await.context(what)?.is_none() {
        return Ok(service.stop().await?);
    }
    let store = sagas.driver(Arc::new(service.codec()));
    let saga = Arc::clone(&definition.saga);
    sluice_saga_orchestrator::metrics::register(&saga.name);
    let (timing, shutdown) = (args.timeout_settings(), service.shutdown_requested());
    let timeouts = service.runtime().spawn_loop(
        "the timeout loop",
        timeout_loop(&store, &sagas, &saga, timing, shutdown),
    );
    let topics = args.topics(&definition);
    let handler = SagaHandler::new(definition, store, service.codec(), topics);
    let inputs = handler.topics.inputs();
    let consumed = service.consume(inputs, &args.retry, args.tuning(), handler);
    let consumed = consumed.await;
    // A loop that failed (a handler panicked, say) stops the timeouts too,
    // so the process ends instead of waiting on them for good.
    service.runtime().request_shutdown();
    let timed_out = timeouts.await.context("the timeout loop");
    let stopped = service.stop().await;
    consumed?;
    timed_out?;
    Ok(stopped?)
}
