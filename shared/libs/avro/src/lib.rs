//! Avro values in the Confluent wire format (magic byte 0, 4-byte schema id,
//! Avro binary), encoded from and decoded into the typed contracts through the
//! schema registry.
//!
//! A writer writes its own schema: the one its contract had when it was built
//! (or configured), under the id the registry gave that exact schema. It never
//! writes "the latest version", which anyone may register at any time.
//! Readers decode any registered writer schema, looked up by id and cached by
//! schema_registry_converter.

mod datum;
mod envelope;
mod json;
mod readiness;

pub use envelope::{EventInput, event_contract, event_record, kept_event_record};
pub use json::{JsonMismatch, json_to_avro, json_to_avro_as_reader};
pub use readiness::RegistryReadiness;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use apache_avro::types::Value;
use schema_registry_converter::async_impl::avro::AvroDecoder;
use schema_registry_converter::async_impl::schema_registry::{SrSettings, perform_sr_call};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{RawRegisteredSchema, SrCall};
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use sluice_config::{ConfigError, RegistryArgs};
use sluice_contracts::types::Contract;
use sluice_contracts::{Catalog, Topic};
use sluice_resilience::{Classified, ErrorClass};

/// Why a value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The bytes do not start with the wire format's magic byte and schema id.
    #[error("not in the Confluent wire format: {0}")]
    NotWireFormat(String),
    /// The registry could not be reached; trying again may work.
    #[error("schema registry unavailable: {0}")]
    RegistryUnavailable(String),
    /// The registry does not know the schema, or the bytes do not match it.
    #[error("{0}")]
    Avro(String),
    /// The writer's own schema is not registered under the subject:
    /// provisioning has not run for this version yet. Retryable, so that
    /// nothing is given up while it does.
    #[error(
        "schemas/{schema_file} is not registered under {subject}: run `sluice-provision apply` with this version's contracts"
    )]
    NotRegistered {
        /// The subject looked in.
        subject: String,
        /// The schema file this binary writes with.
        schema_file: String,
    },
    /// The value does not fit the writer's schema.
    #[error("value does not fit its schema: {0}")]
    Unfit(String),
    /// The value decoded, but is not the expected type.
    #[error("decoded value is not a {expected}: {reason}")]
    WrongType {
        /// The Rust type asked for.
        expected: &'static str,
        /// What did not fit.
        reason: String,
    },
}

impl CodecError {
    /// Whether the registry is away or does not hold the writer's schema
    /// yet: a reason to hold the partition until it does, never to give a
    /// message up.
    pub fn holds(&self) -> bool {
        matches!(
            self,
            Self::RegistryUnavailable(_) | Self::NotRegistered { .. }
        )
    }
}

impl Classified for CodecError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::RegistryUnavailable(_) | Self::NotRegistered { .. } => ErrorClass::Retryable,
            _ => ErrorClass::Permanent,
        }
    }
}

impl From<SRCError> for CodecError {
    fn from(err: SRCError) -> Self {
        let message = match &err.cause {
            Some(cause) => format!("{}: {cause}", err.error),
            None => err.error.clone(),
        };
        if err.retriable || registry_failed(&err) {
            Self::RegistryUnavailable(message)
        } else {
            Self::Avro(message)
        }
    }
}

/// Whether the registry answered 404 (no such subject, or no such schema
/// under it).
fn answered_not_found(err: &SRCError) -> bool {
    err.error.contains("failed with status 404")
}

