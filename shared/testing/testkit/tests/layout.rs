//! The shelves of the workspace, read from `cargo metadata`: libraries the
//! fleet runs on (shared/libs), what only tests use (shared/testing), the
//! long-running services (services/fleet) and the operator tools
//! (services/tools). A library depends only on libraries, a service only on
//! libraries (never on another service), a test crate on libraries and other
//! test crates (the fleet harness uses the test kit), and every package is
//! named `sluice-*`.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::process::Command;

use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shelf {
    Library,
    Testing,
    Service,
    Tool,
}

impl Shelf {
    fn of(manifest: &str) -> Option<Shelf> {
        [
            ("/shared/libs/", Shelf::Library),
            ("/shared/testing/", Shelf::Testing),
            ("/services/fleet/", Shelf::Service),
            ("/services/tools/", Shelf::Tool),
        ]
        .into_iter()
        .find(|(folder, _)| manifest.contains(folder))
        .map(|(_, shelf)| shelf)
    }

    /// What a crate on this shelf may depend on to build (dev-dependencies
    /// aside: tests may use the test kit and the stand-ins).
    fn may_use(self, other: Shelf) -> bool {
        match self {
            Shelf::Library | Shelf::Service => other == Shelf::Library,
            Shelf::Testing | Shelf::Tool => matches!(other, Shelf::Library | Shelf::Testing),
        }
    }
}

/// Every rule a package of `metadata` (cargo metadata's JSON) breaks.
fn violations(metadata: &Value) -> Vec<String> {
    let packages = metadata["packages"].as_array().unwrap();
    let mut shelves = HashMap::new();
    let mut found = Vec::new();
    for package in packages {
        let name = package["name"].as_str().unwrap();
        let manifest = package["manifest_path"].as_str().unwrap();
        match Shelf::of(manifest) {
            Some(shelf) => {
                shelves.insert(name, shelf);
            }
            None => found.push(format!("{name} ({manifest}) is on no shelf")),
        }
        if !name.starts_with("sluice-") {
            found.push(format!("{name} is not named sluice-*"));
        }
    }
    for package in packages {
        let name = package["name"].as_str().unwrap();
        let Some(&shelf) = shelves.get(name) else {
            continue;
        };
        for dependency in package["dependencies"].as_array().unwrap() {
            let target = dependency["name"].as_str().unwrap();
            let dev = dependency["kind"].as_str() == Some("dev");
            match shelves.get(target) {
                Some(&other) if !dev && !shelf.may_use(other) => {
                    found.push(format!(
                        "{name} ({shelf:?}) depends on {target} ({other:?})"
                    ));
                }
                _ => {}
            }
        }
    }
    found
}

#[test]
fn every_crate_is_on_its_shelf_and_depends_only_on_what_it_may() {
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(metadata["packages"].as_array().unwrap().len() >= 18);
    assert_eq!(violations(&metadata), Vec::<String>::new());
}

#[test]
fn a_library_using_a_tool_or_a_service_using_a_service_is_named() {
    let package = |name: &str, path: &str, dependencies: &[(&str, Option<&str>)]| {
        json!({
            "name": name,
            "manifest_path": format!("/repo/{path}/Cargo.toml"),
            "dependencies": dependencies
                .iter()
                .map(|(name, kind)| json!({ "name": name, "kind": kind }))
                .collect::<Vec<_>>(),
        })
    };
    let metadata = json!({ "packages": [
        package("sluice-avro", "shared/libs/avro", &[("sluice-provision", None)]),
        package("sluice-kafka", "shared/libs/kafka", &[("sluice-testkit", Some("dev"))]),
        package("sluice-provision", "services/tools/provision", &[("sluice-kafka", None)]),
        package("sluice-testkit", "shared/testing/testkit", &[]),
        package("sluice-ingest", "services/fleet/ingest", &[("sluice-erp-sink", None)]),
        package("sluice-erp-sink", "services/fleet/erp-sink", &[("sluice-testkit", None)]),
        package(
            "sluice-fleet",
            "shared/testing/fleet",
            &[("sluice-testkit", None), ("sluice-ingest", None)],
        ),
        package("stray", "misc/stray", &[]),
    ]});
    assert_eq!(
        violations(&metadata),
        [
            "stray (/repo/misc/stray/Cargo.toml) is on no shelf",
            "stray is not named sluice-*",
            "sluice-avro (Library) depends on sluice-provision (Tool)",
            "sluice-ingest (Service) depends on sluice-erp-sink (Service)",
            "sluice-erp-sink (Service) depends on sluice-testkit (Testing)",
            "sluice-fleet (Testing) depends on sluice-ingest (Service)",
        ]
    );
}
