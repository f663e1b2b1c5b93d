//! The chart-run: the fleet started from what `helm template` renders, not
//! from the harness's own idea of the topology. The chart is rendered with
//! the release's values files and a last one that points it at the local
//! stack (as a user's values file points it at their cluster); its Jobs
//! (the provisioning hook) run to completion first, in hook-weight order;
//! then every replica of every Deployment and StatefulSet becomes a
//! process, its command, arguments, environment and mounted files taken
//! from the rendered object and the image's Dockerfile. A flag the binary
//! does not know, a variable nobody reads, a Secret key the chart names
//! wrongly or a topology that handles an event twice shows as a pod that
//! does not start or a stream that does not reconcile.

mod image;
mod objects;
mod pods;

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::fleet::{Place, ServiceSpec};
use crate::process::{Launch, note_pid};
use crate::topology::{self, Wiring};
pub use image::Image;
use objects::{Object, ScalerSpec, WorkloadSpec};
pub use pods::{Data, Namespace};
use pods::{Host, Pod};

/// A chart, the values of its release, and the image its pods run.
#[derive(Debug, Clone)]
pub struct Chart {
    /// `helm`.
    pub helm: PathBuf,
    /// The chart's folder.
    pub dir: PathBuf,
    /// The release's values files, in order.
    pub values: Vec<PathBuf>,
    /// The image's Dockerfile.
    pub dockerfile: PathBuf,
    /// The Kubernetes version rendered for (the chart requires one).
    pub kube_version: String,
}

/// What the local stack gives the release: the last values file (the
/// stack's addresses) and the Secrets and ConfigMaps the values name.
pub struct Local {
    /// Values, as JSON (which is YAML).
    pub values: serde_json::Value,
    /// The namespace's Secrets and ConfigMaps.
    pub namespace: Namespace,
}

/// Builds the stack's [`Local`] once the run knows its wiring.
pub type Localize = Box<dyn Fn(&Wiring<'_>) -> Result<Local> + Send + Sync>;

/// A chart to run, and how it meets the local stack.
pub struct ChartRun {
    /// The chart.
    pub chart: Chart,
    /// The stack's side of the release.
    pub local: Localize,
}

const RELEASE: &str = "sluice";

impl ChartRun {
    /// Renders the chart, runs its Jobs to completion and returns every
    /// replica of its workloads as a service of the fleet, in the
    /// topology's start order.
    pub async fn services(
        &self,
        wiring: &Wiring<'_>,
        place: &Place,
        work_dir: &Path,
    ) -> Result<Vec<ServiceSpec>> {
        let local = (self.local)(wiring)?;
        let objects = self.render(&local.values, work_dir)?;
        let image = Image::read(&self.chart.dockerfile, &std::env::current_dir()?)?;
        let mut namespace = local.namespace;
        namespace.name = RELEASE.to_owned();
        for object in objects.iter().filter(|o| o.kind == "ConfigMap") {
            namespace
                .config_maps
                .insert(object.metadata.name.clone(), object.data.clone());
        }
        let pods_dir = work_dir.join("pods");
        let mut help = Help::new(&place.bin_dir);
        for (job, pod) in jobs(&objects, &namespace, &image, &pods_dir)? {
            help.check(&pod)?;
            run_job(&job, &pod, place).await?;
        }
        let mut services = Vec::new();
        for object in objects
            .iter()
            .filter(|o| matches!(o.kind.as_str(), "Deployment" | "StatefulSet"))
        {
            let component = object
                .metadata
                .labels
                .get("app.kubernetes.io/component")
                .map(String::as_str)
                .unwrap_or_default();
            let name = topology::SERVICES
                .iter()
                .copied()
                .find(|s| *s == component)
                .with_context(|| {
                    format!(
                        "{} {}: component {component:?} is not one of the topology's",
                        object.kind, object.metadata.name
                    )
                })?;
            let spec: WorkloadSpec = object.spec_as()?;
            for replica in 0..replicas(object, &spec, &objects)? {
                // A StatefulSet's pods are <name>-<ordinal>; a Deployment's
                // get a suffix that is new for every pod (here for every
                // run: a restart by the harness keeps it).
                let pod_name = if object.kind == "StatefulSet" {
                    format!("{}-{replica}", object.metadata.name)
                } else {
                    format!("{}-{}", object.metadata.name, random_suffix())
                };
                let mut listen = |env: &str, _port: u16| {
                    if name == "ingest" && replica == 0 && env == "SLUICE_INGEST_LISTEN" {
                        wiring.ingest_port
                    } else {
                        sluice_testkit::free_port()
                    }
                };
                let host = Host {
                    image: &image,
                    pods_dir: &pods_dir,
                    listen: &mut listen,
                };
                let pod = pods::materialize(&spec.template.spec, &pod_name, &namespace, host)?;
                help.check(&pod)?;
                services.push(ServiceSpec {
                    name,
                    replica,
                    progress: topology::progress(&pod.binary),
                    binary: pod.binary,
                    args: pod.args,
                    env: pod.env,
                    clear_env: true,
                });
            }
        }
        services.sort_by_key(|s| {
            let at = topology::SERVICES.iter().position(|n| *n == s.name);
            (at, s.replica)
        });
        Ok(services)
    }

    /// `helm template` with the release's values and the stack's last.
    fn render(&self, values: &serde_json::Value, work_dir: &Path) -> Result<Vec<Object>> {
        std::fs::create_dir_all(work_dir)?;
        let overlay = work_dir.join("values.local.json");
        std::fs::write(&overlay, serde_json::to_vec_pretty(values)?)?;
        let mut helm = std::process::Command::new(&self.chart.helm);
        helm.args(["template", RELEASE])
            .arg(&self.chart.dir)
            .args(["--namespace", RELEASE, "--kube-version"])
            .arg(&self.chart.kube_version);
        for file in self.chart.values.iter().chain([&overlay]) {
            helm.arg("-f").arg(file);
        }
        let output = helm
            .output()
            .with_context(|| format!("running {}", self.chart.helm.display()))?;
        if !output.status.success() {
            bail!(
                "helm template failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let rendered = String::from_utf8(output.stdout).context("helm's output")?;
        std::fs::write(work_dir.join("rendered.yaml"), &rendered)?;
        objects::parse(&rendered)
    }
}

/// What each binary (and subcommand) reads, from its `--help`.
struct Help<'a> {
    bin_dir: &'a Path,
    read: HashMap<Vec<String>, String>,
}

impl<'a> Help<'a> {
    fn new(bin_dir: &'a Path) -> Self {
        Self {
            bin_dir,
            read: HashMap::new(),
        }
    }

    /// Fails when the chart sets a Sluice or OpenTelemetry variable the
    /// pod's binary does not read: a typo, or a setting renamed in the
    /// binary and not in the chart, would otherwise be ignored in silence.
    fn check(&mut self, pod: &Pod) -> Result<()> {
        // The subcommand, if the first argument names one (saga-orchestrator run).
        let mut command = vec![pod.binary.clone()];
        command.extend(pod.args.first().filter(|a| !a.starts_with('-')).cloned());
        let help = match self.read.entry(command.clone()) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(new) => {
                // The binary's own flags, and its subcommand's (which do
                // not repeat the binary's unless they are global).
                let mut invocations = vec![&command[..1]];
                if command.len() > 1 {
                    invocations.push(&command[..]);
                }
                let mut text = String::new();
                for words in invocations {
                    let output = std::process::Command::new(self.bin_dir.join(&words[0]))
                        .args(&words[1..])
                        .arg("--help")
                        .output()
                        .with_context(|| format!("{} --help", words.join(" ")))?;
                    text.push_str(&String::from_utf8_lossy(&output.stdout));
                }
                new.insert(text)
            }
        };
        let unread: Vec<&String> = pod
            .from_chart
            .iter()
            .filter(|name| name.starts_with("SLUICE_") || name.starts_with("OTEL_"))
            .filter(|name| !help.contains(&format!("[env: {name}")))
            .collect();
        if !unread.is_empty() {
            bail!(
                "pod {}: the chart sets {unread:?}, which `{} --help` does not list: nothing reads them",
                pod.name,
                command.join(" ")
            );
        }
        Ok(())
    }
}

/// Five characters of the alphabet Kubernetes names pods with.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| char::from(ALPHABET[fastrand::usize(..ALPHABET.len())]))
        .collect()
}