/// Whether the registry itself failed (it answered 5xx or 429), as opposed
/// to refusing the request (404: no such schema). schema_registry_converter
/// retries only 502 and 503 and caches every other failure: a registry that
/// answered 500 once (Apicurio does while its database restarts) would
/// otherwise fail every later lookup of that schema in this process.
fn registry_failed(err: &SRCError) -> bool {
    err.error
        .split("failed with status ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|code| code.parse::<u16>().ok())
        .is_some_and(|status| status >= 500 || status == 429)
}

/// Encodes topic values with the writer's own schema and decodes them with
/// whichever registered schema wrote them.
#[derive(Debug)]
pub struct AvroCodec {
    settings: SrSettings,
    decoder: AvroDecoder,
    datum: datum::Datum,
    writers: WriterIds,
    /// Held while the registry is asked for a writer id: a batch of 500
    /// values encoded at once asks once, not 500 times (measured: three
    /// sheets-sink batches at once took 1.4 s on their first audit records).
    /// It keeps the last failed lookup, so the callers that waited for it
    /// fail with it instead of asking again one after another.
    lookup: tokio::sync::Mutex<Option<FailedLookup>>,
    /// The deployment's contracts (`--contracts-dir`), when it brings its
    /// own: typed values are written with their version of a contract.
    contracts: Option<Arc<Catalog>>,
}

/// The largest single allocation apache-avro may make while decoding (a
/// string, bytes or a collection). A length prefix above it is refused
/// before anything is allocated. A Kafka record is at most a few MiB
/// (brokers default to 1 MiB), so a larger length can only be a hostile or
/// corrupt record; apache-avro's own default is 512 MiB per allocation.
pub const MAX_ALLOCATION_BYTES: usize = 64 * 1024 * 1024;

impl AvroCodec {
    /// A codec using the registry described by `registry`.
    pub fn new(registry: SrSettings) -> Self {
        // Process-wide, and fixed by its first call: every decoder of the
        // process is bounded from the first codec on.
        apache_avro::util::max_allocation_bytes(MAX_ALLOCATION_BYTES);
        Self {
            decoder: AvroDecoder::new(registry.clone()),
            datum: datum::Datum::default(),
            writers: WriterIds::default(),
            lookup: tokio::sync::Mutex::new(None),
            settings: registry,
            contracts: None,
        }
    }

    /// The same, writing typed values with `contracts`' version of their
    /// contract (a deployment that rolled out a newer one, with fields this
    /// binary does not know: they are written with their defaults).
    pub fn with_contracts(mut self, contracts: Arc<Catalog>) -> Self {
        self.contracts = Some(contracts);
        self
    }

    /// Maps a registry result; after a failure of the registry itself, the
    /// failure the library cached is dropped so the next call asks again.
    fn settle<T>(&self, result: Result<T, SRCError>) -> Result<T, CodecError> {
        result.map_err(|err| {
            if registry_failed(&err) {
                self.decoder.remove_errors_from_cache();
            }
            CodecError::from(err)
        })
    }

    /// A codec for a service's `--schema-registry-*` settings.
    pub fn from_args(args: &RegistryArgs) -> Result<Self, ConfigError> {
        Ok(Self::new(registry_settings(args)?))
    }

    /// Encodes `value` for `topic` with the schema of its contract, under
    /// that schema's id in `<topic>-value`: the deployment's version when it
    /// can hold the value (a newer one, its added fields at their defaults),
    /// else the one this binary was built with (a deployment whose contracts
    /// are older than the binary; its schema must then be provisioned, or
    /// the write says so and holds).
    pub async fn encode<T: Contract>(&self, topic: &str, value: &T) -> Result<Vec<u8>, CodecError> {
        let deployed = self
            .contracts
            .as_deref()
            .and_then(|contracts| contracts.topic_with_schema(T::SCHEMA_FILE))
            .and_then(|schema| {
                let writer = self.writer(schema).ok()?;
                let written = framed(|bytes| writer.get().write_ser(bytes, value)).ok()?;
                Some((schema, written))
            });
        let (schema, mut bytes) = match deployed {
            Some(written) => written,
            None => {
                let schema = built_in()?
                    .topic_with_schema(T::SCHEMA_FILE)
                    .ok_or_else(|| {
                        CodecError::Avro(format!("no contract uses {}", T::SCHEMA_FILE))
                    })?;
                let writer = self.writer(schema)?;
                let bytes = framed(|bytes| writer.get().write_ser(bytes, value)).map_err(unfit)?;
                (schema, bytes)
            }
        };
        set_id(&mut bytes, self.writer_id(topic, schema).await?);
        Ok(bytes)
    }

    /// Encodes a generic Avro `value` (from [`json_to_avro`], say) for
    /// `topic` with the value schema of `contract`, under that schema's id
    /// in `<topic>-value`.
    pub async fn encode_value(
        &self,
        topic: &str,
        contract: &Topic,
        value: Value,
    ) -> Result<Vec<u8>, CodecError> {
        let id = self.writer_id(topic, contract).await?;
        let writer = self.writer(contract)?;
        let mut bytes = framed(|bytes| writer.get().write_value(bytes, value)).map_err(unfit)?;
        set_id(&mut bytes, id);
        Ok(bytes)
    }

    /// The id under which `<topic>-value` holds the value schema of
    /// `contract`: asked of the registry once (a lookup, which registers
    /// nothing), then cached; ids never change.
    async fn writer_id(&self, topic: &str, contract: &Topic) -> Result<u32, CodecError> {
        let schema = contract.shared_value_schema();
        if let Some(id) = self.writers.get(topic, &schema) {
            return Ok(id);
        }
        let mut last_failure = self.lookup.lock().await;
        if let Some(id) = self.writers.get(topic, &schema) {
            return Ok(id);
        }
        let subject = format!("{topic}-value");
        if let Some(failed) = last_failure.as_ref().filter(|f| f.answers(&subject)) {
            return Err(CodecError::RegistryUnavailable(failed.error.clone()));
        }
        match self.ask_writer_id(&subject, contract).await {
            Ok(id) => {
                *last_failure = None;
                self.writers.insert(topic, schema, id);
                Ok(id)
            }
            Err(err) => {
                *last_failure = Some(FailedLookup {
                    subject,
                    at: Instant::now(),
                    error: err.to_string(),
                });
                Err(err)
            }
        }
    }

    async fn ask_writer_id(&self, subject: &str, contract: &Topic) -> Result<u32, CodecError> {
        let body = serde_json::json!({ "schema": contract.value_schema_json() }).to_string();
        let found = perform_sr_call(&self.settings, SrCall::PostForVersion(subject, &body)).await;
        match found {
            Ok(RawRegisteredSchema { id: Some(id), .. }) => Ok(id),
            Ok(_) => Err(CodecError::Avro(format!(
                "the registry named no id for {subject}"
            ))),
            Err(err) if !err.retriable && !registry_failed(&err) && answered_not_found(&err) => {
                Err(CodecError::NotRegistered {
                    subject: subject.to_owned(),
                    schema_file: contract.spec().value_schema.clone(),
                })
            }
            Err(err) => Err(CodecError::from(err)),
        }
    }

    /// The writer of `contract`'s value schema, built once.
    fn writer(&self, contract: &Topic) -> Result<Arc<datum::Writer>, CodecError> {
        self.datum
            .writer(contract.shared_value_schema())
            .map_err(unfit)
    }

    /// The reader of values written with the schema whose id `bytes`
    /// carry, built once per id (ids never change).
    async fn reader(&self, bytes: &[u8]) -> Result<Arc<datum::Reader>, CodecError> {
        check_wire_format(bytes)?;
        let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        let schema = self.settle(self.decoder.get_schema(id).await)?;
        self.datum
            .reader(id, schema)
            .map_err(|err| CodecError::Avro(format!("Could not resolve Avro schema {id}: {err}")))
    }

    /// Decodes wire-format bytes into a generic Avro value.
    pub async fn decode_value(&self, bytes: &[u8]) -> Result<Value, CodecError> {
        let reader = self.reader(bytes).await?;
        reader.get().read_value(&mut &bytes[5..]).map_err(|err| {
            CodecError::Avro(format!("Could not transform bytes using schema: {err}"))
        })
    }

    /// Decodes wire-format bytes into `T`, reading the Avro binary with the
    /// writer's schema (looked up by id, cached) straight into serde, so
    /// unions of records arrive as Rust enums.
    pub async fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        let reader = self.reader(bytes).await?;
        reader
            .get()
            .read_deser(&mut &bytes[5..])
            .map_err(|err| CodecError::WrongType {
                expected: std::any::type_name::<T>(),
                reason: err.to_string(),
            })
    }
}

