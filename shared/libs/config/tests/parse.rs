//! Flags, config file and secrets, as a service sees them.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use clap::Parser;
use secrecy::ExposeSecret;
use sluice_config::{ConfigError, KafkaArgs, RegistryArgs, parse_from};

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
