//! Schema registration through the Confluent-compatible registry API.

use std::time::Duration;

use apache_avro::Schema;
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use schema_registry_converter::async_impl::schema_registry::{SrSettings, post_schema};
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use sluice_contracts::Topic;

use crate::{Compatibility, ProvisionError};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
/// Confluent's error code for "subject not found".
const SUBJECT_NOT_FOUND: u32 = 40401;

/// Where the registry is and how to authenticate.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Base URL of the Confluent-compatible API, e.g. `http://host:8080/apis/ccompat/v7`.
    pub url: String,
    /// Basic-auth user and password, when the registry needs them.
    pub basic_auth: Option<(String, SecretString)>,
    /// Timeout of each request.
    pub timeout: Duration,
    /// PEM of a CA to trust besides the system's.
    pub ca_pem: Option<Vec<u8>>,
}

/// What registering a schema did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaOutcome {
    /// The schema was already the registered one; nothing was written.
    Unchanged {
        /// Its schema id.
        id: u32,
    },
    /// The schema was registered as a new version.
    Registered {
        /// Its schema id.
        id: u32,
    },
}

/// A registry client for provisioning: lookups, compatibility and registration.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    config: RegistryConfig,
    http: Client,
    settings: SrSettings,
}

#[derive(Deserialize)]
struct RegistryErrorBody {
    error_code: u32,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct LookupBody {
    id: u32,
}

#[derive(Deserialize)]
struct VersionBody {
    version: u32,
    schema: String,
}

impl RegistryClient {
    /// A client for the registry at `config.url`.
    pub fn new(config: RegistryConfig) -> Result<Self, ProvisionError> {
        let building = Call {
            subject: "",
            action: "building the client",
        };
        let registry_error = |message: String| building.error(message);
        let builder = || {
            sluice_avro::registry_http(config.ca_pem.as_deref())
                .map_err(|e| registry_error(e.to_string()))
        };
        let http = builder()?
            .timeout(config.timeout)
            .build()
            .map_err(|e| registry_error(e.to_string()))?;
        let mut settings = SrSettings::new_builder(config.url.clone());
        settings.set_timeout(config.timeout);
        if let Some((user, password)) = &config.basic_auth {
            settings.set_basic_authorization(user, Some(password.expose_secret()));
        }
        let settings = settings
            .build_with(builder()?)
            .map_err(|e| registry_error(e.to_string()))?;
        Ok(Self {
            config,
            http,
            settings,
        })
    }

    /// Makes `topic`'s value schema the latest of its subject under the
    /// compatibility `mode`, which it sets on the subject. A schema the mode
    /// forbids is refused before anything is written.
    pub async fn ensure_schema(
        &self,
        topic: &Topic,
        mode: Compatibility,
    ) -> Result<SchemaOutcome, ProvisionError> {
        let subject = &topic.value_subject();
        match self.lookup(subject, topic.value_schema_json()).await? {
            Lookup::Registered(id) => {
                self.set_mode(subject, mode).await?;
                return Ok(SchemaOutcome::Unchanged { id });
            }
            Lookup::NewSchema => self.check(topic, mode).await?,
            Lookup::NewSubject => {}
        }
        self.set_mode(subject, mode).await?;
        let supplied =
            SuppliedSchema::new(None, SchemaType::Avro, topic.value_schema_json().to_owned());
        match post_schema(&self.settings, subject.clone(), supplied).await {
            Ok(registered) => Ok(SchemaOutcome::Registered { id: registered.id }),
            // The registry's own rule may still refuse what the check passed;
            // its cause says so.
            Err(err) => Err(Call {
                subject,
                action: "registering the schema",
            }
            .error(match err.cause {
                Some(cause) => format!("{}: {cause}", err.error),
                None => err.error,
            })),
        }
    }

    /// Refuses `topic`'s value schema if `mode` forbids it over what its
    /// subject holds; writes nothing. A new subject, or a schema it already
    /// holds, passes.
    pub async fn check_schema(
        &self,
        topic: &Topic,
        mode: Compatibility,
    ) -> Result<(), ProvisionError> {
        match self
            .lookup(&topic.value_subject(), topic.value_schema_json())
            .await?
        {
            Lookup::NewSchema => self.check(topic, mode).await,
            Lookup::Registered(_) | Lookup::NewSubject => Ok(()),
        }
    }

    /// The compatibility mode set on `subject`, if one is (else the
    /// registry's global one applies).
    pub async fn mode(&self, subject: &str) -> Result<Option<String>, ProvisionError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct ConfigBody {
            compatibility_level: String,
        }
        let call = Call {
            subject,
            action: "reading the compatibility mode",
        };
        let url = format!("{}/config/{subject}", self.config.url);
        let response = self.send(&call, self.http.get(url)).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body: ConfigBody = call.parse(call.success(response).await?).await?;
        Ok(Some(body.compatibility_level))
    }

