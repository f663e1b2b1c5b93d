//! Where events of an aggregate type go, when not to its contract topic.

use std::collections::HashMap;

/// Routing overrides, shared by the services that produce domain events.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RouteArgs {
    /// Topic of an aggregate type as TYPE=TOPIC, repeatable (comma separated
    /// in the variable); by default events of type T go to T.events.v1.
    #[arg(id = "route", long = "route", env = "SLUICE_ROUTES", value_name = "TYPE=TOPIC", value_delimiter = ',', value_parser = parse_route)]
    pub routes: Vec<(String, String)>,
}

impl RouteArgs {
    /// The overrides by aggregate type.
    pub fn by_aggregate_type(&self) -> HashMap<String, String> {
        self.routes.iter().cloned().collect()
    }
}

fn parse_route(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((aggregate, topic)) if !aggregate.is_empty() && !topic.is_empty() => {
            Ok((aggregate.to_owned(), topic.to_owned()))
        }
        _ => Err(format!("expected AGGREGATE_TYPE=TOPIC, got {raw:?}")),
    }
}
