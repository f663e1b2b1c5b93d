//! Flags, config file and secrets, as a service sees them.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use clap::Parser;
use secrecy::ExposeSecret;
use sluice_config::{ConfigError, DatabaseArgs, KafkaArgs, RegistryArgs, parse_from};

/// A service's command line: the shared groups plus one setting of its own.
#[derive(Debug, Parser)]
struct ServiceCli {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Rows per Sheets API call.
    #[arg(
        long = "batch-size",
        env = "TEST_SERVICE_BATCH_SIZE",
        default_value_t = 100
    )]
    batch_size: u32,
}

fn file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-config-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("service.toml");
    std::fs::write(&path, text).unwrap();
    path
}

const BASE: [&str; 5] = [
    "svc",
    "--kafka-bootstrap",
    "k:9092",
    "--schema-registry-url",
    "http://r:8081",
];

#[test]
fn the_file_sets_defaults_and_flags_win_over_it() {
    let path = file(
        "defaults",
        r#"
        batch-size = 25
        kafka-property = ["security.protocol=SASL_SSL", "sasl.mechanism=SCRAM-SHA-512"]
        kafka-bootstrap = "from-file:9092"
        "#,
    );
    let cli: ServiceCli = parse_from(
        [
            "svc",
            "--config",
            path.to_str().unwrap(),
            "--kafka-bootstrap",
            "from-flag:9092",
        ]
        .into_iter()
        .chain(["--schema-registry-url", "http://r:8081"]),
    )
    .unwrap();
    assert_eq!(cli.batch_size, 25);
    assert_eq!(cli.kafka.bootstrap, "from-flag:9092");
    assert_eq!(
        cli.kafka.properties,
        [
            ("security.protocol".into(), "SASL_SSL".into()),
            ("sasl.mechanism".into(), "SCRAM-SHA-512".into())
        ]
    );
}

#[test]
fn an_unknown_setting_in_the_file_is_named() {
    let path = file("unknown", "kafka-bootstrp = \"x\"\n");
    let err =
        parse_from::<ServiceCli, _, _>(["svc", "--config", path.to_str().unwrap()]).unwrap_err();
    assert!(
        matches!(&err, ConfigError::UnknownSetting { key, .. } if key == "kafka-bootstrp"),
        "{err}"
    );
}

#[test]
fn a_value_of_the_wrong_shape_names_the_setting() {
    let path = file("shape", "batch-size = { a = 1 }\n");
    let err =
        parse_from::<ServiceCli, _, _>(["svc", "--config", path.to_str().unwrap()]).unwrap_err();
    assert!(
        err.to_string()
            .contains("batch-size: expected a string, number, boolean"),
        "{err}"
    );
    let path = file("type", "batch-size = \"many\"\n");
    let args = BASE
        .iter()
        .copied()
        .chain(["--config", path.to_str().unwrap()]);
    let err = parse_from::<ServiceCli, _, _>(args).unwrap_err();
    assert!(
        err.to_string().contains("--batch-size"),
        "clap names the flag: {err}"
    );
}

#[test]
fn secrets_come_from_files_and_never_show_in_debug() {
    let secret = file("secret", "s3cr3t-pa55\n");
    let args = BASE.iter().copied().chain([
        "--kafka-sasl-username",
        "sluice",
        "--kafka-sasl-password-file",
        secret.to_str().unwrap(),
    ]);
    let cli: ServiceCli = parse_from(args).unwrap();
    let properties = cli.kafka.resolve().unwrap();
    let (plain, secrets) = (&properties.plain, &properties.secret);
    assert!(plain.contains(&("sasl.username".into(), "sluice".into())));
    assert_eq!(secrets[0].0, "sasl.password");
    assert_eq!(
        secrets[0].1.expose_secret(),
        "s3cr3t-pa55",
        "the file's trailing newline is not part of it"
    );
    assert!(
        !format!("{cli:?} {secrets:?}").contains("s3cr3t"),
        "Debug redacts secrets"
    );
}

#[test]
fn a_secret_kafka_property_on_the_command_line_is_refused() {
    let args = BASE
        .iter()
        .copied()
        .chain(["--kafka-property", "sasl.password=oops"]);
    let cli: ServiceCli = parse_from(args).unwrap();
    let err = cli.kafka.resolve().unwrap_err();
    assert!(
        err.to_string()
            .starts_with("setting kafka-property: sasl.password is a secret"),
        "{err}"
    );
}

#[test]
fn registry_settings_are_checked() {
    let cli: ServiceCli = parse_from([
        "svc",
        "--kafka-bootstrap",
        "k:9092",
        "--schema-registry-url",
        "r:8081",
    ])
    .unwrap();
    let err = cli.registry.base_url().unwrap_err();
    assert_eq!(
        err.to_string(),
        "setting schema-registry-url: \"r:8081\" is not an http:// or https:// URL"
    );
    let args = BASE.iter().copied().chain(["--schema-registry-user", "u"]);
    let cli: ServiceCli = parse_from(args).unwrap();
    let err = cli.registry.basic_auth().unwrap_err();
    assert_eq!(
        err.to_string(),
        "setting schema-registry-user: the registry user and password go together"
    );
}

