//! The addresses of the local stack.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use rdkafka::ClientConfig;
use schema_registry_converter::async_impl::schema_registry::SrSettings;

/// Where the local stack's servers listen.
#[derive(Debug, Clone)]
pub struct Stack {
    /// Kafka bootstrap servers.
    pub kafka_bootstrap: String,
    /// Base URL of the registry's Confluent-compatible API.
    pub schema_registry_url: String,
    /// The same API over HTTPS (the stack's throwaway certificate).
    pub schema_registry_tls_url: String,
    /// Postgres URL of the application database.
    pub database_url: String,
    /// The broker's SASL_PLAINTEXT (SCRAM-SHA-512) listener.
    pub kafka_sasl_bootstrap: String,
    /// The broker's SSL listener (the stack's throwaway certificate).
    pub kafka_ssl_bootstrap: String,
    /// The broker's SASL_SSL (SCRAM-SHA-512) listener.
    pub kafka_sasl_ssl_bootstrap: String,
    /// The SCRAM user and password the stack created.
    pub kafka_scram_credentials: (String, String),
    /// Jaeger's OTLP/HTTP base URL (spans go to `<it>/v1/traces`).
    pub otlp_endpoint: String,
    /// Jaeger's query API.
    pub jaeger_query_url: String,
    /// The throwaway CA that signed the certificate Postgres serves.
    pub tls_ca: PathBuf,
    /// A CA that signed nothing the stack serves: trusting it instead must
    /// fail a verified connection.
    pub wrong_ca: PathBuf,
    /// Root of the repository.
    pub repo_root: PathBuf,
    /// The stack's folder (`.local/` unless SLUICE_LOCAL says otherwise).
    pub local_dir: PathBuf,
}

impl Stack {
    /// The running stack, read once from `.local/stack.env` (or the same
    /// variables in the environment, which win).
    pub fn get() -> &'static Stack {
        static STACK: OnceLock<Stack> = OnceLock::new();
        STACK.get_or_init(Stack::load)
    }

    fn load() -> Stack {
        let repo_root = repo_root();
        let local_dir = std::env::var_os("SLUICE_LOCAL")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root.join(".local"));
        let env_file = local_dir.join("stack.env");
        let from_file = std::fs::read_to_string(&env_file)
            .map(|text| parse_env(&text))
            .unwrap_or_default();
        let get = |key: &str| {
            std::env::var(key)
                .ok()
                .or_else(|| from_file.get(key).cloned())
                .unwrap_or_else(|| {
                    panic!(
                        "{key} is not set and {} does not name it: start the stack with `make stack-up`",
                        env_file.display()
                    )
                })
        };
        Stack {
            kafka_bootstrap: get("SLUICE_KAFKA_BOOTSTRAP"),
            schema_registry_url: get("SLUICE_SCHEMA_REGISTRY_URL"),
            schema_registry_tls_url: get("SLUICE_SCHEMA_REGISTRY_TLS_URL"),
            database_url: get("SLUICE_DATABASE_URL"),
            kafka_sasl_bootstrap: get("SLUICE_KAFKA_SASL_BOOTSTRAP"),
            kafka_ssl_bootstrap: get("SLUICE_KAFKA_SSL_BOOTSTRAP"),
            kafka_sasl_ssl_bootstrap: get("SLUICE_KAFKA_SASL_SSL_BOOTSTRAP"),
            kafka_scram_credentials: (
                get("SLUICE_KAFKA_SCRAM_USER"),
                get("SLUICE_KAFKA_SCRAM_PASSWORD"),
            ),
            otlp_endpoint: get("SLUICE_OTLP_ENDPOINT"),
            jaeger_query_url: get("SLUICE_JAEGER_QUERY_URL"),
            tls_ca: get("SLUICE_TLS_CA").into(),
            wrong_ca: get("SLUICE_TLS_WRONG_CA").into(),
            repo_root,
            local_dir,
        }
    }

    /// The database URL over TLS, the server's certificate and name checked
    /// against `ca` (`sslmode=verify-full`).
    pub fn database_url_verified_by(&self, ca: &Path) -> String {
        format!(
            "{}?sslmode=verify-full&sslrootcert={}",
            self.database_url,
            ca.display()
        )
    }

    /// A librdkafka config pointing at the broker.
    pub fn kafka_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.kafka_bootstrap);
        config
    }

    /// Registry settings for schema_registry_converter.
    pub fn registry_settings(&self) -> SrSettings {
        SrSettings::new(self.schema_registry_url.clone())
    }

    /// A path inside the repository.
    pub fn path(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.repo_root.join(relative)
    }

    /// A copy of the shipped contracts (the repository's schemas/) in a new
    /// directory under the system's temporary one, for a test to change as
    /// a deployment would.
    pub fn contracts_copy(&self) -> PathBuf {
        let dir = std::env::temp_dir().join(unique_name("contracts"));
        copy_dir(&self.path("schemas"), &dir);
        dir
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creating a directory");
    for entry in std::fs::read_dir(from).expect("reading a directory") {
        let entry = entry.expect("a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("its type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copying a file");
        }
    }
}

fn repo_root() -> PathBuf {
    // shared/testing/testkit -> repository root
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(3)
        .expect("testkit lives three levels below the repository root")
        .to_path_buf()
}

fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

/// A name no other test (or earlier run) uses: `<prefix>-<pid>-<n>-<random>`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}-{n}-{}", std::process::id(), &random[..8])
}
