//! The compose-run: docker-compose.yml's Sluice services run in containers
//! of the image with the file's commands, environment and volumes, under
//! the harness (podman with the same definitions). Kafka, Postgres and the
//! registry are the local stack's, not the file's: their images are on
//! Docker Hub, which these machines cannot reach. So the run does what an
//! override file would: the variables the stack sets (Kafka, the registry,
//! Postgres, OTLP) take the stack's values, and the file's sandbox is the
//! harness's. Containers use host networking, as the stack listens on
//! loopback; a value still naming one of the file's own hosts is refused,
//! so nothing is left pointing at a server that is not there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::container::{InImage, Mount, Security};
use crate::fleet::{Place, ServiceSpec};
use crate::help::Help;
use crate::process::{Launch, run_to_completion};
use crate::topology::{self, Wiring};

/// A compose file to run.
#[derive(Debug, Clone)]
pub struct ComposeRun {
    /// docker-compose.yml.
    pub file: PathBuf,
    /// The image its Sluice services name, as built here.
    pub image: String,
}

#[derive(Debug, Deserialize)]
struct File {
    services: BTreeMap<String, Service>,
}

#[derive(Debug, Deserialize)]
struct Service {
    image: Option<String>,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    environment: BTreeMap<String, serde_norway::Value>,
    #[serde(default)]
    volumes: Vec<String>,
    user: Option<String>,
}

/// Services of the file the harness stands in for: the sandbox (the
/// harness's own, which it drives and reads) and the job that makes the
/// sandbox's service-account key (the harness's key is in the volume).
const STOOD_IN: [(&str, &str); 2] = [
    ("sandbox", "the harness's sandbox"),
    ("keys", "the harness's key"),
];

/// The image's user (the keys job hands the volume to it).
const SERVICE_UID: u32 = 10001;

/// The one-shot services, run to completion before the others.
const JOBS: [&str; 1] = ["provision"];

impl ComposeRun {
    /// Runs the file's jobs, and returns its long-running Sluice services
    /// as the fleet, in the topology's start order.
    pub async fn services(
        &self,
        wiring: &Wiring<'_>,
        place: &Place,
        work_dir: &Path,
    ) -> Result<Vec<ServiceSpec>> {
        let text = std::fs::read_to_string(&self.file)
            .with_context(|| format!("reading {}", self.file.display()))?;
        let mut value: serde_norway::Value = serde_norway::from_str(&text)?;
        // A merged anchor may hold merge keys of its own: merge until none is left.
        loop {
            let before = value.clone();
            value.apply_merge().context("the file's merge keys")?;
            if value == before {
                break;
            }
        }
        let file: File = serde_norway::from_value(value)
            .with_context(|| format!("{}: services", self.file.display()))?;
        let volumes = work_dir.join("volumes");
        let keys = volumes.join("keys");
        std::fs::create_dir_all(&keys)?;
        // What the file's keys job leaves: the key, the services' user's.
        let key = keys.join("service-account.json");
        std::fs::copy(wiring.service_account, &key).context("the service-account key")?;
        // The key only: its folder stays the harness's (0755, readable),
        // so that the next run can delete it without root.
        hand_to_services(&key)
            .with_context(|| format!("handing {} to the services' user", key.display()))?;
        let hosts: Vec<&str> = file.services.keys().map(String::as_str).collect();
        let mut help = Help::new(&place.bin_dir, Some(&self.image));
        let mut services = Vec::new();
        for (name, service) in &file.services {
            let sluice = service
                .image
                .as_deref()
                .is_some_and(|i| i.starts_with("sluice:"));
            if !sluice || STOOD_IN.iter().any(|(s, _)| s == name) {
                continue;
            }
            let container = Container::of(name, service, wiring, place, &volumes, &hosts)?;
            let set: Vec<String> = service.environment.keys().cloned().collect();
            help.check(
                &format!("service {name}"),
                &container.binary,
                &container.args,
                &set,
            )?;
            let in_image = InImage {
                image: self.image.clone(),
                mounts: container.mounts,
                security: Security {
                    user: service.user.clone(),
                    ..Security::default()
                },
            };
            if JOBS.contains(&name.as_str()) {
                let launch = Launch {
                    binary: PathBuf::from(&container.binary),
                    label: name.clone(),
                    args: container.args,
                    env: container.env,
                    clear_env: true,
                    logs: place.logs.clone(),
                    in_image: Some(in_image),
                };
                run_to_completion(&format!("service {name}"), &launch, &place.pids).await?;
                eprintln!("[compose] {name} completed");
                continue;
            }
            let name = topology::SERVICES
                .iter()
                .copied()
                .find(|s| s == name)
                .with_context(|| format!("service {name} is not one of the topology's"))?;
            services.push(ServiceSpec {
                name,
                replica: 0,
                progress: topology::progress(&container.binary),
                binary: container.binary,
                args: container.args,
                env: container.env,
                clear_env: true,
                in_image: Some(in_image),
                // Compose's healthchecks are the image's curl, not a kubelet's.
                probes: vec![],
            });
        }
        services.sort_by_key(|s| topology::SERVICES.iter().position(|n| *n == s.name));
        if services.len() != topology::SERVICES.len() {
            bail!(
                "{} runs {} of the topology's {} services",
                self.file.display(),
                services.len(),
                topology::SERVICES.len()
            );
        }
        Ok(services)
    }
}