/// The replicas a workload runs: its own count, else the floor of the
/// autoscaler that owns it, else one.
fn replicas(object: &Object, spec: &WorkloadSpec, objects: &[Object]) -> Result<u32> {
    if let Some(replicas) = spec.replicas {
        return Ok(replicas);
    }
    for scaler in objects
        .iter()
        .filter(|o| matches!(o.kind.as_str(), "HorizontalPodAutoscaler" | "ScaledObject"))
    {
        let scaler: ScalerSpec = scaler.spec_as()?;
        if scaler.scale_target_ref.name == object.metadata.name {
            return Ok(scaler
                .min_replicas
                .or(scaler.min_replica_count)
                .unwrap_or(1));
        }
    }
    Ok(1)
}

/// The chart's Jobs, in hook-weight order, each with its pod.
fn jobs(
    objects: &[Object],
    namespace: &Namespace,
    image: &Image,
    pods_dir: &Path,
) -> Result<Vec<(String, Pod)>> {
    let mut jobs = Vec::new();
    for object in objects.iter().filter(|o| o.kind == "Job") {
        let weight: i64 = object
            .metadata
            .annotations
            .get("helm.sh/hook-weight")
            .map_or(Ok(0), |w| w.parse())
            .with_context(|| format!("Job {}: hook-weight", object.metadata.name))?;
        let spec: WorkloadSpec = object.spec_as()?;
        let mut listen = |_: &str, _: u16| sluice_testkit::free_port();
        let host = Host {
            image,
            pods_dir,
            listen: &mut listen,
        };
        let pod_name = format!("{}-job", object.metadata.name);
        let pod = pods::materialize(&spec.template.spec, &pod_name, namespace, host)?;
        jobs.push((weight, object.metadata.name.clone(), pod));
    }
    jobs.sort_by_key(|(weight, _, _)| *weight);
    Ok(jobs.into_iter().map(|(_, name, pod)| (name, pod)).collect())
}

/// Runs a Job's pod until it exits; anything but success stops the run.
async fn run_job(job: &str, pod: &Pod, place: &Place) -> Result<()> {
    let launch = Launch {
        binary: place.bin_dir.join(&pod.binary),
        label: pod.name.clone(),
        args: pod.args.clone(),
        env: pod.env.clone(),
        clear_env: true,
        logs: place.logs.clone(),
    };
    let mut child = tokio::process::Command::from(launch.command()?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting Job {job}"))?;
    note_pid(&place.pids, child.id())?;
    let status = tokio::time::timeout(Duration::from_secs(300), child.wait())
        .await
        .with_context(|| format!("Job {job} did not finish in 300 s"))?
        .context("waiting for a Job")?;
    if !status.success() {
        bail!(
            "Job {job} failed ({status}); see {}",
            launch.log_path().display()
        );
    }
    eprintln!("[chart] Job {job} completed");
    Ok(())
}
