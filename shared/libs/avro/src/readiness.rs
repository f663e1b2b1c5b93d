//! `/readyz` check: the schema registry answers.

use std::future::Future;
use std::pin::Pin;

use schema_registry_converter::async_impl::schema_registry::{SrSettings, get_all_subjects};
use sluice_telemetry::ReadinessCheck;

/// Ready when the registry lists its subjects.
#[derive(Debug)]
pub struct RegistryReadiness {
    settings: SrSettings,
}

impl RegistryReadiness {
    /// A check against the registry of `settings`.
    pub fn new(settings: SrSettings) -> Self {
        Self { settings }
    }
}

impl ReadinessCheck for RegistryReadiness {
    fn name(&self) -> &str {
        "schema-registry"
    }

    fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            get_all_subjects(&self.settings)
                .await
                .map(drop)
                .map_err(|err| err.to_string())
        })
    }
}
