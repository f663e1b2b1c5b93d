//! The replication connection a `postgres://` URL names, TLS included, read
//! the way libpq reads it: `sslmode` (disable, prefer — the default —,
//! require, verify-ca, verify-full), `sslrootcert`, and `sslcert` with
//! `sslkey` for a client certificate. The sqlx pool takes the same URL, so
//! both connections of the relay are secured alike.

use std::path::PathBuf;

use pgwire_replication::TlsConfig;

/// How the replication connection reaches Postgres.
#[derive(Debug, Clone)]
pub struct ReplicationConnection {
    /// Host or Unix socket directory.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Role with the REPLICATION attribute.
    pub user: String,
    /// Its password.
    pub password: String,
    /// Database holding the outbox.
    pub database: String,
    /// TLS, from the URL's `ssl*` parameters.
    pub tls: TlsConfig,
}

impl ReplicationConnection {
    /// The connection a `postgres://user:password@host:port/database` URL
    /// names. The URL keeps user, password and database percent-encoded (a
    /// password with `@`, `/` or `%` must be); they are decoded here.
    pub fn from_url(url: &str) -> Result<Self, String> {
        let url = url::Url::parse(url).map_err(|err| format!("not a URL: {err}"))?;
        let decoded = |part: &str, what: &str| {
            percent_encoding::percent_decode_str(part)
                .decode_utf8()
                .map(|text| text.into_owned())
                .map_err(|_| format!("its {what} is not UTF-8 once percent-decoded"))
        };
        let host = url.host_str().unwrap_or("127.0.0.1").to_owned();
        let tls = tls(&url, &host)?;
        Ok(Self {
            port: url.port().unwrap_or(5432),
            user: decoded(url.username(), "user")?,
            password: decoded(url.password().unwrap_or_default(), "password")?,
            database: decoded(url.path().trim_start_matches('/'), "database")?,
            host,
            tls,
        })
    }
}

/// Names the crypto provider rustls runs the replication TLS on, once per
/// process: rustls comes with two (ring, which pgwire-replication asks for,
/// and aws-lc-rs, a default feature) and refuses to choose between them.
pub(crate) fn install_crypto_provider() {
    // Err means a provider is installed already, which is all that matters.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The TLS the URL asks for.
fn tls(url: &url::Url, host: &str) -> Result<TlsConfig, String> {
    let parameter = |name: &str| {
        url.query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    };
    let root = parameter("sslrootcert").map(PathBuf::from);
    let mode = parameter("sslmode").unwrap_or_else(|| "prefer".into());
    let tls = match mode.as_str() {
        "disable" => return Ok(TlsConfig::disabled()),
        "prefer" => TlsConfig {
            mode: pgwire_replication::SslMode::Prefer,
            ..TlsConfig::disabled()
        },
        "require" => TlsConfig::require(),
        "verify-ca" => TlsConfig::verify_ca(root),
        // libpq matches an IP address against the certificate's IP names;
        // so does rustls when the server name is that address.
        "verify-full" if host.parse::<std::net::IpAddr>().is_ok() => {
            TlsConfig::verify_full(root).with_sni_hostname(host)
        }
        "verify-full" => TlsConfig::verify_full(root),
        other => {
            return Err(format!(
                "sslmode={other} is not one the relay speaks: disable, prefer, require, verify-ca or verify-full"
            ));
        }
    };
    match (parameter("sslcert"), parameter("sslkey")) {
        (Some(cert), Some(key)) => Ok(tls.with_client_cert(cert, key)),
        (None, None) => Ok(tls),
        _ => Err("sslcert and sslkey go together".into()),
    }
}

#[cfg(test)]
mod tests {
    use pgwire_replication::SslMode;

    use super::*;

    #[test]
    fn a_database_url_is_percent_decoded() {
        let url = "postgres://us%40er:p%40ss%2Fw%3Ard%25@db.example:6543/my%20db";
        // What the relay sent Postgres as the password before.
        let raw = url::Url::parse(url).unwrap();
        assert_eq!(raw.password(), Some("p%40ss%2Fw%3Ard%25"));
        let connection = ReplicationConnection::from_url(url).unwrap();
        assert_eq!(
            (
                connection.user.as_str(),
                connection.password.as_str(),
                connection.host.as_str(),
                connection.port,
                connection.database.as_str()
            ),
            ("us@er", "p@ss/w:rd%", "db.example", 6543, "my db")
        );
        assert!(ReplicationConnection::from_url("not a url").is_err());
    }

    #[test]
    fn tls_is_read_as_libpq_reads_it() {
        let tls = |query: &str| {
            ReplicationConnection::from_url(&format!("postgres://u:p@db.example/d{query}"))
                .map(|connection| connection.tls)
        };
        assert_eq!(tls("").unwrap().mode, SslMode::Prefer, "libpq's default");
        assert_eq!(tls("?sslmode=disable").unwrap().mode, SslMode::Disable);
        assert_eq!(tls("?sslmode=require").unwrap().mode, SslMode::Require);
        let full = tls("?sslmode=verify-full&sslrootcert=/etc/ca.pem").unwrap();
        assert_eq!(full.mode, SslMode::VerifyFull);
        assert_eq!(full.ca_pem_path, Some(PathBuf::from("/etc/ca.pem")));
        let ip = ReplicationConnection::from_url("postgres://u:p@127.0.0.1/d?sslmode=verify-full")
            .unwrap()
            .tls;
        assert_eq!(ip.sni_hostname.as_deref(), Some("127.0.0.1"));
        let mtls = tls("?sslmode=verify-ca&sslcert=/c.pem&sslkey=/k.pem").unwrap();
        assert!(mtls.is_mtls());
        assert_eq!(
            tls("?sslmode=allow").unwrap_err(),
            "sslmode=allow is not one the relay speaks: disable, prefer, require, verify-ca or verify-full"
        );
        assert!(tls("?sslcert=/c.pem").is_err());
    }
}