/// A service's container, pointed at the stack.
struct Container {
    binary: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    mounts: Vec<Mount>,
}

impl Container {
    fn of(
        name: &str,
        service: &Service,
        wiring: &Wiring<'_>,
        place: &Place,
        volumes: &Path,
        hosts: &[&str],
    ) -> Result<Container> {
        let sandbox = |text: &str| text.replace("http://sandbox:8089", wiring.sandbox);
        let mut env = Vec::new();
        for (key, value) in &service.environment {
            let value = match value {
                serde_norway::Value::String(s) => s.clone(),
                other => serde_norway::to_string(other)?.trim().to_owned(),
            };
            let stack = place.stack_env.iter().find(|(k, _)| k == key);
            let value = match (key.as_str(), stack) {
                (_, Some((_, stack))) => stack.clone(),
                ("SLUICE_INGEST_LISTEN", _) => format!("127.0.0.1:{}", wiring.ingest_port),
                ("SLUICE_INGEST_TOKEN_SHA256", _) => wiring.token_sha256.to_owned(),
                // The stack runs no collector: spans are dropped, not sent
                // to a host that is not there.
                ("OTEL_EXPORTER_OTLP_ENDPOINT", None) => continue,
                _ => sandbox(&value),
            };
            env.push((key.clone(), value));
        }
        let mut words = service.command.iter().map(|w| sandbox(w));
        let binary = words
            .next()
            .with_context(|| format!("service {name}: no command"))?;
        let args: Vec<String> = words.collect();
        for text in args.iter().chain(env.iter().map(|(_, v)| v)) {
            if let Some(host) = hosts.iter().find(|h| names_host(text, h)) {
                bail!("service {name}: {text:?} still names the file's host {host}");
            }
        }
        let mounts = service
            .volumes
            .iter()
            .map(|volume| mount_of(volume, volumes))
            .collect::<Result<_>>()
            .with_context(|| format!("service {name}"))?;
        Ok(Container {
            binary,
            args,
            env,
            mounts,
        })
    }
}

/// Whether `text` addresses `host:port` (the host alone, or after `/`,
/// `@` or `,`).
fn names_host(text: &str, host: &str) -> bool {
    text.match_indices(&format!("{host}:")).any(|(at, found)| {
        let before = text[..at].chars().next_back();
        let after = text[at + found.len()..].chars().next();
        matches!(before, None | Some('/' | '@' | ',')) && after.is_some_and(|c| c.is_ascii_digit())
    })
}

/// A short-syntax volume, `source:target[:options]`: a named volume is a
/// folder of `volumes`; a path is the checkout's.
fn mount_of(volume: &str, volumes: &Path) -> Result<Mount> {
    let mut parts = volume.split(':');
    let (Some(source), Some(inside)) = (parts.next(), parts.next()) else {
        bail!("volume {volume:?} is not source:target");
    };
    let here = if source.starts_with('.') || source.starts_with('/') {
        std::env::current_dir()?.join(source)
    } else {
        volumes.join(source)
    };
    Ok(Mount {
        here,
        inside: inside.to_owned(),
        // `ro`, among options such as `ro,z`.
        read_only: parts
            .next()
            .is_some_and(|options| options.split(',').any(|o| o == "ro")),
    })
}

/// Chowns `path` to the services' user: as root directly; rootless, in
/// podman's user namespace, where that uid is one of the user's subuids.
fn hand_to_services(path: &Path) -> Result<()> {
    match std::os::unix::fs::chown(path, Some(SERVICE_UID), Some(SERVICE_UID)) {
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
            let owner = format!("{SERVICE_UID}:{SERVICE_UID}");
            let status = std::process::Command::new("podman")
                .args(["unshare", "chown", &owner])
                .arg(path)
                .status()
                .context("running podman unshare chown")?;
            if !status.success() {
                bail!("podman unshare chown: {status}");
            }
            Ok(())
        }
        chowned => Ok(chowned?),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{mount_of, names_host};

    #[test]
    fn a_volume_is_read_only_when_any_of_its_options_says_ro() {
        let volumes = Path::new("/v");
        let keys = mount_of("keys:/keys:ro,z", volumes).expect("keys");
        assert_eq!(
            (keys.here.as_path(), keys.read_only),
            (Path::new("/v/keys"), true)
        );
        assert!(mount_of("keys:/keys:ro", volumes).expect("ro").read_only);
        assert!(!mount_of("keys:/keys:z", volumes).expect("z").read_only);
        assert!(!mount_of("keys:/keys", volumes).expect("rw").read_only);
        assert!(mount_of("keys", volumes).is_err());
    }

    #[test]
    fn an_address_of_the_file_s_host_is_found_and_a_scheme_is_not() {
        assert!(names_host("kafka:29092", "kafka"));
        assert!(names_host("http://sandbox:8089/token", "sandbox"));
        assert!(names_host("postgres://u:p@postgres:5432/db", "postgres"));
        assert!(!names_host("postgres://u:p@127.0.0.1:5432/db", "postgres"));
        assert!(!names_host("my-kafka:9092", "kafka"));
    }
}
