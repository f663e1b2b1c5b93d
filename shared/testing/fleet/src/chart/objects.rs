//! The part of the Kubernetes API a rendered chart's pods are made of: the
//! workloads (Deployment, StatefulSet, Job) with their pod templates, the
//! ConfigMaps they mount, and the autoscalers that set their replica count
//! when the workload leaves it out. Unknown fields are ignored: what the
//! chart-run does not model, it does not read.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::Deserialize;

/// One rendered object.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Object {
    pub kind: String,
    pub metadata: Metadata,
    #[serde(default)]
    pub spec: serde_json::Value,
    #[serde(default)]
    pub data: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
pub struct Metadata {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// A Deployment's, StatefulSet's or Job's spec.
#[derive(Debug, Deserialize)]
pub struct WorkloadSpec {
    pub replicas: Option<u32>,
    pub template: PodTemplate,
}

#[derive(Debug, Deserialize)]
pub struct PodTemplate {
    #[serde(default)]
    pub metadata: TemplateMetadata,
    pub spec: PodSpec,
}

/// A pod template's labels, which policies select it by.
#[derive(Debug, Default, Deserialize)]
pub struct TemplateMetadata {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    pub containers: Vec<Container>,
    #[serde(default)]
    pub init_containers: Vec<Container>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    #[serde(default)]
    pub security_context: SecurityContext,
}

/// The parts of a pod's or container's security context a container here
/// is made with.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityContext {
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    pub read_only_root_filesystem: Option<bool>,
    pub allow_privilege_escalation: Option<bool>,
    pub capabilities: Option<Capabilities>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Capabilities {
    #[serde(default)]
    pub drop: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<EnvVar>,
    #[serde(default)]
    pub env_from: Vec<EnvFrom>,
    #[serde(default)]
    pub volume_mounts: Vec<VolumeMount>,
    #[serde(default)]
    pub ports: Vec<ContainerPort>,
    #[serde(default)]
    pub security_context: SecurityContext,
    pub startup_probe: Option<Probe>,
    pub liveness_probe: Option<Probe>,
    pub readiness_probe: Option<Probe>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    pub http_get: Option<HttpGet>,
}

#[derive(Debug, Deserialize)]
pub struct HttpGet {
    pub path: String,
    /// A number or the name of a container port.
    pub port: serde_json::Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    pub container_port: u16,
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    pub name: String,
    pub value: Option<String>,
    pub value_from: Option<EnvSource>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvSource {
    pub secret_key_ref: Option<KeyRef>,
    pub config_map_key_ref: Option<KeyRef>,
    pub field_ref: Option<FieldRef>,
}

#[derive(Debug, Deserialize)]
pub struct KeyRef {
    pub name: String,
    pub key: String,
    #[serde(default)]
    pub optional: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldRef {
    pub field_path: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvFrom {
    #[serde(default)]
    pub prefix: String,
    pub secret_ref: Option<NameRef>,
    pub config_map_ref: Option<NameRef>,
}

#[derive(Debug, Deserialize)]
pub struct NameRef {
    pub name: String,
    #[serde(default)]
    pub optional: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: String,
    pub sub_path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub name: String,
    pub config_map: Option<Items>,
    pub secret: Option<Items>,
    pub projected: Option<Projected>,
    pub empty_dir: Option<serde_json::Value>,
}

/// A ConfigMap's or Secret's keys as files, all of them or those `items`
/// names (a secret volume calls the name `secretName`).
#[derive(Debug, Deserialize)]
pub struct Items {
    #[serde(alias = "secretName")]
    pub name: String,
    #[serde(default)]
    pub items: Vec<KeyToPath>,
}

#[derive(Debug, Deserialize)]
pub struct KeyToPath {
    pub key: String,
    pub path: String,
}

#[derive(Debug, Deserialize)]
pub struct Projected {
    pub sources: Vec<ProjectedSource>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectedSource {
    pub secret: Option<Items>,
    pub config_map: Option<Items>,
}

/// The target and floor of a HorizontalPodAutoscaler or a KEDA ScaledObject.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalerSpec {
    pub scale_target_ref: NameRef,
    pub min_replicas: Option<u32>,
    pub min_replica_count: Option<u32>,
}

impl Object {
    /// The spec as `T`, naming the object when it does not fit.
    pub fn spec_as<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.spec.clone())
            .with_context(|| format!("the spec of {} {}", self.kind, self.metadata.name))
    }
}

/// Every object of a `helm template` output (documents that are empty or
/// only comments are skipped).
pub fn parse(rendered: &str) -> Result<Vec<Object>> {
    let mut objects = Vec::new();
    for document in serde_norway::Deserializer::from_str(rendered) {
        let value = serde_json::Value::deserialize(document).context("a rendered document")?;
        if value.is_null() {
            continue;
        }
        objects.push(serde_json::from_value(value).context("a rendered object")?);
    }
    Ok(objects)
}