/// The contracts this binary was built with, parsed once.
fn built_in() -> Result<&'static Catalog, CodecError> {
    static BUILT_IN: OnceLock<Result<Catalog, String>> = OnceLock::new();
    BUILT_IN
        .get_or_init(|| Catalog::embedded().map_err(|err| err.to_string()))
        .as_ref()
        .map_err(|reason| CodecError::Avro(format!("the built-in contracts: {reason}")))
}

fn unfit(err: apache_avro::Error) -> CodecError {
    CodecError::Unfit(err.to_string())
}

/// The Confluent wire format: magic byte, schema id, Avro binary. The
/// binary is written after room for the id, which [`set_id`] fills: written
/// apart and then copied behind it, a command cost the transformer's
/// mapping a copy and an allocation more.
fn framed(
    write: impl FnOnce(&mut Vec<u8>) -> apache_avro::AvroResult<usize>,
) -> apache_avro::AvroResult<Vec<u8>> {
    let mut bytes = Vec::with_capacity(256);
    bytes.extend_from_slice(&[0; 5]);
    write(&mut bytes)?;
    Ok(bytes)
}

/// Writes the schema id into bytes from [`framed`].
fn set_id(bytes: &mut [u8], id: u32) {
    bytes[1..5].copy_from_slice(&id.to_be_bytes());
}

/// A writer-id lookup that failed, for the callers that waited on it.
#[derive(Debug)]
struct FailedLookup {
    subject: String,
    at: Instant,
    error: String,
}

impl FailedLookup {
    /// How long its failure answers the next callers for its subject.
    const FRESH: Duration = Duration::from_secs(1);

    fn answers(&self, subject: &str) -> bool {
        self.subject == subject && self.at.elapsed() < Self::FRESH
    }
}

/// Schema ids by topic and schema: a process writes a handful. A schema is
/// known by its address, which the entry keeps it at; compared by its text
/// (a few KiB) and looked up under a `<topic>-value` made anew, every value
/// encoded cost about 7 % of the transformer's mapping in a perf profile. A
/// contract loaded twice (built in and deployed) is looked up once each; a
/// catalog is loaded once a process (at start, or the built-in one), as the
/// writers' cache in `datum.rs` also assumes.
#[derive(Debug, Default)]
struct WriterIds(RwLock<HashMap<String, Vec<KnownId>>>);

