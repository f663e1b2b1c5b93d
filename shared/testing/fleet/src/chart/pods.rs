//! A rendered pod as a local process, made the way the kubelet makes the
//! container: the image's `ENV`, then `envFrom`, then `env` (a later entry
//! wins, `$(VAR)` expanded from the entries before it), Secret and
//! ConfigMap references resolved, `fieldRef`s answered, and every mounted
//! volume written as files. A reference to a Secret or key that does not
//! exist is an error, as it is a pod that never starts there.
//!
//! Two things differ from a pod, because these processes share one host:
//! an address the pod listens on (`0.0.0.0:P`) becomes a free loopback
//! port; and, for a process run from the workspace's binary, a path the
//! pod sees (a mount, a file of the image) is rewritten to where its file
//! is here, in the arguments, the environment and the mounted files. A pod
//! run in a container of the image sees its files where the pod would:
//! each volume is bound at its mount path.

use std::collections::BTreeMap;
use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::image::Image;
use super::objects::{Container, EnvVar, Items, PodSpec, SecurityContext, Volume};
use crate::container::{Mount, Security};
use crate::fleet::HttpProbe;

/// Key → value, for a Secret or a ConfigMap.
pub type Data = BTreeMap<String, String>;

/// An environment, in order (a later entry wins).
type Env = Vec<(String, String)>;

/// The objects a pod reads that the chart does not make: the Secrets (and
/// ConfigMaps) a deployment brings, and the chart's rendered ConfigMaps.
#[derive(Debug, Clone, Default)]
pub struct Namespace {
    /// Its name (what `metadata.namespace` answers).
    pub name: String,
    /// Secrets by name.
    pub secrets: BTreeMap<String, Data>,
    /// ConfigMaps by name.
    pub config_maps: BTreeMap<String, Data>,
}

/// One pod of a workload, as a process to start.
#[derive(Debug, Clone)]
pub struct Pod {
    /// Its name, as Kubernetes would give it.
    pub name: String,
    /// The binary of the image its command names.
    pub binary: String,
    /// Its arguments (the command's own beyond the binary, then `args`).
    pub args: Vec<String>,
    /// Its whole environment.
    pub env: Env,
    /// The variables the chart sets (not the image), by name.
    pub from_chart: Vec<String>,
    /// Its volumes: where each is here and where the pod sees it.
    pub mounts: Vec<Mount>,
    /// Its security context (the container's over the pod's).
    pub security: Security,
    /// Its HTTP probes, each on its health port.
    pub probes: Vec<HttpProbe>,
}

impl Pod {
    /// The value of variable `name` (the last one set wins, as in a pod).
    pub fn var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The librdkafka properties the chart gives it
    /// (`SLUICE_KAFKA_PROPERTIES`, `key=value` pairs separated by commas).
    pub fn kafka_properties(&self) -> BTreeMap<&str, &str> {
        self.var("SLUICE_KAFKA_PROPERTIES")
            .unwrap_or_default()
            .split(',')
            .filter_map(|p| p.split_once('='))
            .collect()
    }

    /// Where the file the pod sees at `path` is here, when one of its
    /// volumes holds it (`path` already the path here, or as the container
    /// sees it, under the deepest mount that holds it); `None` for the
    /// image's own files. A path here is recognised first: under a checkout
    /// in /tmp it would also start with the pod's `/tmp` mount.
    pub fn mounted_file(&self, path: &str) -> Option<PathBuf> {
        let path = Path::new(path);
        if self
            .mounts
            .iter()
            .any(|mount| path.starts_with(&mount.here))
        {
            return Some(path.to_owned());
        }
        self.mounts
            .iter()
            .filter_map(|mount| {
                let rest = path.strip_prefix(&mount.inside).ok()?;
                Some((mount.inside.len(), mount.here.join(rest)))
            })
            .max_by_key(|(depth, _)| *depth)
            .map(|(_, here)| here)
    }
}