    /// Checks `topic`'s value schema against the latest registered
    /// version of its subject, or every one for a transitive mode.
    async fn check(&self, topic: &Topic, mode: Compatibility) -> Result<(), ProvisionError> {
        let subject = &topic.value_subject();
        let call = Call {
            subject,
            action: "checking compatibility",
        };
        let new = Schema::parse_str(topic.value_schema_json())
            .map_err(|err| call.error(err.to_string()))?;
        let wanted: Vec<String> = if mode.transitive() {
            let versions: Vec<u32> = self.get(&call, "versions").await?;
            versions.iter().map(u32::to_string).collect()
        } else {
            vec!["latest".to_owned()]
        };
        for version in wanted {
            let registered: VersionBody = self.get(&call, &format!("versions/{version}")).await?;
            let old = Schema::parse_str(&registered.schema)
                .map_err(|err| call.error(format!("version {}: {err}", registered.version)))?;
            if let Some(details) = mode.violation(&old, &new) {
                return Err(ProvisionError::IncompatibleSchema {
                    subject: subject.clone(),
                    schema_file: topic.spec().value_schema.clone(),
                    mode,
                    version: registered.version,
                    details,
                });
            }
        }
        Ok(())
    }

    async fn lookup(&self, subject: &str, schema_json: &str) -> Result<Lookup, ProvisionError> {
        let call = Call {
            subject,
            action: "looking the schema up",
        };
        let url = format!("{}/subjects/{subject}", self.config.url);
        let response = self
            .send(
                &call,
                self.http.post(url).json(&json!({ "schema": schema_json })),
            )
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            let body: RegistryErrorBody = call.parse(response).await?;
            return Ok(if body.error_code == SUBJECT_NOT_FOUND {
                Lookup::NewSubject
            } else {
                Lookup::NewSchema
            });
        }
        let body: LookupBody = call.parse(call.success(response).await?).await?;
        Ok(Lookup::Registered(body.id))
    }

    async fn set_mode(&self, subject: &str, mode: Compatibility) -> Result<(), ProvisionError> {
        let call = Call {
            subject,
            action: "setting the compatibility mode",
        };
        let url = format!("{}/config/{subject}", self.config.url);
        let request = self
            .http
            .put(url)
            .json(&json!({ "compatibility": mode.as_registry() }));
        call.success(self.send(&call, request).await?).await?;
        Ok(())
    }

    /// GET `subjects/<subject>/<path>`, read as JSON.
    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        call: &Call<'_>,
        path: &str,
    ) -> Result<T, ProvisionError> {
        let url = format!("{}/subjects/{}/{path}", self.config.url, call.subject);
        let response = self.send(call, self.http.get(url)).await?;
        call.parse(call.success(response).await?).await
    }

    async fn send(
        &self,
        call: &Call<'_>,
        request: RequestBuilder,
    ) -> Result<Response, ProvisionError> {
        let request = match &self.config.basic_auth {
            Some((user, password)) => request.basic_auth(user, Some(password.expose_secret())),
            None => request,
        };
        request
            .header(reqwest::header::ACCEPT, CONTENT_TYPE)
            .send()
            .await
            .map_err(|e| call.error(format!("{} unreachable: {e}", self.config.url)))
    }
}

/// One registry request about a subject, named in its errors.
struct Call<'a> {
    subject: &'a str,
    action: &'static str,
}

impl Call<'_> {
    fn error(&self, message: String) -> ProvisionError {
        ProvisionError::Registry {
            subject: self.subject.to_owned(),
            action: self.action,
            message,
        }
    }

    /// The response if it is a success; otherwise an error quoting the
    /// registry's own error code and message.
    async fn success(&self, response: Response) -> Result<Response, ProvisionError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        Err(self.error(
            serde_json::from_str::<RegistryErrorBody>(&text)
                .map(|body| format!("HTTP {status}, error {}: {}", body.error_code, body.message))
                .unwrap_or_else(|_| format!("HTTP {status}: {text}")),
        ))
    }

    async fn parse<T: serde::de::DeserializeOwned>(
        &self,
        response: Response,
    ) -> Result<T, ProvisionError> {
        response
            .json()
            .await
            .map_err(|e| self.error(format!("unreadable answer: {e}")))
    }
}

/// Whether a schema is already registered under a subject.
enum Lookup {
    Registered(u32),
    NewSubject,
    NewSchema,
}