/// A schema written to a topic, and its id there.
type KnownId = (Arc<apache_avro::Schema>, u32);

impl WriterIds {
    fn get(&self, topic: &str, schema: &Arc<apache_avro::Schema>) -> Option<u32> {
        let ids = self.0.read().unwrap_or_else(PoisonError::into_inner);
        ids.get(topic)?
            .iter()
            .find(|(known, _)| Arc::ptr_eq(known, schema))
            .map(|(_, id)| *id)
    }

    fn insert(&self, topic: &str, schema: Arc<apache_avro::Schema>, id: u32) {
        let mut ids = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let known = ids.entry(topic.to_owned()).or_default();
        if !known.iter().any(|(kept, _)| Arc::ptr_eq(kept, &schema)) {
            known.push((schema, id));
        }
    }
}

/// schema_registry_converter settings for a service's `--schema-registry-*`
/// settings: URL, timeout and basic auth.
pub fn registry_settings(args: &RegistryArgs) -> Result<SrSettings, ConfigError> {
    let mut settings = SrSettings::new_builder(args.base_url()?);
    settings.set_timeout(args.timeout());
    if let Some((user, password)) = args.basic_auth()? {
        settings.set_basic_authorization(&user, Some(password.expose_secret()));
    }
    settings
        .build_with(registry_http(args.ca_pem()?.as_deref())?)
        .map_err(|err| ConfigError::Invalid {
            setting: "schema-registry-url",
            reason: err.to_string(),
        })
}

/// An HTTP client for the registry that trusts every certificate of
/// `ca_pem` (a bundle may hold several) besides the system's CAs.
pub fn registry_http(ca_pem: Option<&[u8]>) -> Result<reqwest::ClientBuilder, ConfigError> {
    let builder = reqwest::Client::builder();
    let Some(pem) = ca_pem else {
        return Ok(builder);
    };
    let invalid = |reason: String| ConfigError::Invalid {
        setting: "schema-registry-ca-file",
        reason,
    };
    let certificates = reqwest::Certificate::from_pem_bundle(pem)
        .map_err(|err| invalid(format!("not a PEM certificate: {err}")))?;
    if certificates.is_empty() {
        return Err(invalid("not a PEM certificate: it holds none".into()));
    }
    Ok(certificates
        .into_iter()
        .fold(builder, reqwest::ClientBuilder::add_root_certificate))
}

/// The registry is asked about an id only when the frame is plausible.
fn check_wire_format(bytes: &[u8]) -> Result<(), CodecError> {
    match bytes {
        [0, _, _, _, _, ..] => Ok(()),
        [] => Err(CodecError::NotWireFormat("empty value".into())),
        [first, ..] if *first != 0 => Err(CodecError::NotWireFormat(format!(
            "first byte is 0x{first:02x}, expected the magic byte 0x00"
        ))),
        short => Err(CodecError::NotWireFormat(format!(
            "{} bytes, shorter than the 5-byte header",
            short.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_that_cannot_be_wire_format_are_refused_with_the_reason() {
        let reason = |bytes: &[u8]| check_wire_format(bytes).unwrap_err().to_string();
        assert_eq!(reason(b""), "not in the Confluent wire format: empty value");
        assert_eq!(
            reason(b"{\"json\": true}"),
            "not in the Confluent wire format: first byte is 0x7b, expected the magic byte 0x00"
        );
        assert_eq!(
            reason(&[0, 0, 1]),
            "not in the Confluent wire format: 3 bytes, shorter than the 5-byte header"
        );
        assert!(check_wire_format(&[0, 0, 0, 0, 1]).is_ok());
    }

    /// As schema_registry_converter builds a failed call's error.
    fn answered(status: &str, retriable: bool) -> SRCError {
        SRCError::new(
            &format!("HTTP request to schema registry failed with status {status}"),
            Some("error_code: 0, message: org.postgresql.util.PSQLException".into()),
            retriable,
        )
    }

    #[test]
    fn a_failing_registry_is_retryable_and_a_refusal_is_not() {
        for status in [
            "500 Internal Server Error",
            "504 Gateway Timeout",
            "429 Too Many Requests",
        ] {
            let error = CodecError::from(answered(status, false));
            assert_eq!(error.class(), ErrorClass::Retryable, "{status}: {error}");
        }
        let refused = CodecError::from(answered("404 Not Found", false));
        assert_eq!(refused.class(), ErrorClass::Permanent);
        let unreachable = CodecError::from(SRCError::new("error sending request", None, true));
        assert_eq!(unreachable.class(), ErrorClass::Retryable);
    }
}
