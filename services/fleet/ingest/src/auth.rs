//! Bearer tokens, checked against their SHA-256 hashes in constant time.

use sha2::{Digest, Sha256};
use sluice_config::ConfigError;
use subtle::{Choice, ConstantTimeEq};

/// The hashes of the accepted tokens.
#[derive(Debug, Clone)]
pub struct TokenHashes(Vec<[u8; 32]>);

impl TokenHashes {
    /// Parses hex SHA-256 hashes (`sha256sum` output).
    pub fn parse(hashes: &[String]) -> Result<Self, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            setting: "token-sha256",
            reason,
        };
        if hashes.is_empty() {
            return Err(invalid(
                "no token hash is configured: nobody could send events".into(),
            ));
        }
        hashes
            .iter()
            .map(|hash| {
                let mut bytes = [0; 32];
                hex::decode_to_slice(hash.trim(), &mut bytes)
                    .map_err(|err| invalid(format!("{hash:?} is not a hex SHA-256 hash: {err}")))?;
                Ok(bytes)
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// The token's hash, its identity, when it is one of the accepted ones.
    /// Every hash is compared, in constant time, so timing does not tell
    /// how close a guess was.
    pub fn accepts(&self, token: &str) -> Option<[u8; 32]> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let matched = self.0.iter().fold(Choice::from(0), |found, hash| {
            found | hash.ct_eq(&presented)
        });
        bool::from(matched).then_some(presented)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256_hex(token: &str) -> String {
        hex::encode(Sha256::digest(token.as_bytes()))
    }

    #[test]
    fn accepts_only_tokens_whose_hash_is_configured() {
        let hashes = TokenHashes::parse(&[sha256_hex("first"), sha256_hex("second")]).unwrap();
        assert_eq!(
            hashes.accepts("first"),
            Some(Sha256::digest("first").into())
        );
        assert!(hashes.accepts("second").is_some());
        assert!(hashes.accepts("third").is_none() && hashes.accepts("").is_none());
    }

    #[test]
    fn a_malformed_hash_is_named() {
        let err = TokenHashes::parse(&["abc".into()]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("setting token-sha256: \"abc\" is not a hex SHA-256 hash"),
            "{err}"
        );
        assert!(TokenHashes::parse(&[]).is_err());
    }
}