#[test]
fn every_kafka_secret_comes_from_a_file_or_the_environment() {
    let key = file("ssl-key", "key-pa55\n");
    let keystore = file("keystore", "store-pa55");
    let client = file("oidc", "client-s3cret\r\n");
    let args = BASE.iter().copied().chain([
        "--kafka-ssl-key-password-file",
        key.to_str().unwrap(),
        "--kafka-ssl-keystore-password-file",
        keystore.to_str().unwrap(),
        "--kafka-oauthbearer-client-secret-file",
        client.to_str().unwrap(),
    ]);
    let cli: ServiceCli = parse_from(args).unwrap();
    let properties = cli.kafka.resolve().unwrap();
    let secrets: Vec<(&str, &str)> = properties
        .secret
        .iter()
        .map(|(key, value)| (key.as_str(), value.expose_secret()))
        .collect();
    assert_eq!(
        secrets,
        [
            ("ssl.key.password", "key-pa55"),
            ("ssl.keystore.password", "store-pa55"),
            ("sasl.oauthbearer.client.secret", "client-s3cret"),
        ]
    );
    assert!(!format!("{cli:?} {properties:?}").contains("pa55"));
}

#[test]
fn a_secret_file_that_cannot_be_read_names_the_setting_and_the_file() {
    let args = BASE.iter().copied().chain([
        "--kafka-ssl-key-password-file",
        "/nonexistent/sluice/key-password",
    ]);
    let cli: ServiceCli = parse_from(args).unwrap();
    let err = cli.kafka.resolve().unwrap_err().to_string();
    assert!(
        err.starts_with(
            "setting kafka-ssl-key-password: cannot read /nonexistent/sluice/key-password:"
        ),
        "{err}"
    );
}

#[test]
fn every_secret_librdkafka_knows_is_refused_on_the_command_line() {
    for property in [
        "sasl.oauthbearer.client.credentials.client.secret=x",
        "ssl.key.pem=x",
        "sasl.oauthbearer.assertion.private.key.passphrase=x",
    ] {
        let args = BASE.iter().copied().chain(["--kafka-property", property]);
        let cli: ServiceCli = parse_from(args).unwrap();
        let err = cli.kafka.resolve().unwrap_err().to_string();
        assert!(err.contains("is a secret: give it as"), "{property}: {err}");
    }
}

#[test]
fn kafka_properties_that_weaken_delivery_are_refused() {
    for (property, named) in [
        ("acks=1", "acks"),
        ("request.required.acks=0", "request.required.acks"),
        ("enable.idempotence=false", "enable.idempotence"),
        ("isolation.level=read_uncommitted", "isolation.level"),
        ("enable.auto.commit=true", "enable.auto.commit"),
        ("enable.auto.offset.store=true", "enable.auto.offset.store"),
        ("auto.offset.reset=latest", "auto.offset.reset"),
        ("transactional.id=shared", "transactional.id"),
    ] {
        let args = BASE.iter().copied().chain(["--kafka-property", property]);
        let cli: ServiceCli = parse_from(args).unwrap();
        let err = cli.kafka.resolve().unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("setting kafka-property: {named} ")),
            "{property}: {err}"
        );
    }
    // The values Sluice sets itself are harmless to repeat.
    for property in [
        "acks=all",
        "enable.idempotence=true",
        "isolation.level=read_committed",
    ] {
        let args = BASE.iter().copied().chain(["--kafka-property", property]);
        let cli: ServiceCli = parse_from(args).unwrap();
        assert!(cli.kafka.resolve().is_ok(), "{property}");
    }
}

/// A service with a database: the URL holds a password, so it comes from a
/// file as well as from the environment.
#[derive(Debug, Parser)]
struct DatabaseCli {
    #[command(flatten)]
    database: DatabaseArgs,
}

#[test]
fn the_database_url_comes_from_a_file() {
    let url = file("database-url", "postgres://sluice:pa55@db:5432/orders\n");
    let cli: DatabaseCli =
        parse_from(["svc", "--database-url-file", url.to_str().unwrap()]).unwrap();
    assert_eq!(
        cli.database.url().unwrap().expose_secret(),
        "postgres://sluice:pa55@db:5432/orders"
    );
    assert!(!format!("{cli:?}").contains("pa55"));
    let cli: DatabaseCli = parse_from(["svc"]).unwrap();
    let err = cli.database.url().unwrap_err().to_string();
    assert_eq!(
        err,
        "setting database-url: is not set: give SLUICE_DATABASE_URL or --database-url-file"
    );
}