/// Where a pod's files go and how its listen ports are given out.
pub struct Host<'a> {
    /// The image the chart names.
    pub image: &'a Image,
    /// One folder per pod under it, holding the pod's mounts.
    pub pods_dir: &'a Path,
    /// The loopback port for the pod's `0.0.0.0:P` in variable `env`.
    pub listen: &'a mut dyn FnMut(&str, u16) -> u16,
    /// The pod runs in a container of the image: its paths stay as the
    /// chart wrote them.
    pub in_container: bool,
}

impl Namespace {
    fn data(&self, secret: bool, name: &str) -> Option<&Data> {
        if secret {
            self.secrets.get(name)
        } else {
            self.config_maps.get(name)
        }
    }

    pub(super) fn lookup(&self, secret: bool, name: &str, key: &str) -> Result<&str> {
        let what = if secret { "Secret" } else { "ConfigMap" };
        let data = self
            .data(secret, name)
            .with_context(|| format!("{what} {name} does not exist in the namespace"))?;
        data.get(key)
            .map(String::as_str)
            .with_context(|| format!("{what} {name} has no key {key}"))
    }
}

/// Pod `name` of a workload whose pod template is `spec`.
pub fn materialize(
    spec: &PodSpec,
    name: &str,
    namespace: &Namespace,
    host: Host<'_>,
) -> Result<Pod> {
    let refused = || format!("pod {name} would not start");
    let container = match (&spec.containers[..], spec.init_containers.is_empty()) {
        ([container], true) => container,
        _ => bail!("pod {name}: the chart-run runs pods of one container and no init container"),
    };
    let root = host.pods_dir.join(name);
    let (paths, mounts) =
        Paths::of(container, spec, namespace, &root, &host).with_context(refused)?;
    let (env, from_chart) =
        environment(container, name, namespace, host.image).with_context(refused)?;
    let probes = probes(container, &env).with_context(refused)?;
    let ports: Vec<u16> = container.ports.iter().map(|p| p.container_port).collect();
    let mut local_env = Vec::with_capacity(env.len());
    for (key, value) in env {
        let value = paths.local(&value);
        let by_chart = from_chart.contains(&key);
        let value = match value.strip_prefix("0.0.0.0:").map(str::parse::<u16>) {
            Some(Ok(port)) if by_chart && !ports.contains(&port) => bail!(
                "pod {name}: {key} listens on port {port}, which the container does not declare \
                 ({ports:?}): its probes and Service could not reach it"
            ),
            Some(Ok(port)) => format!("127.0.0.1:{}", (host.listen)(&key, port)),
            _ if by_chart && key.ends_with("_LISTEN") => bail!(
                "pod {name}: {key} listens on {value}: only the pod itself could reach it \
                 (listen on 0.0.0.0)"
            ),
            _ => value,
        };
        local_env.push((key, value));
    }
    // `$(VAR)` in the command sees the chart's variables, not the image's.
    let chart_env: Env = local_env
        .iter()
        .filter(|(key, _)| from_chart.contains(key))
        .cloned()
        .collect();
    let mut words = container
        .command
        .iter()
        .chain(&container.args)
        .map(|word| paths.local(&expand(word, &chart_env)));
    let command = words.next().with_context(|| {
        format!("pod {name}: a container without a command (the image names none)")
    })?;
    let binary = host
        .image
        .binary(&command)
        .with_context(|| format!("pod {name}: {command} is not a binary of the image"))?
        .to_owned();
    Ok(Pod {
        name: name.to_owned(),
        binary,
        args: words.collect(),
        env: local_env,
        from_chart,
        mounts,
        security: security(&spec.security_context, &container.security_context),
        probes,
    })
}

