//! An event a saga cannot keep as JSON (a field whose JSON form does not
//! come back) is refused when the saga loads, naming the field, rather than
//! failing every saga of it at its first step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sluice_contracts::Catalog;
use sluice_mapping::check::check_keepable;

/// A copy of the shipped contracts with OrderPlaced given `field` (the
/// envelope given `envelope`), in a directory of this process and field.
fn contracts_with(field: Value, envelope: Option<Value>) -> PathBuf {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../schemas");
    let name = field["name"].as_str().unwrap();
    let dir = std::env::temp_dir().join(format!("sluice-keepable-{}-{name}", std::process::id()));
    copy(&shipped, &dir);
    let path = dir.join("orders/OrderEvent.avsc");
    let mut schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let fields = schema["fields"].as_array_mut().unwrap();
    let payload = fields.iter_mut().find(|f| f["name"] == "payload").unwrap();
    payload["type"][0]["fields"]
        .as_array_mut()
        .unwrap()
        .push(field);
    fields.extend(envelope);
    std::fs::write(&path, schema.to_string()).unwrap();
    dir
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_start_event_with_bytes_is_refused_naming_the_field() {
    let shipped = Catalog::embedded().unwrap();
    check_keepable("saga s", "orders", "OrderPlaced", &shipped).unwrap();

    let dir = contracts_with(
        json!({
            "name": "signature", "type": ["null", "bytes"], "default": null,
            "doc": "The customer's signature."
        }),
        None,
    );
    let catalog = Catalog::from_dir(&dir).unwrap();
    let err = check_keepable("saga s", "orders", "OrderPlaced", &catalog).unwrap_err();
    assert!(
        err.to_string().contains("OrderPlaced.signature is bytes"),
        "{err}"
    );
    // Another event of the same contract is kept.
    check_keepable("saga s", "orders", "OrderCancelled", &catalog).unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_start_event_with_an_envelope_field_of_its_own_needs_a_default() {
    let optional =
        json!({"name": "note", "type": ["null", "string"], "default": null, "doc": "A note."});
    let tenant = json!({"name": "tenant", "type": "string", "doc": "Whose event it is."});
    let dir = contracts_with(optional, Some(tenant));
    let catalog = Catalog::from_dir(&dir).unwrap();
    let err = check_keepable("saga s", "orders", "OrderPlaced", &catalog).unwrap_err();
    assert!(
        err.to_string()
            .contains("OrderPlaced.tenant is an envelope field without a default"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
