//! Provisioning against the real broker and registry: topics are created once,
//! schemas registered once, and a BACKWARD-incompatible change is refused
//! before anything is written.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ConfigSource, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use schema_registry_converter::async_impl::schema_registry::get_all_versions;
use serde_json::{Value, json};
use sluice_contracts::Catalog;
use sluice_provision::{
    Compatibility, ProvisionError, RegistryClient, RegistryConfig, Replication, SchemaOutcome,
    TopicOutcome, ensure_topics,
};
use sluice_testkit::{Stack, unique_name};

const TIMEOUT: Duration = Duration::from_secs(30);

/// A schemas/ folder of its own: the real OrderEvent and DeadLetter schemas
/// under topic names no other test uses.
struct TestContracts {
    dir: PathBuf,
    events_topic: String,
    dlq_topic: String,
}

impl TestContracts {
    fn new() -> Self {
        let stack = Stack::get();
        let dir = std::env::temp_dir().join(unique_name("sluice-contracts"));
        for file in ["orders/OrderEvent.avsc", "dlq/DeadLetter.avsc"] {
            std::fs::create_dir_all(dir.join(file).parent().unwrap()).unwrap();
            std::fs::copy(stack.path("schemas").join(file), dir.join(file)).unwrap();
        }
        let id = unique_name("t");
        let contracts = Self {
            dir,
            events_topic: format!("{id}.orders.events.v1"),
            dlq_topic: format!("{id}.dlq.v1"),
        };
        let topic = |name: &str, partitions: i32, schema: &str| {
            format!(
                "[[topic]]\nname = \"{name}\"\npartitions = {partitions}\ncleanup_policy = \"delete\"\n\
                 retention_ms = 3600000\nkey = \"order id\"\nvalue_schema = \"{schema}\"\ndoc = \"test\"\n"
            )
        };
        let map = topic(&contracts.events_topic, 4, "orders/OrderEvent.avsc")
            + &topic(&contracts.dlq_topic, 1, "dlq/DeadLetter.avsc");
        std::fs::write(contracts.dir.join("topics.toml"), map).unwrap();
        contracts
    }

    fn catalog(&self) -> Catalog {
        Catalog::from_dir(&self.dir).unwrap()
    }

    /// Rewrites OrderEvent.avsc with `change` applied to its JSON.
    fn change_order_event(&self, change: impl FnOnce(&mut Value)) {
        let path = self.dir.join("orders/OrderEvent.avsc");
        let mut schema: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        change(&mut schema);
        std::fs::write(path, schema.to_string()).unwrap();
    }
}

fn registry() -> RegistryClient {
    RegistryClient::new(RegistryConfig {
        url: Stack::get().schema_registry_url.clone(),
        basic_auth: None,
        timeout: TIMEOUT,
        ca_pem: None,
    })
    .unwrap()
}

async fn provision_schemas(catalog: &Catalog) -> Result<Vec<SchemaOutcome>, ProvisionError> {
    provision_schemas_as(catalog, Compatibility::Backward).await
}

async fn provision_schemas_as(
    catalog: &Catalog,
    mode: Compatibility,
) -> Result<Vec<SchemaOutcome>, ProvisionError> {
    let registry = registry();
    let mut outcomes = Vec::new();
    for topic in catalog.topics() {
        outcomes.push(registry.ensure_schema(topic, mode).await?);
    }
    Ok(outcomes)
}

async fn versions(subject: &str) -> Vec<u32> {
    get_all_versions(&Stack::get().registry_settings(), subject.to_owned())
        .await
        .unwrap()
}