/// The container's HTTP probes. Each must ask the port the process
/// serves its health on (SLUICE_HTTP_LISTEN, as the pod sets it), else the
/// kubelet would probe a port nothing answers on.
fn probes(container: &Container, env: &Env) -> Result<Vec<HttpProbe>> {
    let health_port = env
        .iter()
        .rev()
        .find(|(key, _)| key == "SLUICE_HTTP_LISTEN")
        .and_then(|(_, value)| value.rsplit_once(':'))
        .and_then(|(_, port)| port.parse::<u16>().ok());
    let mut probes = Vec::new();
    for (kind, probe) in [
        ("startup", &container.startup_probe),
        ("liveness", &container.liveness_probe),
        ("readiness", &container.readiness_probe),
    ] {
        let Some(get) = probe.as_ref().and_then(|p| p.http_get.as_ref()) else {
            continue;
        };
        let port = match &get.port {
            serde_json::Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            serde_json::Value::String(name) => container
                .ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name))
                .map(|p| p.container_port),
            _ => None,
        };
        if port.is_none() || port != health_port {
            bail!(
                "the {kind} probe asks port {} ({port:?}), the health server listens on {health_port:?}",
                get.port
            );
        }
        probes.push(HttpProbe {
            kind: kind.to_owned(),
            path: get.path.clone(),
        });
    }
    Ok(probes)
}

/// The container's security context over the pod's, as podman makes it.
fn security(pod: &SecurityContext, container: &SecurityContext) -> Security {
    let user = container.run_as_user.or(pod.run_as_user);
    let group = container.run_as_group.or(pod.run_as_group);
    Security {
        user: user.map(|user| match group {
            Some(group) => format!("{user}:{group}"),
            None => user.to_string(),
        }),
        read_only_root: container.read_only_root_filesystem == Some(true),
        drop_all_capabilities: container
            .capabilities
            .as_ref()
            .is_some_and(|c| c.drop.iter().any(|d| d == "ALL")),
        no_new_privileges: container.allow_privilege_escalation == Some(false),
    }
}

/// The container's environment, in the kubelet's order, and the names the
/// chart set (`envFrom` and `env`, not the image).
fn environment(
    container: &Container,
    pod: &str,
    namespace: &Namespace,
    image: &Image,
) -> Result<(Env, Vec<String>)> {
    let mut env: Env = image.env.clone();
    let mut from_chart = Vec::new();
    let mut set = |env: &mut Env, key: String, value: String| {
        env.retain(|(k, _)| *k != key);
        from_chart.push(key.clone());
        env.push((key, value));
    };
    // `$(VAR)` sees the container's own entries before it (envFrom's
    // included), not the image's.
    let mut own: Env = Vec::new();
    for from in &container.env_from {
        let (secret, reference) = match (&from.secret_ref, &from.config_map_ref) {
            (Some(r), None) => (true, r),
            (None, Some(r)) => (false, r),
            _ => bail!("an envFrom entry names neither one Secret nor one ConfigMap"),
        };
        match namespace.data(secret, &reference.name) {
            Some(data) => {
                for (key, value) in data {
                    let key = format!("{}{key}", from.prefix);
                    own.push((key.clone(), value.clone()));
                    set(&mut env, key, value.clone());
                }
            }
            None if reference.optional => {}
            None => bail!("envFrom names {} which does not exist", reference.name),
        }
    }
    for var in &container.env {
        let Some(value) = value_of(var, pod, namespace, &own)? else {
            continue;
        };
        own.push((var.name.clone(), value.clone()));
        set(&mut env, var.name.clone(), value);
    }
    Ok((env, from_chart))
}

