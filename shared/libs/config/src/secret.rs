//! Secrets: taken from an environment variable or a file, held as
//! `SecretString` (redacted in `Debug`, zeroed on drop).

use std::path::PathBuf;

use secrecy::SecretString;

use crate::ConfigError;

/// clap value parser for a secret.
pub fn parse_secret(value: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(value.to_owned()))
}

/// A secret given directly (environment) or as a file path (a mounted
/// Kubernetes secret, say); at most one of the two.
#[derive(Debug, Clone, Default)]
pub struct SecretArgs {
    /// The value, from the environment.
    pub value: Option<SecretString>,
    /// A file holding the value.
    pub file: Option<PathBuf>,
}

impl SecretArgs {
    /// The secret, read from the file if one is named; a trailing newline
    /// (as editors and `kubectl create secret` leave) is not part of it.
    pub fn resolve(&self, setting: &'static str) -> Result<Option<SecretString>, ConfigError> {
        match (&self.value, &self.file) {
            (Some(_), Some(_)) => Err(ConfigError::Invalid {
                setting,
                reason: "set either the value or the file, not both".into(),
            }),
            (Some(value), None) => Ok(Some(value.clone())),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Invalid {
                    setting,
                    reason: format!("cannot read {}: {err}", path.display()),
                })?;
                Ok(Some(SecretString::from(
                    text.trim_end_matches(['\r', '\n']).to_owned(),
                )))
            }
            (None, None) => Ok(None),
        }
    }
}
