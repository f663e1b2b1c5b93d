//! The Google service-account key file: what `sandbox keygen` writes for a
//! client (sheets-sink) and what the sandbox checks token requests against.

use std::path::Path;

use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde::{Deserialize, Serialize};

/// Why a key file could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Not a service-account key.
    #[error("{path}: not a service-account key: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// The fields of a Google service-account JSON key that clients use.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceAccountKey {
    /// Always `service_account`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Project id.
    pub project_id: String,
    /// Key id, sent as the JWT's `kid`.
    pub private_key_id: String,
    /// PKCS#8 PEM.
    pub private_key: String,
    /// The account: the JWT's issuer.
    pub client_email: String,
    /// Client id.
    pub client_id: String,
    /// Where tokens are asked for: the JWT's audience.
    pub token_uri: String,
}

impl ServiceAccountKey {
    /// A fresh 2048-bit key for `client_email`, asking `token_uri` for tokens.
    pub fn generate(client_email: &str, token_uri: &str) -> Result<Self, KeyError> {
        let invalid = |reason: String| KeyError::Invalid {
            path: "(generated)".into(),
            reason,
        };
        let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
            .map_err(|e| invalid(e.to_string()))?;
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Self {
            kind: "service_account".into(),
            project_id: "sluice-sandbox".into(),
            private_key_id: uuid::Uuid::new_v4().simple().to_string(),
            private_key: pem.to_string(),
            client_email: client_email.into(),
            client_id: "100000000000000000001".into(),
            token_uri: token_uri.into(),
        })
    }

    /// Reads a key file.
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|err| KeyError::Invalid {
            path: path.display().to_string(),
            reason: err.to_string(),
        })
    }

    /// Writes it, readable by its owner only.
    pub fn write(&self, path: &Path) -> Result<(), KeyError> {
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        let text = serde_json::to_string_pretty(self).map_err(|err| KeyError::Invalid {
            path: path.display().to_string(),
            reason: err.to_string(),
        })?;
        std::fs::write(path, text).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        }
        Ok(())
    }

    /// The public half, PEM, for verifying the account's JWTs.
    pub fn public_key_pem(&self) -> Result<String, KeyError> {
        let invalid = |reason: String| KeyError::Invalid {
            path: self.client_email.clone(),
            reason,
        };
        let key =
            RsaPrivateKey::from_pkcs8_pem(&self.private_key).map_err(|e| invalid(e.to_string()))?;
        RsaPublicKey::from(&key)
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| invalid(e.to_string()))
    }
}