fn value_of(
    var: &EnvVar,
    pod: &str,
    namespace: &Namespace,
    before: &[(String, String)],
) -> Result<Option<String>> {
    let Some(source) = &var.value_from else {
        return Ok(Some(expand(var.value.as_deref().unwrap_or(""), before)));
    };
    let key_ref = |secret: bool, r: &super::objects::KeyRef| -> Result<Option<String>> {
        match namespace.lookup(secret, &r.name, &r.key) {
            Ok(value) => Ok(Some(value.to_owned())),
            Err(_) if r.optional => Ok(None),
            Err(error) => Err(error.context(format!("env {}", var.name))),
        }
    };
    if let Some(r) = &source.secret_key_ref {
        return key_ref(true, r);
    }
    if let Some(r) = &source.config_map_key_ref {
        return key_ref(false, r);
    }
    let field = source
        .field_ref
        .as_ref()
        .with_context(|| format!("env {}: a valueFrom the chart-run does not know", var.name))?;
    Ok(Some(match field.field_path.as_str() {
        "metadata.name" => pod.to_owned(),
        "metadata.namespace" => namespace.name.clone(),
        "status.podIP" => "127.0.0.1".to_owned(),
        other => bail!("env {}: fieldRef {other} is not modelled", var.name),
    }))
}