#[tokio::test]
async fn apply_creates_topics_and_registers_schemas_once() {
    let contracts = TestContracts::new();
    let catalog = contracts.catalog();
    let admin: Arc<AdminClient<DefaultClientContext>> =
        Arc::new(Stack::get().kafka_config().create().unwrap());

    let apply = || {
        ensure_topics(
            Arc::clone(&admin),
            &catalog,
            Replication::factor(1),
            TIMEOUT,
        )
    };
    let both = |outcome: TopicOutcome| {
        vec![
            (contracts.events_topic.clone(), outcome.clone()),
            (contracts.dlq_topic.clone(), outcome),
        ]
    };
    assert_eq!(apply().await.unwrap(), both(TopicOutcome::Created));
    assert_eq!(apply().await.unwrap(), both(TopicOutcome::Exists));
    let metadata = admin
        .inner()
        .fetch_metadata(Some(&contracts.events_topic), TIMEOUT)
        .unwrap();
    assert_eq!(metadata.topics()[0].partitions().len(), 4);
    // Set on the topic itself, not left to the broker: a cluster's default
    // of 1 would acknowledge writes held by one replica.
    let configs = admin
        .describe_configs(
            &[ResourceSpecifier::Topic(&contracts.events_topic)],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    let config = configs.into_iter().next().unwrap().unwrap();
    let min_insync = config.get("min.insync.replicas").unwrap();
    assert_eq!(
        (min_insync.value.as_deref(), &min_insync.source),
        (Some("1"), &ConfigSource::DynamicTopic)
    );

    let registered = provision_schemas(&catalog).await.unwrap();
    assert!(
        registered
            .iter()
            .all(|o| matches!(o, SchemaOutcome::Registered { .. })),
        "{registered:?}"
    );
    let again = provision_schemas(&catalog).await.unwrap();
    let ids = |outcomes: &[SchemaOutcome]| -> Vec<u32> {
        outcomes
            .iter()
            .map(|o| match o {
                SchemaOutcome::Registered { id } | SchemaOutcome::Unchanged { id } => *id,
            })
            .collect()
    };
    assert!(
        again
            .iter()
            .all(|o| matches!(o, SchemaOutcome::Unchanged { .. })),
        "{again:?}"
    );
    assert_eq!(ids(&again), ids(&registered));
    assert_eq!(
        versions(&format!("{}-value", contracts.events_topic))
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn backward_incompatible_schema_change_is_refused() {
    let contracts = TestContracts::new();
    let subject = format!("{}-value", contracts.events_topic);
    provision_schemas(&contracts.catalog()).await.unwrap();

    // A new field without a default: readers on the new schema cannot read old events.
    contracts.change_order_event(|schema| {
        schema["fields"].as_array_mut().unwrap().push(json!({
            "name": "channel", "type": "string", "doc": "Sales channel."
        }));
    });
    let err = provision_schemas(&contracts.catalog()).await.unwrap_err();
    let ProvisionError::IncompatibleSchema {
        subject: refused,
        schema_file,
        ..
    } = &err
    else {
        panic!("expected IncompatibleSchema, got {err}");
    };
    assert_eq!(refused, &subject);
    assert_eq!(schema_file, "orders/OrderEvent.avsc");
    assert_eq!(versions(&subject).await.len(), 1, "nothing was registered");

    // With a default the same field is a compatible change.
    contracts.change_order_event(|schema| {
        let fields = schema["fields"].as_array_mut().unwrap();
        fields.pop();
        fields.push(json!({
            "name": "channel", "type": ["null", "string"], "default": null, "doc": "Sales channel."
        }));
    });
    let outcomes = provision_schemas(&contracts.catalog()).await.unwrap();
    assert!(
        matches!(outcomes[0], SchemaOutcome::Registered { .. }),
        "{outcomes:?}"
    );
    assert_eq!(versions(&subject).await.len(), 2);
}

/// Removing a field without a default: readers on the new schema ignore
/// it (BACKWARD holds), readers on the old one miss it. FULL refuses that,
/// naming the field, and writes nothing; the mode apply sets is the one the
/// registry then holds.
#[tokio::test]
async fn full_compatibility_refuses_what_backward_allows_naming_the_field() {
    let contracts = TestContracts::new();
    let subject = format!("{}-value", contracts.events_topic);
    provision_schemas_as(&contracts.catalog(), Compatibility::Full)
        .await
        .unwrap();
    assert_eq!(
        registry().mode(&subject).await.unwrap().as_deref(),
        Some("FULL")
    );
    contracts.change_order_event(|schema| {
        schema["fields"].as_array_mut().unwrap().remove(1); // event_type
    });

    let err = provision_schemas_as(&contracts.catalog(), Compatibility::Full)
        .await
        .unwrap_err();
    let ProvisionError::IncompatibleSchema {
        mode,
        version,
        details,
        ..
    } = &err
    else {
        panic!("expected IncompatibleSchema, got {err}");
    };
    assert_eq!((*mode, *version), (Compatibility::Full, 1));
    assert!(details.contains("Field 'event_type'"), "{details}");
    assert!(err.to_string().contains("is not FULL compatible"), "{err}");
    assert_eq!(versions(&subject).await.len(), 1, "nothing was registered");
    assert_eq!(
        registry().mode(&subject).await.unwrap().as_deref(),
        Some("FULL")
    );

    provision_schemas(&contracts.catalog()).await.unwrap();
    assert_eq!(versions(&subject).await.len(), 2, "BACKWARD allows it");
    assert_eq!(
        registry().mode(&subject).await.unwrap().as_deref(),
        Some("BACKWARD")
    );
}

/// v2 drops event_type, v3 brings it back as an int with a default: each
/// step is BACKWARD compatible with the one before, but v3 cannot read v1's
/// strings. BACKWARD_TRANSITIVE checks every version and refuses it.
#[tokio::test]
async fn a_transitive_mode_checks_every_registered_version() {
    let contracts = TestContracts::new();
    let subject = format!("{}-value", contracts.events_topic);
    provision_schemas(&contracts.catalog()).await.unwrap();
    contracts.change_order_event(|schema| {
        schema["fields"].as_array_mut().unwrap().remove(1);
    });
    provision_schemas(&contracts.catalog()).await.unwrap();
    contracts.change_order_event(|schema| {
        schema["fields"].as_array_mut().unwrap().insert(
            1,
            json!({"name": "event_type", "type": "int", "default": 0, "doc": "Now a number."}),
        );
    });

    let err = provision_schemas_as(&contracts.catalog(), Compatibility::BackwardTransitive)
        .await
        .unwrap_err();
    let ProvisionError::IncompatibleSchema {
        version, details, ..
    } = &err
    else {
        panic!("expected IncompatibleSchema, got {err}");
    };
    assert_eq!(*version, 1, "{err}");
    assert!(details.contains("Field 'event_type'"), "{details}");
    assert_eq!(versions(&subject).await.len(), 2);

    provision_schemas(&contracts.catalog()).await.unwrap();
    assert_eq!(
        versions(&subject).await.len(),
        3,
        "BACKWARD looks at v2 only"
    );
}

/// sluice-provision `args` on `contracts`, against the stack.
fn run_cli(contracts: &TestContracts, args: &[&str]) -> std::process::Output {
    let stack = Stack::get();
    Command::new(env!("CARGO_BIN_EXE_sluice-provision"))
        .args(args)
        .arg("--contracts-dir")
        .arg(&contracts.dir)
        .env("SLUICE_KAFKA_BOOTSTRAP", &stack.kafka_bootstrap)
        .env("SLUICE_SCHEMA_REGISTRY_URL", &stack.schema_registry_url)
        .output()
        .unwrap()
}

#[test]
fn more_in_sync_replicas_than_replicas_is_refused_before_anything_is_created() {
    let contracts = TestContracts::new();
    let output = run_cli(
        &contracts,
        &[
            "apply",
            "--replication-factor",
            "1",
            "--min-insync-replicas",
            "2",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "--min-insync-replicas must be between 1 and --replication-factor (1), got 2"
        ),
        "{stderr}"
    );
    let admin: AdminClient<DefaultClientContext> = Stack::get().kafka_config().create().unwrap();
    let metadata = admin.inner().fetch_metadata(None, TIMEOUT).unwrap();
    assert!(
        !metadata
            .topics()
            .iter()
            .any(|t| t.name() == contracts.events_topic),
        "no topic is created"
    );
}

#[tokio::test]
async fn cli_check_names_the_incompatible_subject_and_file() {
    let contracts = TestContracts::new();
    let subject = format!("{}-value", contracts.events_topic);
    provision_schemas(&contracts.catalog()).await.unwrap();
    // A changed field type breaks old data too: event_type string -> int.
    contracts.change_order_event(|schema| {
        schema["fields"][1]["type"] = json!("int");
    });

    let output = run_cli(&contracts, &["check"]);
    assert!(!output.status.success(), "check must fail");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "schemas/orders/OrderEvent.avsc is not BACKWARD compatible with the registered schema of {subject}"
        )),
        "{stderr}"
    );
    assert_eq!(versions(&subject).await.len(), 1, "check writes nothing");
}

