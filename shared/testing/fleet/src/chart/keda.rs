//! KEDA's Kafka scaler as it would read the chart's ScaledObjects: each
//! trigger's parameters (its metadata, then its TriggerAuthentication's
//! Secret and container-env references) must reach the brokers the way the
//! scaled pods do — the same bootstrap servers, TLS when the pods use TLS,
//! trusting the private CA they trust, the pods' SASL mechanism, user and
//! a password. A scaler that cannot authenticate reads no lag and never
//! scales, silently.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::objects::{NameRef, Object};
use super::pods::{Namespace, Pod};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScaledObjectSpec {
    scale_target_ref: NameRef,
    #[serde(default)]
    triggers: Vec<Trigger>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Trigger {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    authentication_ref: Option<NameRef>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TriggerAuthenticationSpec {
    #[serde(default)]
    secret_target_ref: Vec<SecretTarget>,
    #[serde(default)]
    env: Vec<EnvTarget>,
}

#[derive(Debug, Deserialize)]
struct SecretTarget {
    parameter: String,
    name: String,
    key: String,
}

#[derive(Debug, Deserialize)]
struct EnvTarget {
    parameter: String,
    name: String,
}

/// Checks every kafka trigger of the chart's ScaledObjects against the
/// pods of its target (`pods`: a workload's name and its first pod).
pub(super) fn check(
    objects: &[Object],
    namespace: &Namespace,
    pods: &[(String, Pod)],
) -> Result<()> {
    for object in objects.iter().filter(|o| o.kind == "ScaledObject") {
        let spec: ScaledObjectSpec = object.spec_as()?;
        let target = &spec.scale_target_ref.name;
        let Some((_, pod)) = pods.iter().find(|(name, _)| name == target) else {
            bail!(
                "ScaledObject {}: no workload {target}",
                object.metadata.name
            );
        };
        for trigger in spec.triggers.iter().filter(|t| t.kind == "kafka") {
            let params = parameters(trigger, objects, namespace, pod)
                .with_context(|| format!("ScaledObject {}", object.metadata.name))?;
            matches_pod(&params, pod).with_context(|| {
                format!(
                    "ScaledObject {}: KEDA's Kafka scaler would not reach the brokers as {} does",
                    object.metadata.name, pod.name
                )
            })?;
        }
    }
    Ok(())
}

/// The trigger's parameters: its metadata, then its authentication's.
fn parameters(
    trigger: &Trigger,
    objects: &[Object],
    namespace: &Namespace,
    pod: &Pod,
) -> Result<BTreeMap<String, String>> {
    let mut params = trigger.metadata.clone();
    let Some(reference) = &trigger.authentication_ref else {
        return Ok(params);
    };
    let auth = objects
        .iter()
        .find(|o| o.kind == "TriggerAuthentication" && o.metadata.name == reference.name)
        .with_context(|| format!("no TriggerAuthentication {}", reference.name))?;
    let spec: TriggerAuthenticationSpec = auth.spec_as()?;
    let mut from_auth = Vec::new();
    for target in &spec.secret_target_ref {
        let value = namespace.lookup(true, &target.name, &target.key)?;
        from_auth.push((&target.parameter, value.to_owned()));
    }
    for target in &spec.env {
        let value = pod
            .var(&target.name)
            .with_context(|| format!("the target's container has no env {}", target.name))?;
        from_auth.push((&target.parameter, value.to_owned()));
    }
    for (parameter, value) in from_auth {
        // KEDA's own refusal (its kafka scaler's parseKafkaAuthParams).
        if ["sasl", "tls"].contains(&parameter.as_str()) && params.contains_key(parameter) {
            bail!(
                "unable to set `{parameter}` in both ScaledObject and TriggerAuthentication together"
            );
        }
        params.insert(parameter.clone(), value);
    }
    Ok(params)
}

/// The CA the pods check the brokers against, when a volume of theirs
/// holds it (a private CA): KEDA has the system roots the image has, not
/// that one. `location` is the path the pod's properties name: inside a
/// container, or already here.
fn private_ca(location: &str, pod: &Pod) -> Result<Option<String>> {
    let Some(here) = pod.mounted_file(location) else {
        return Ok(None);
    };
    let ca = std::fs::read_to_string(&here)
        .with_context(|| format!("reading the pods' CA {}", here.display()))?;
    Ok(Some(ca))
}

fn matches_pod(params: &BTreeMap<String, String>, pod: &Pod) -> Result<()> {
    let env = |name: &str| pod.var(name);
    let properties = pod.kafka_properties();
    let param = |name: &str| params.get(name).map(String::as_str);
    let bootstrap = env("SLUICE_KAFKA_BOOTSTRAP").unwrap_or_default();
    if param("bootstrapServers") != Some(bootstrap) {
        bail!(
            "bootstrapServers {:?}, the pods use {bootstrap:?}",
            param("bootstrapServers")
        );
    }
    let protocol = properties
        .get("security.protocol")
        .copied()
        .unwrap_or("PLAINTEXT");
    let tls = matches!(protocol, "SSL" | "SASL_SSL");
    if (param("tls") == Some("enable")) != tls {
        bail!(
            "tls {:?}, the pods use security.protocol={protocol}",
            param("tls")
        );
    }
    if let Some(location) = properties.get("ssl.ca.location").filter(|_| tls)
        && let Some(ca) = private_ca(location, pod)?
        && param("ca").map(str::trim) != Some(ca.trim())
    {
        bail!(
            "ca {}: the pods trust the private CA in {location} (set kafka.keda.caSecret to a Secret holding it)",
            if param("ca").is_some() {
                "is another"
            } else {
                "unset"
            }
        );
    }
    let sasl = match (
        protocol.starts_with("SASL_"),
        properties.get("sasl.mechanism"),
    ) {
        (false, _) => "none",
        (true, Some(&"SCRAM-SHA-512")) => "scram_sha512",
        (true, Some(&"SCRAM-SHA-256")) => "scram_sha256",
        (true, Some(&"PLAIN")) => "plaintext",
        (true, Some(&"OAUTHBEARER")) => "oauthbearer",
        (true, other) => bail!("the pods' sasl.mechanism {other:?} has no KEDA equivalent here"),
    };
    if param("sasl").unwrap_or("none") != sasl {
        bail!(
            "sasl {:?}, the pods authenticate with {sasl}",
            param("sasl")
        );
    }
    match sasl {
        "none" => return Ok(()),
        "oauthbearer" if param("oauthTokenEndpointUri").is_none() => {
            bail!("sasl oauthbearer without oauthTokenEndpointUri")
        }
        "oauthbearer" => return Ok(()),
        _ => {}
    }
    let user = env("SLUICE_KAFKA_SASL_USERNAME");
    if param("username") != user {
        bail!("username {:?}, the pods are {user:?}", param("username"));
    }
    if param("password").is_none_or(str::is_empty) {
        bail!("no password");
    }
    Ok(())
}
