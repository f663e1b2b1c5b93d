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
mod keda;
mod network;
mod notes;
mod objects;
mod pods;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::container::InImage;
use crate::fleet::{Place, ServiceSpec};
use crate::help::Help;
use crate::process::{AfterStart, Launch, run_to_completion};
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
    /// Run every pod in a container of this image (built from the
    /// chart's Dockerfile), not from the workspace's binaries.
    pub image: Option<String>,
}

const RELEASE: &str = "sluice";

impl ChartRun {
    /// Renders the chart, runs its Jobs to completion and returns every
    /// replica of its workloads as a service of the fleet, in the
    /// topology's start order, and the commands its NOTES tell an operator
    /// to run once it is up.
    pub async fn services(
        &self,
        wiring: &Wiring<'_>,
        place: &Place,
        work_dir: &Path,
    ) -> Result<(Vec<ServiceSpec>, Vec<AfterStart>)> {
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
        let in_container = self.image.is_some();
        let mut help = Help::new(&place.bin_dir, self.image.as_deref());
        // Each workload's first pod and each Job's, with its labels.
        let mut labelled = Vec::new();
        for (job, labels, pod) in jobs(&objects, &namespace, &image, &pods_dir, in_container)? {
            check_reads(&mut help, &pod)?;
            run_job(&job, &pod, place, self.in_image(&pod)).await?;
            labelled.push((labels, pod));
        }
        let mut services = Vec::new();
        let mut first_pods = Vec::new();
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
                    in_container,
                };
                let pod = pods::materialize(&spec.template.spec, &pod_name, &namespace, host)?;
                check_reads(&mut help, &pod)?;
                if replica == 0 {
                    first_pods.push((object.metadata.name.clone(), pod.clone()));
                    labelled.push((spec.template.metadata.labels.clone(), pod.clone()));
                }
                services.push(ServiceSpec {
                    name,
                    replica,
                    progress: topology::progress(&pod.binary),
                    in_image: self.in_image(&pod),
                    probes: pod.probes.clone(),
                    binary: pod.binary,
                    args: pod.args,
                    env: pod.env,
                    clear_env: true,
                });
            }
        }
        keda::check(&objects, &namespace, &first_pods)?;
        network::check(&objects, &labelled)?;
        let after_start = self.notes(work_dir, &objects, &first_pods, &image, place)?;
        services.sort_by_key(|s| {
            let at = topology::SERVICES.iter().position(|n| *n == s.name);
            (at, s.replica)
        });
        Ok((services, after_start))
    }

    /// How `pod` runs in a container, when the run uses the image.
    fn in_image(&self, pod: &Pod) -> Option<InImage> {
        self.image.as_ref().map(|image| InImage {
            image: image.clone(),
            mounts: pod.mounts.clone(),
            security: pod.security.clone(),
        })
    }

    /// `helm template` with the release's values and the stack's last.
    fn render(&self, values: &serde_json::Value, work_dir: &Path) -> Result<Vec<Object>> {
        std::fs::create_dir_all(work_dir)?;
        std::fs::write(overlay(work_dir), serde_json::to_vec_pretty(values)?)?;
        let rendered = self.template(&self.chart.dir, work_dir, &[])?;
        std::fs::write(work_dir.join("rendered.yaml"), &rendered)?;
        objects::parse(&rendered)
    }

    /// `helm template` of the chart in `dir` with the release's values,
    /// the stack's last (written by `render`) and `extra` arguments.
    fn template(&self, dir: &Path, work_dir: &Path, extra: &[&str]) -> Result<String> {
        let mut helm = std::process::Command::new(&self.chart.helm);
        helm.args(["template", RELEASE])
            .arg(dir)
            .args(["--namespace", RELEASE, "--kube-version"])
            .arg(&self.chart.kube_version)
            .args(extra);
        for file in self.chart.values.iter().chain([&overlay(work_dir)]) {
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
        String::from_utf8(output.stdout).context("helm's output")
    }

    /// The NOTES' `kubectl exec` commands, each as its pod would run it.
    fn notes(
        &self,
        work_dir: &Path,
        objects: &[Object],
        first_pods: &[(String, Pod)],
        image: &Image,
        place: &Place,
    ) -> Result<Vec<AfterStart>> {
        let text = notes::render(&self.chart.dir, work_dir, |dir, extra| {
            self.template(dir, work_dir, extra)
        })?;
        let mut runs = Vec::new();
        for (at, exec) in notes::execs(&text)?.into_iter().enumerate() {
            let line = exec.command.join(" ");
            let deployment = objects
                .iter()
                .any(|o| o.kind == "Deployment" && o.metadata.name == exec.deployment);
            let pod = first_pods
                .iter()
                .find(|(name, _)| deployment && *name == exec.deployment)
                .map(|(_, pod)| pod)
                .with_context(|| {
                    format!(
                        "NOTES: `{line}` in deploy/{}, which the chart does not make",
                        exec.deployment
                    )
                })?;
            let (command, args) = exec
                .command
                .split_first()
                .context("NOTES: an empty command")?;
            let binary = image
                .binary(command)
                .with_context(|| format!("NOTES: {command} is not a binary of the image"))?;
            runs.push(AfterStart {
                what: format!("NOTES `{line}` in pod {}", pod.name),
                launch: Launch {
                    binary: place.bin_dir.join(binary),
                    label: format!("{}-notes-{at}", pod.name),
                    args: args.to_vec(),
                    env: pod.env.clone(),
                    clear_env: true,
                    logs: place.logs.clone(),
                    in_image: self.in_image(pod),
                },
            });
        }
        Ok(runs)
    }
}

/// Fails when the chart sets `pod` a variable its binary does not read.
fn check_reads(help: &mut Help<'_>, pod: &Pod) -> Result<()> {
    help.check(
        &format!("pod {}", pod.name),
        &pod.binary,
        &pod.args,
        &pod.from_chart,
    )
}

/// The values file that points the release at the local stack.
fn overlay(work_dir: &Path) -> PathBuf {
    work_dir.join("values.local.json")
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

/// A pod template's labels.
type Labels = std::collections::BTreeMap<String, String>;

/// The chart's Jobs, in hook-weight order, each with its labels and pod.
fn jobs(
    objects: &[Object],
    namespace: &Namespace,
    image: &Image,
    pods_dir: &Path,
    in_container: bool,
) -> Result<Vec<(String, Labels, Pod)>> {
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
            in_container,
        };
        let pod_name = format!("{}-job", object.metadata.name);
        let pod = pods::materialize(&spec.template.spec, &pod_name, namespace, host)?;
        let labels = spec.template.metadata.labels;
        jobs.push((weight, (object.metadata.name.clone(), labels, pod)));
    }
    jobs.sort_by_key(|(weight, _)| *weight);
    Ok(jobs.into_iter().map(|(_, job)| job).collect())
}

/// Runs a Job's pod until it exits; anything but success stops the run.
async fn run_job(job: &str, pod: &Pod, place: &Place, in_image: Option<InImage>) -> Result<()> {
    let launch = Launch {
        binary: place.bin_dir.join(&pod.binary),
        label: pod.name.clone(),
        args: pod.args.clone(),
        env: pod.env.clone(),
        clear_env: true,
        logs: place.logs.clone(),
        in_image,
    };
    run_to_completion(&format!("Job {job}"), &launch, &place.pids).await?;
    eprintln!("[chart] Job {job} completed");
    Ok(())
}
