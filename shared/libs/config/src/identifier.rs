//! Names that go into SQL DDL (tables, slots, publications) cannot be bound
//! as parameters: only plain lowercase identifiers are taken.

/// `name` if it is a plain identifier (lowercase letters, digits and `_`,
/// not starting with a digit); a clap value parser.
pub fn sql_identifier(name: &str) -> Result<String, String> {
    let plain = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "{name:?}: use lowercase letters, digits and _ only"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_identifiers_pass() {
        assert_eq!(
            sql_identifier("sluice_saga_outbox").as_deref(),
            Ok("sluice_saga_outbox")
        );
        for bad in [
            "",
            "1slot",
            "Slot",
            "slot; DROP TABLE x",
            "a-b",
            "\"quoted\"",
        ] {
            assert!(sql_identifier(bad).is_err(), "{bad:?}");
        }
    }
}
