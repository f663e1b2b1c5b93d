//! The chart's egress NetworkPolicies as Kubernetes would apply them to
//! its pods: every server a pod's configuration names (Kafka's brokers and
//! OAuth token endpoint, the registry, Postgres, the OTLP collector, the
//! ERP's and Google's APIs) must be allowed by the policies that select the
//! pod. A policy that misses one cuts the service off in a cluster that
//! enforces it, and no run without such a cluster would show it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::{Context, Result, bail};
use reqwest::Url;
use serde::Deserialize;

use super::objects::Object;
use super::pods::Pod;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicySpec {
    #[serde(default)]
    pod_selector: Selector,
    #[serde(default)]
    policy_types: Vec<String>,
    #[serde(default)]
    egress: Vec<Rule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Selector {
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct Rule {
    #[serde(default)]
    to: Vec<Peer>,
    #[serde(default)]
    ports: Vec<Port>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Peer {
    ip_block: Option<IpBlock>,
}

#[derive(Debug, Deserialize)]
struct IpBlock {
    cidr: String,
    #[serde(default)]
    except: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Port {
    port: Option<serde_json::Value>,
    protocol: Option<String>,
}

/// A server a pod talks to.
#[derive(Debug)]
struct Destination {
    what: &'static str,
    host: String,
    port: u16,
}

/// Checks each pod (with its template's labels) against the chart's
/// egress policies.
pub(super) fn check(objects: &[Object], pods: &[(super::Labels, Pod)]) -> Result<()> {
    let mut policies = Vec::new();
    for object in objects.iter().filter(|o| o.kind == "NetworkPolicy") {
        let spec: PolicySpec = object.spec_as()?;
        if spec.policy_types.iter().any(|t| t == "Egress") {
            policies.push((object.metadata.name.as_str(), spec));
        }
    }
    for (labels, pod) in pods {
        let selecting: Vec<_> = policies
            .iter()
            .filter(|(_, p)| {
                p.pod_selector
                    .match_labels
                    .iter()
                    .all(|(k, v)| labels.get(k) == Some(v))
            })
            .collect();
        // No egress policy selects it: its egress is open.
        if selecting.is_empty() {
            continue;
        }
        for destination in destinations(pod)? {
            let allowed = selecting
                .iter()
                .flat_map(|(_, p)| &p.egress)
                .any(|rule| allows(rule, &destination));
            if !allowed {
                let names: Vec<&str> = selecting.iter().map(|(name, _)| *name).collect();
                bail!(
                    "pod {}: no egress rule of {names:?} lets it reach {} at {}:{} (TCP)",
                    pod.name,
                    destination.what,
                    destination.host,
                    destination.port
                );
            }
        }
    }
    Ok(())
}

fn allows(rule: &Rule, to: &Destination) -> bool {
    let port = rule.ports.is_empty()
        || rule.ports.iter().any(|p| {
            p.protocol.as_deref().unwrap_or("TCP") == "TCP"
                && p.port
                    .as_ref()
                    .is_none_or(|port| port.as_u64() == Some(u64::from(to.port)))
        });
    let peer = rule.to.is_empty()
        || rule
            .to
            .iter()
            .any(|peer| match (&peer.ip_block, to.host.parse::<IpAddr>()) {
                (Some(block), Ok(ip)) => {
                    in_cidr(ip, &block.cidr) && !block.except.iter().any(|e| in_cidr(ip, e))
                }
                // A name is a Service or an external host: a selector peer may
                // be it (which pods back a name is the cluster's to say).
                (None, Err(_)) => true,
                _ => false,
            });
    port && peer
}

fn in_cidr(ip: IpAddr, cidr: &str) -> bool {
    let Some((net, bits)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    let prefix = |a: u128, width: u32| {
        let bits = bits.min(width);
        if bits == 0 { 0 } else { a >> (width - bits) }
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            prefix(u32::from(a).into(), 32) == prefix(u32::from(b).into(), 32)
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => prefix(a.into(), 128) == prefix(b.into(), 128),
        _ => false,
    }
}

/// The servers `pod`'s environment names.
fn destinations(pod: &Pod) -> Result<Vec<Destination>> {
    let env = |name: &str| pod.var(name).map(str::to_owned);
    let mut found = Vec::new();
    if let Some(bootstrap) = env("SLUICE_KAFKA_BOOTSTRAP") {
        for broker in bootstrap.split(',') {
            let (host, port) = broker
                .rsplit_once(':')
                .with_context(|| format!("pod {}: broker {broker:?} has no port", pod.name))?;
            let port = port.parse().with_context(|| format!("broker {broker:?}"))?;
            found.push(Destination {
                what: "a Kafka broker",
                host: host.to_owned(),
                port,
            });
        }
    }
    let database = match env("SLUICE_DATABASE_URL_FILE") {
        Some(file) => {
            let here = pod
                .mounted_file(&file)
                .with_context(|| format!("pod {}: {file} is in none of its volumes", pod.name))?;
            let read = std::fs::read_to_string(&here)
                .with_context(|| format!("pod {}: reading {}", pod.name, here.display()))?;
            Some(read.trim().to_owned())
        }
        None => env("SLUICE_DATABASE_URL"),
    };
    // librdkafka's OIDC login (sasl.oauthbearer.method=oidc) fetches its
    // token from the identity provider.
    let token_endpoint = pod
        .kafka_properties()
        .get("sasl.oauthbearer.token.endpoint.url")
        .map(|url| (*url).to_owned());
    let urls = [
        ("Kafka's OAuth token endpoint", token_endpoint),
        ("the schema registry", env("SLUICE_SCHEMA_REGISTRY_URL")),
        ("Postgres", database),
        ("the OTLP collector", env("OTEL_EXPORTER_OTLP_ENDPOINT")),
        ("the ERP", env("SLUICE_ERP_ODOO_URL")),
        (
            "the Sheets API",
            sheets_api(pod, env("SLUICE_SHEETS_BASE_URL")),
        ),
    ];
    for (what, url) in urls {
        let Some(url) = url else { continue };
        let parsed = Url::parse(&url).with_context(|| format!("pod {}: {what}'s URL", pod.name))?;
        let port = parsed
            .port_or_known_default()
            .or_else(|| parsed.scheme().starts_with("postgres").then_some(5432))
            .with_context(|| format!("pod {}: {what}'s URL names no port", pod.name))?;
        found.push(Destination {
            what,
            host: parsed.host_str().unwrap_or_default().to_owned(),
            port,
        });
    }
    Ok(found)
}

/// sheets-sink calls Google's API unless told another base URL.
fn sheets_api(pod: &Pod, base: Option<String>) -> Option<String> {
    (pod.binary == "sheets-sink")
        .then(|| base.unwrap_or_else(|| "https://sheets.googleapis.com".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::in_cidr;

    #[test]
    fn an_address_is_in_a_cidr_by_its_prefix() {
        let ip = |s: &str| s.parse().expect("an address");
        assert!(in_cidr(ip("127.0.0.1"), "127.0.0.0/8"));
        assert!(in_cidr(ip("10.1.2.3"), "0.0.0.0/0"));
        assert!(!in_cidr(ip("10.1.2.3"), "10.1.3.0/24"));
        assert!(in_cidr(ip("::1"), "::1/128"));
        assert!(!in_cidr(ip("::1"), "127.0.0.0/8"));
        assert!(!in_cidr(ip("127.0.0.1"), "nonsense"));
    }
}
