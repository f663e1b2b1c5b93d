//! Bearer tokens, checked against their SHA-256 hashes in constant time, and
//! what each may post.
//!
//! A configured token is `<sha256>` (every event type a client may post) or
//! `<sha256>:<scope>+<scope>…`, a scope being an aggregate type (`orders`) or
//! one of its event types (`orders.OrderPlaced`). Scopes are checked against
//! the contracts at start: a misspelt name would otherwise silently refuse
//! every event of its token.

use sha2::{Digest, Sha256};
use sluice_avro::event_contract;
use sluice_config::ConfigError;
use sluice_contracts::Catalog;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

/// The accepted tokens.
#[derive(Debug, Clone)]
pub struct TokenHashes(Vec<Token>);

#[derive(Debug, Clone)]
struct Token {
    hash: [u8; 32],
    scope: Scope,
}

/// What a token may post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every event type a client may post.
    Any,
    /// Only these: an aggregate type with every event type (`None`), or one
    /// event type of it.
    Only(Vec<(String, Option<String>)>),
}

impl Scope {
    /// Whether some event type of `aggregate_type` is in the scope.
    pub fn allows_aggregate(&self, aggregate_type: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Only(scopes) => scopes
                .iter()
                .any(|(aggregate, _)| aggregate == aggregate_type),
        }
    }

    /// Whether an event of `event_type` on `aggregate_type` is in the scope.
    pub fn allows(&self, aggregate_type: &str, event_type: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Only(scopes) => scopes.iter().any(|(aggregate, event)| {
                aggregate == aggregate_type && event.as_deref().is_none_or(|e| e == event_type)
            }),
        }
    }
}

/// A token that was accepted: its hash, its identity, and its scope.
#[derive(Debug)]
pub struct Caller<'a> {
    /// SHA-256 of the token.
    pub token_sha256: [u8; 32],
    /// What it may post.
    pub scope: &'a Scope,
}

impl TokenHashes {
    /// Parses the configured tokens (see the module header); every scope
    /// must name an aggregate type of `catalog`, and an event type a client
    /// may post.
    pub fn parse(tokens: &[String], catalog: &Catalog) -> Result<Self, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            setting: "token-sha256",
            reason,
        };
        if tokens.is_empty() {
            return Err(invalid(
                "no token hash is configured: nobody could send events".into(),
            ));
        }
        tokens
            .iter()
            .enumerate()
            .map(|(index, token)| {
                let (hash, scopes) = match token.split_once(':') {
                    Some((hash, scopes)) => (hash.trim(), Some(scopes)),
                    None => (token.trim(), None),
                };
                let mut bytes = [0; 32];
                hex::decode_to_slice(hash, &mut bytes).map_err(|err| {
                    invalid(format!(
                        "token {index}: {hash:?} is not a hex SHA-256 hash: {err}"
                    ))
                })?;
                let scope = match scopes {
                    None => Scope::Any,
                    Some(scopes) => Scope::Only(
                        scopes
                            .split('+')
                            .map(|scope| parse_scope(scope.trim(), catalog))
                            .collect::<Result<_, _>>()
                            .map_err(|reason| invalid(format!("token {index}: {reason}")))?,
                    ),
                };
                Ok(Token { hash: bytes, scope })
            })
            .collect::<Result<Vec<Token>, _>>()
            .and_then(|tokens| {
                // Two entries for one token would leave its scope to their order.
                for (index, token) in tokens.iter().enumerate() {
                    if tokens[..index].iter().any(|seen| seen.hash == token.hash) {
                        return Err(invalid(format!(
                            "token {index}: the same hash is listed twice; give one entry with every scope"
                        )));
                    }
                }
                Ok(Self(tokens))
            })
    }

    /// The caller, when the token is one of the accepted ones. Every hash
    /// is compared, in constant time, so timing does not tell how close a
    /// guess was or which token matched.
    pub fn accepts(&self, token: &str) -> Option<Caller<'_>> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let (mut found, mut at) = (Choice::from(0), 0_u32);
        for (index, known) in (0_u32..).zip(&self.0) {
            let same = known.hash.ct_eq(&presented);
            at.conditional_assign(&index, same);
            found |= same;
        }
        let known = self.0.get(usize::try_from(at).ok()?)?;
        bool::from(found).then_some(Caller {
            token_sha256: presented,
            scope: &known.scope,
        })
    }
}

