//! The fleet harness: the sandbox and every service of the topology started
//! as processes on free ports, waited on until ready, supervised, SIGKILLed
//! on a schedule, driven with a stream through the outbox and ingest, and
//! every accepted event reconciled. The demo (`sluice-demo`) and the chaos
//! run (`sluice-chaos`) are two scenarios of it; the saga tests start their
//! processes with its [`Launch`].

pub mod chart;
mod cluster;
pub mod compose;
pub mod container;
pub mod cost;
pub mod faults;
mod fleet;
mod help;
pub mod load;
mod process;
pub mod prometheus;
pub mod reconcile;
mod report;
mod run;
mod sandbox;
pub mod topology;

pub use fleet::{Fleet, HttpProbe, Place, Recovery, Service, ServiceSpec};
pub use process::{
    AfterStart, Launch, note_pid, scrape, scrape_sum, wait_answering, wait_metric, wait_ready,
};
pub use report::Report;
pub use run::{Disruption, Finished, Harness, Sample, Scenario, StackArgs, Topology};
pub use sandbox::Sandbox;