/// `$(VAR)` replaced by VAR's value when VAR is defined, `$$` by `$`;
/// anything else kept as written (the kubelet's rule).
fn expand(text: &str, vars: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some((name, after)) = tail
            .strip_prefix("$(")
            .and_then(|t| t.split_once(')'))
            .and_then(|(name, after)| {
                let value = vars.iter().rev().find(|(k, _)| k == name)?;
                Some((value.1.as_str(), after))
            })
        {
            out.push_str(name);
            rest = after;
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Paths the pod sees and where they are here, longest first.
struct Paths(Vec<(String, String)>);

impl Paths {
    /// Writes every mounted volume under `root`; the paths to rewrite (none
    /// for a pod in a container) and the volumes' mounts.
    fn of(
        container: &Container,
        spec: &PodSpec,
        namespace: &Namespace,
        root: &Path,
        host: &Host<'_>,
    ) -> Result<(Paths, Vec<Mount>)> {
        // An image file under a mount is hidden by it, as in a pod.
        let hidden = |path: &str| {
            container.volume_mounts.iter().any(|m| {
                path == m.mount_path
                    || path.starts_with(&format!("{}/", m.mount_path.trim_end_matches('/')))
            })
        };
        let mut map: Vec<(String, String)> = host
            .image
            .files
            .iter()
            .filter(|(inside, _)| !hidden(inside))
            .map(|(inside, here)| (inside.clone(), here.display().to_string()))
            .collect();
        let mut files = Vec::new();
        let mut mounts = Vec::new();
        for mount in &container.volume_mounts {
            let volume = spec
                .volumes
                .iter()
                .find(|v| v.name == mount.name)
                .with_context(|| format!("mount {}: no volume of that name", mount.name))?;
            let here = root.join(mount.mount_path.trim_start_matches('/'));
            let contents = volume_files(volume, namespace)
                .with_context(|| format!("volume {}", volume.name))?;
            match &mount.sub_path {
                Some(sub) => {
                    let (_, text) = contents
                        .into_iter()
                        .find(|(path, _)| path == sub)
                        .with_context(|| {
                            format!("mount {}: no file {sub} in the volume", mount.name)
                        })?;
                    files.push((here.clone(), text));
                }
                None => {
                    std::fs::create_dir_all(&here)
                        .with_context(|| format!("creating {}", here.display()))?;
                    if volume.empty_dir.is_some() {
                        // Anyone's, as the kubelet makes an emptyDir (the
                        // image's user is not this host's).
                        std::fs::set_permissions(&here, Permissions::from_mode(0o777))
                            .with_context(|| format!("opening {}", here.display()))?;
                    }
                    files.extend(
                        contents
                            .into_iter()
                            .map(|(path, text)| (here.join(path), text)),
                    );
                }
            }
            map.push((mount.mount_path.clone(), here.display().to_string()));
            mounts.push(Mount {
                here,
                inside: mount.mount_path.clone(),
                read_only: volume.empty_dir.is_none(),
            });
        }
        if host.in_container {
            map.clear();
        }
        map.sort_by_key(|(inside, _)| std::cmp::Reverse(inside.len()));
        let paths = Paths(map);
        for (path, text) in files {
            write_file(&path, &paths.local(&text))?;
        }
        Ok((paths, mounts))
    }

    /// `text` with every path the pod sees, where it starts a word (after
    /// the start, `=`, `,`, `:` or a space), rewritten to its place here.
    fn local(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        'scan: while i < text.len() {
            let boundary = i == 0 || matches!(text.as_bytes()[i - 1], b'=' | b',' | b':' | b' ');
            if boundary {
                for (inside, here) in &self.0 {
                    let rest = &text[i..];
                    let ends = rest.as_bytes().get(inside.len()).is_none_or(|b| {
                        matches!(b, b'/' | b',' | b'&' | b' ' | b'"' | b'\n')
                            || inside.ends_with('/')
                    });
                    if rest.starts_with(inside.as_str()) && ends {
                        out.push_str(here);
                        i += inside.len();
                        continue 'scan;
                    }
                }
            }
            let next = text[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&text[i..i + next]);
            i += next;
        }
        out
    }
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The files a volume holds: (path inside the mount, contents).
fn volume_files(volume: &Volume, namespace: &Namespace) -> Result<Vec<(PathBuf, String)>> {
    let mut files = Vec::new();
    let mut add = |secret: bool, items: &Items| -> Result<()> {
        let what = if secret { "Secret" } else { "ConfigMap" };
        let data = namespace
            .data(secret, &items.name)
            .with_context(|| format!("{what} {} does not exist in the namespace", items.name))?;
        if items.items.is_empty() {
            files.extend(data.iter().map(|(k, v)| (PathBuf::from(k), v.clone())));
        }
        for item in &items.items {
            let value = namespace.lookup(secret, &items.name, &item.key)?;
            files.push((PathBuf::from(&item.path), value.to_owned()));
        }
        Ok(())
    };
    if let Some(items) = &volume.config_map {
        add(false, items)?;
    } else if let Some(items) = &volume.secret {
        add(true, items)?;
    } else if let Some(projected) = &volume.projected {
        for source in &projected.sources {
            match (&source.secret, &source.config_map) {
                (Some(items), None) => add(true, items)?,
                (None, Some(items)) => add(false, items)?,
                _ => bail!("a projected source the chart-run does not model"),
            }
        }
    } else if volume.empty_dir.is_none() {
        bail!("a kind of volume the chart-run does not model");
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mounted_file_is_found_here_whatever_the_checkout_s_path() {
        let mount = |here: &str, inside: &str| Mount {
            here: PathBuf::from(here),
            inside: inside.to_owned(),
            read_only: true,
        };
        let pod = Pod {
            name: "transformer-0".into(),
            binary: "transformer".into(),
            args: Vec::new(),
            env: Vec::new(),
            from_chart: Vec::new(),
            mounts: vec![
                mount("/tmp/ci/pods/t-0/tmp", "/tmp"),
                mount("/tmp/ci/pods/t-0/etc/sluice/ca", "/etc/sluice/ca"),
                mount("/tmp/ci/pods/t-0/etc/sluice", "/etc/sluice"),
            ],
            security: Security::default(),
            probes: Vec::new(),
        };
        // Rewritten to the path here (a checkout under /tmp, as CI's).
        let here = "/tmp/ci/pods/t-0/etc/sluice/ca/ca.pem";
        assert_eq!(pod.mounted_file(here), Some(PathBuf::from(here)));
        // As the container sees it: the deepest mount holding it.
        assert_eq!(
            pod.mounted_file("/etc/sluice/ca/ca.pem"),
            Some(PathBuf::from(here))
        );
        assert_eq!(pod.mounted_file("/etc/ssl/certs/ca-certificates.crt"), None);
    }

    #[test]
    fn the_environment_is_made_in_the_kubelet_s_order() -> Result<()> {
        let container: Container = serde_json::from_value(serde_json::json!({
            "envFrom": [
                {"configMapRef": {"name": "tuning"}},
                {"secretRef": {"name": "absent", "optional": true}},
            ],
            "env": [
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "ID", "value": "sluice-$(POD)"},
                {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                {"name": "RULES", "value": "/etc/rules.toml"},
            ],
        }))?;
        let namespace = Namespace {
            name: "sluice".into(),
            secrets: BTreeMap::from([("s".into(), Data::from([("k".into(), "v".into())]))]),
            config_maps: BTreeMap::from([(
                "tuning".into(),
                Data::from([("RETRIES".into(), "8".into())]),
            )]),
        };
        let image = Image {
            env: vec![
                ("RULES".into(), "/usr/share/rules.toml".into()),
                ("FORMAT".into(), "json".into()),
            ],
            ..Image::default()
        };
        let (env, from_chart) = environment(&container, "t-0", &namespace, &image)?;
        let env: BTreeMap<_, _> = env.into_iter().collect();
        assert_eq!(env["ID"], "sluice-t-0");
        assert_eq!(env["KEY"], "v");
        assert_eq!(env["RETRIES"], "8");
        assert_eq!(
            env["RULES"], "/etc/rules.toml",
            "the container's env wins over the image's"
        );
        assert_eq!(env["FORMAT"], "json");
        assert_eq!(from_chart, ["RETRIES", "POD", "ID", "KEY", "RULES"]);

        let missing: Container = serde_json::from_value(serde_json::json!({
            "env": [{"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "nope"}}}],
        }))?;
        let refused = environment(&missing, "t-0", &namespace, &image).unwrap_err();
        assert!(
            format!("{refused:#}").contains("Secret s has no key nope"),
            "{refused:#}"
        );
        Ok(())
    }

    #[test]
    fn a_pod_that_listens_where_nothing_can_reach_it_is_refused() -> Result<()> {
        let image = Image {
            bin_dir: "/usr/local/bin".into(),
            ..Image::default()
        };
        let pods_dir = std::env::temp_dir().join(format!("sluice-pods-{}", std::process::id()));
        let pod = |listen: &str| -> Result<PodSpec> {
            Ok(serde_json::from_value(serde_json::json!({"containers": [{
                "command": ["/usr/local/bin/ingest", "--x=$(X)"],
                "env": [{"name": "X", "value": "1"}, {"name": "SLUICE_INGEST_LISTEN", "value": listen}],
                "ports": [{"containerPort": 8080}],
            }]}))?)
        };
        let run = |spec: &PodSpec| {
            let mut listen = |_: &str, _: u16| 12345;
            let host = Host {
                image: &image,
                pods_dir: &pods_dir,
                listen: &mut listen,
                in_container: false,
            };
            materialize(spec, "ingest-0", &Namespace::default(), host)
        };
        let ok = run(&pod("0.0.0.0:8080")?)?;
        assert_eq!(ok.args, ["--x=1"]);
        assert!(
            ok.env
                .contains(&("SLUICE_INGEST_LISTEN".into(), "127.0.0.1:12345".into()))
        );
        let undeclared = run(&pod("0.0.0.0:9000")?).unwrap_err();
        assert!(
            format!("{undeclared:#}").contains("does not declare"),
            "{undeclared:#}"
        );
        let loopback = run(&pod("127.0.0.1:8080")?).unwrap_err();
        assert!(
            format!("{loopback:#}").contains("only the pod itself"),
            "{loopback:#}"
        );
        std::fs::remove_dir_all(&pods_dir).ok();
        Ok(())
    }

    #[test]
    fn variables_expand_as_the_kubelet_expands_them() {
        let vars = [("POD_NAME".to_owned(), "t-0".to_owned())];
        assert_eq!(expand("sluice-$(POD_NAME)", &vars), "sluice-t-0");
        assert_eq!(
            expand("$(UNSET) $$(POD_NAME) $", &vars),
            "$(UNSET) $(POD_NAME) $"
        );
    }

    #[test]
    fn a_path_the_pod_sees_is_rewritten_where_it_starts_a_word() {
        let paths = Paths(vec![
            ("/etc/sluice/ca".to_owned(), "/h/p/etc/sluice/ca".to_owned()),
            ("/etc/sluice".to_owned(), "/h/p/etc/sluice".to_owned()),
        ]);
        assert_eq!(
            paths.local("ssl.ca.location=/etc/sluice/ca/ca.pem,x=/etc/sluice/rules.toml"),
            "ssl.ca.location=/h/p/etc/sluice/ca/ca.pem,x=/h/p/etc/sluice/rules.toml"
        );
        assert_eq!(
            paths.local("postgres://h/db?sslrootcert=/etc/sluice/ca/ca.pem&sslmode=verify-full"),
            "postgres://h/db?sslrootcert=/h/p/etc/sluice/ca/ca.pem&sslmode=verify-full"
        );
        // Not at a word's start, or only a prefix of a longer name: kept.
        assert_eq!(paths.local("/x/etc/sluice"), "/x/etc/sluice");
        assert_eq!(paths.local("/etc/sluiced"), "/etc/sluiced");
    }
    #[test]
    fn a_pod_in_a_container_sees_its_volumes_where_the_chart_mounts_them() -> Result<()> {
        let image = Image {
            bin_dir: "/usr/local/bin".into(),
            files: vec![("/usr/share/sluice/rules.toml".into(), "rules.toml".into())],
            ..Image::default()
        };
        let pods_dir = std::env::temp_dir().join(format!("sluice-pods-c-{}", std::process::id()));
        let namespace = Namespace {
            config_maps: [(
                "ca".to_owned(),
                Data::from([("ca.crt".into(), "PEM".into())]),
            )]
            .into(),
            ..Namespace::default()
        };
        let spec: PodSpec = serde_json::from_value(serde_json::json!({
            "securityContext": {"runAsUser": 10001, "runAsGroup": 10001},
            "containers": [{
                "command": ["/usr/local/bin/transformer", "--ca=/etc/sluice/ca/ca.crt"],
                "env": [{"name": "RULES", "value": "/usr/share/sluice/rules.toml"}],
                "volumeMounts": [
                    {"name": "ca", "mountPath": "/etc/sluice/ca"},
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
                "securityContext": {
                    "readOnlyRootFilesystem": true,
                    "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"]},
                },
            }],
            "volumes": [
                {"name": "ca", "configMap": {"name": "ca"}},
                {"name": "tmp", "emptyDir": {}},
            ],
        }))?;
        let mut listen = |_: &str, _: u16| 12345;
        let host = Host {
            image: &image,
            pods_dir: &pods_dir,
            listen: &mut listen,
            in_container: true,
        };
        let pod = materialize(&spec, "transformer-0", &namespace, host)?;
        assert_eq!(
            pod.args,
            ["--ca=/etc/sluice/ca/ca.crt"],
            "paths stay the pod's"
        );
        assert!(
            pod.env
                .contains(&("RULES".into(), "/usr/share/sluice/rules.toml".into()))
        );
        let mounts: Vec<(&str, bool)> = pod
            .mounts
            .iter()
            .map(|m| (m.inside.as_str(), m.read_only))
            .collect();
        assert_eq!(mounts, [("/etc/sluice/ca", true), ("/tmp", false)]);
        assert_eq!(
            std::fs::read_to_string(pod.mounts[0].here.join("ca.crt"))?,
            "PEM"
        );
        let tmp_mode = std::fs::metadata(&pod.mounts[1].here)?.permissions().mode();
        assert_eq!(tmp_mode & 0o777, 0o777, "an emptyDir is anyone's");
        assert_eq!(pod.security.user.as_deref(), Some("10001:10001"));
        assert!(pod.security.read_only_root && pod.security.drop_all_capabilities);
        assert!(pod.security.no_new_privileges);
        std::fs::remove_dir_all(&pods_dir).ok();
        Ok(())
    }
}