#[test]
fn help_documents_secret_variables_without_their_values() {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice-provision"))
        .arg("--help")
        .env("SLUICE_SCHEMA_REGISTRY_PASSWORD", "hunter2-registry")
        .env("SLUICE_KAFKA_SASL_PASSWORD", "hunter2-kafka")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("SLUICE_SCHEMA_REGISTRY_PASSWORD"), "{help}");
    assert!(help.contains("SLUICE_KAFKA_SASL_PASSWORD"), "{help}");
    assert!(
        !help.contains("hunter2"),
        "a secret value shows in --help:\n{help}"
    );
}

#[tokio::test]
async fn the_config_file_is_read_and_the_environment_wins_over_it() {
    let stack = Stack::get();
    let contracts = TestContracts::new();
    let config = contracts.dir.join("provision.toml");
    std::fs::write(
        &config,
        "kafka-bootstrap = \"127.0.0.1:1\"\nschema-registry-url = \"http://127.0.0.1:1/apis/ccompat/v7\"\n",
    )
    .unwrap();
    let check = |registry_from_env: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sluice-provision"));
        command
            .args(["check", "--config"])
            .arg(&config)
            .arg("--contracts-dir")
            .arg(&contracts.dir);
        command
            .env_remove("SLUICE_KAFKA_BOOTSTRAP")
            .env_remove("SLUICE_SCHEMA_REGISTRY_URL");
        if let Some(url) = registry_from_env {
            command.env("SLUICE_SCHEMA_REGISTRY_URL", url);
        }
        command.output().unwrap()
    };

    let from_file = check(None);
    assert!(!from_file.status.success());
    let stderr = String::from_utf8_lossy(&from_file.stderr);
    assert!(
        stderr.contains("http://127.0.0.1:1/apis/ccompat/v7 unreachable"),
        "{stderr}"
    );

    let from_env = check(Some(&stack.schema_registry_url));
    assert!(
        from_env.status.success(),
        "{}",
        String::from_utf8_lossy(&from_env.stderr)
    );
    let stdout = String::from_utf8_lossy(&from_env.stdout);
    assert!(
        stdout.contains(&format!(
            "subject {}-value: BACKWARD compatible",
            contracts.events_topic
        )),
        "{stdout}"
    );
}