/// `Aggregate` or `Aggregate.EventType`, checked against the contracts.
fn parse_scope(scope: &str, catalog: &Catalog) -> Result<(String, Option<String>), String> {
    let (aggregate, event) = match scope.split_once('.') {
        Some((aggregate, event)) => (aggregate, Some(event)),
        None => (scope, None),
    };
    check_postable(aggregate, event, catalog)
        .map_err(|reason| format!("scope {scope:?}: {reason}"))?;
    Ok((aggregate.to_owned(), event.map(str::to_owned)))
}

/// Whether `aggregate_type` is declared in the contracts and `event_type`
/// (when given) is one of its event types that a client may post.
pub fn check_postable(
    aggregate_type: &str,
    event_type: Option<&str>,
    catalog: &Catalog,
) -> Result<(), String> {
    let topic = event_contract(aggregate_type);
    let contract = catalog.topic(&topic).ok_or_else(|| {
        format!("no aggregate type {aggregate_type:?} (no topic {topic} is declared)")
    })?;
    let Some(event) = event_type else {
        return Ok(());
    };
    if !contract.has_event_type(event) {
        return Err(format!("{} has no event type {event:?}", contract.name()));
    }
    if contract
        .spec()
        .reserved_event_types
        .iter()
        .any(|r| r == event)
    {
        return Err(format!(
            "{event} is emitted by Sluice itself; no client may post it"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256_hex(token: &str) -> String {
        hex::encode(Sha256::digest(token.as_bytes()))
    }

    fn catalog() -> Catalog {
        Catalog::embedded().unwrap()
    }

    #[test]
    fn accepts_only_tokens_whose_hash_is_configured() {
        let hashes =
            TokenHashes::parse(&[sha256_hex("first"), sha256_hex("second")], &catalog()).unwrap();
        let first = hashes.accepts("first").unwrap();
        assert_eq!(
            first.token_sha256,
            <[u8; 32]>::from(Sha256::digest("first"))
        );
        assert_eq!(first.scope, &Scope::Any);
        assert!(hashes.accepts("second").is_some());
        assert!(hashes.accepts("third").is_none() && hashes.accepts("").is_none());
    }

    #[test]
    fn each_token_gets_its_own_scope() {
        let tokens = [
            sha256_hex("wide"),
            format!("{}:orders.OrderPlaced", sha256_hex("narrow")),
            format!("{} : orders + requests.RequestCreated", sha256_hex("two")),
        ];
        let hashes = TokenHashes::parse(&tokens, &catalog()).unwrap();
        let scope = |token| hashes.accepts(token).unwrap().scope.clone();
        assert!(scope("wide").allows("requests", "RequestStatusChanged"));
        let narrow = scope("narrow");
        assert!(narrow.allows("orders", "OrderPlaced"));
        assert!(!narrow.allows("orders", "OrderCancelled"));
        assert!(!narrow.allows("requests", "OrderPlaced"));
        let two = scope("two");
        assert!(two.allows("orders", "OrderCancelled") && two.allows("requests", "RequestCreated"));
        assert!(!two.allows("requests", "RequestStatusChanged"));
    }

    #[test]
    fn a_malformed_token_or_scope_is_named() {
        let refused = |token: String| {
            TokenHashes::parse(&[sha256_hex("ok"), token], &catalog())
                .unwrap_err()
                .to_string()
        };
        assert!(
            refused("abc".into())
                .starts_with("setting token-sha256: token 1: \"abc\" is not a hex SHA-256 hash"),
        );
        let hash = sha256_hex("scoped");
        assert_eq!(
            refused(format!("{hash}:order")),
            "setting token-sha256: token 1: scope \"order\": no aggregate type \"order\" (no topic order.events.v1 is declared)"
        );
        assert_eq!(
            refused(format!("{hash}:orders.Customer")),
            "setting token-sha256: token 1: scope \"orders.Customer\": orders.events.v1 has no event type \"Customer\""
        );
        assert_eq!(
            refused(format!("{hash}:orders.OrderConfirmed")),
            "setting token-sha256: token 1: scope \"orders.OrderConfirmed\": OrderConfirmed is emitted by Sluice itself; no client may post it"
        );
        assert_eq!(
            refused(format!("{}:orders", sha256_hex("ok"))),
            "setting token-sha256: token 1: the same hash is listed twice; give one entry with every scope"
        );
        assert!(TokenHashes::parse(&[], &catalog()).is_err());
    }
}
