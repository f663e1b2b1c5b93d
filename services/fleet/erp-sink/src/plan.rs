//! What a command's fields mean for Odoo. ErpCommand fields are flat name →
//! scalar pairs; relational values are spelled with dotted names:
//!
//! - `partner_id.email = "ada@example.org"`, `partner_id.name = "Ada"`: the
//!   many2one `partner_id` points at the record of its model found by the
//!   first sub-field (email); when there is none and more sub-fields are
//!   given, it is created from them. A reference given by its key alone
//!   (`order_line.0.product_id.default_code = "TEA-1"`) must exist.
//! - `order_line.0.product_uom_qty = 2`: a line of the one2many
//!   `order_line`, numbered 0, 1, … in the order they are sent; the lines
//!   are created with the record (`[0, 0, vals]`), or replace its lines on
//!   a write (`[5, 0, 0]` first).
//!
//! Any other name is a field of the model, its value written as it is.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// A many2one given by a key field of its target.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// The many2one field (`partner_id`).
    pub field: String,
    /// The target's field it is found by, and the value (`email`).
    pub key: (String, Value),
    /// The target's other fields, to create it with when it is missing.
    pub create: Map<String, Value>,
}

/// Values and references of one record (the command's, or a line's).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Part {
    /// Plain field values.
    pub values: Map<String, Value>,
    /// Many2one fields to resolve.
    pub references: Vec<Reference>,
}

/// A command's fields, sorted by what they are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// The record's own values and references.
    pub record: Part,
    /// One2many field → its lines, in order.
    pub lines: BTreeMap<String, Vec<Part>>,
}

/// A field name the plan cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field {0:?}: expected `field`, `many2one.key` or `one2many.N.field`")]
pub struct BadName(pub String);

impl Plan {
    /// The plan of `fields`, in their order.
    pub fn of(fields: impl IntoIterator<Item = (String, Value)>) -> Result<Self, BadName> {
        let mut plan = Self::default();
        let mut lines: BTreeMap<String, BTreeMap<u32, Part>> = BTreeMap::new();
        for (name, value) in fields {
            let parts: Vec<&str> = name.split('.').collect();
            match parts.as_slice() {
                [one2many, index, rest @ ..]
                    if !rest.is_empty() && index.parse::<u32>().is_ok() =>
                {
                    let index = index.parse::<u32>().map_err(|_| BadName(name.clone()))?;
                    let line = lines
                        .entry((*one2many).to_owned())
                        .or_default()
                        .entry(index)
                        .or_default();
                    add(line, rest, value).map_err(|()| BadName(name.clone()))?;
                }
                _ => add(&mut plan.record, &parts, value).map_err(|()| BadName(name.clone()))?,
            }
        }
        plan.lines = lines
            .into_iter()
            .map(|(field, lines)| (field, lines.into_values().collect()))
            .collect();
        Ok(plan)
    }
}

fn add(part: &mut Part, path: &[&str], value: Value) -> Result<(), ()> {
    match path {
        [field] if !field.is_empty() => {
            part.values.insert((*field).to_owned(), value);
            Ok(())
        }
        [field, sub] if !field.is_empty() && !sub.is_empty() => {
            match part.references.iter_mut().find(|r| r.field == *field) {
                Some(reference) => {
                    reference.create.insert((*sub).to_owned(), value);
                }
                None => part.references.push(Reference {
                    field: (*field).to_owned(),
                    key: ((*sub).to_owned(), value),
                    create: Map::new(),
                }),
            }
            Ok(())
        }
        _ => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn dotted_names_become_references_and_lines() {
        let fields = [
            ("client_order_ref", json!("o-1")),
            ("partner_id.email", json!("ada@example.org")),
            ("partner_id.name", json!("Ada")),
            ("order_line.1.product_id.default_code", json!("MUG-1")),
            ("order_line.0.product_id.default_code", json!("TEA-1")),
            ("order_line.0.product_uom_qty", json!(2)),
        ];
        let plan = Plan::of(fields.map(|(n, v)| (n.to_owned(), v))).unwrap();
        assert_eq!(plan.record.values["client_order_ref"], json!("o-1"));
        let partner = &plan.record.references[0];
        assert_eq!(partner.key, ("email".to_owned(), json!("ada@example.org")));
        assert_eq!(partner.create["name"], json!("Ada"));
        let lines = &plan.lines["order_line"];
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].references[0].key.1, json!("TEA-1"));
        assert_eq!(lines[0].values["product_uom_qty"], json!(2));
        assert_eq!(lines[1].references[0].key.1, json!("MUG-1"));
        assert!(Plan::of([("a..b".to_owned(), json!(1))]).is_err());
        assert!(Plan::of([("a.b.c".to_owned(), json!(1))]).is_err());
    }
}
