//! Where a service reads its contracts: the topic map and the `.avsc` files
//! a deployment brings (`--contracts-dir`), or the set the binary was built
//! with. Every binary that reads events by contract (ingest, the outbox
//! relays, the transformer, provisioning) takes the same flag, so one
//! directory, mounted everywhere, adds an aggregate without a rebuild.

use std::path::PathBuf;

use sluice_contracts::{Catalog, ContractError};

/// The contracts directory flag.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ContractsArgs {
    /// A contracts directory (topics.toml and the .avsc files it names, laid
    /// out like the repository's schemas/); default: the contracts built in.
    #[arg(
        long,
        alias = "schemas-dir",
        env = "SLUICE_CONTRACTS_DIR",
        global = true
    )]
    pub contracts_dir: Option<PathBuf>,
}

impl ContractsArgs {
    /// The contracts, checked (names, docs, every schema parsed).
    pub fn catalog(&self) -> Result<Catalog, ContractError> {
        match &self.contracts_dir {
            Some(dir) => Catalog::from_dir(dir),
            None => Catalog::embedded(),
        }
    }
}
