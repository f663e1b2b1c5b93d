//! The replication connection a `postgres://` URL names, read as the sqlx
//! pool reads the same URL, so both connections of the relay go to the same
//! server secured alike: the query's `sslmode` (disable, prefer — the
//! default —, require, verify-ca, verify-full), `sslrootcert`, `sslcert` and
//! `sslkey` (or sqlx's `ssl-mode`, `ssl-root-cert`/`ssl-ca`, `ssl-cert`,
//! `ssl-key`), `host`/`hostaddr`, `port`, `dbname`, `user`, `password`, the
//! last of a repeated key winning; PGSSLMODE, PGSSLROOTCERT, PGSSLCERT,
//! PGSSLKEY and PGPASSWORD when the URL leaves them out. As with sqlx,
//! `require` encrypts without checking the certificate.
//!
//! Read here rather than taken from sqlx's `PgConnectOptions`, which parses
//! the same URL but keeps the password and the certificate paths private.

use std::fmt;
use std::path::PathBuf;

use pgwire_replication::{SslMode, TlsConfig};

/// How the replication connection reaches Postgres.
#[derive(Clone)]
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

impl fmt::Debug for ReplicationConnection {
    /// Everything but the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicationConnection")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("database", &self.database)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// The `ssl*` settings as given, before they are checked.
#[derive(Default)]
struct SslSettings {
    mode: Option<String>,
    root: Option<String>,
    cert: Option<String>,
    key: Option<String>,
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
        let env = |name: &str| std::env::var(name).ok();
        let mut connection = Self {
            host: url.host_str().unwrap_or("127.0.0.1").to_owned(),
            port: url.port().unwrap_or(5432),
            user: decoded(url.username(), "user")?,
            password: decoded(url.password().unwrap_or_default(), "password")?,
            database: decoded(url.path().trim_start_matches('/'), "database")?,
            tls: TlsConfig::disabled(),
        };
        if connection.password.is_empty() {
            connection.password = env("PGPASSWORD").unwrap_or_default();
        }
        let mut ssl = SslSettings {
            mode: env("PGSSLMODE"),
            root: env("PGSSLROOTCERT"),
            cert: env("PGSSLCERT"),
            key: env("PGSSLKEY"),
        };
        for (key, value) in url.query_pairs() {
            let value = value.into_owned();
            match &*key {
                "sslmode" | "ssl-mode" => ssl.mode = Some(value),
                "sslrootcert" | "ssl-root-cert" | "ssl-ca" => ssl.root = Some(value),
                "sslcert" | "ssl-cert" => ssl.cert = Some(value),
                "sslkey" | "ssl-key" => ssl.key = Some(value),
                "host" | "hostaddr" => connection.host = value,
                "port" => {
                    connection.port = value
                        .parse()
                        .map_err(|_| format!("port={value} is not a port number"))?;
                }
                "dbname" => connection.database = value,
                "user" => connection.user = value,
                "password" => connection.password = value,
                // The pool's own settings (application_name, options, ...).
                _ => {}
            }
        }
        connection.tls = ssl.config(&connection.host)?;
        Ok(connection)
    }
}

impl SslSettings {
    /// The TLS these settings ask for, connecting to `host`.
    fn config(self, host: &str) -> Result<TlsConfig, String> {
        let root = self.root.map(PathBuf::from);
        let mode = self.mode.unwrap_or_else(|| "prefer".into());
        let tls = match mode.as_str() {
            "disable" => return Ok(TlsConfig::disabled()),
            "prefer" => TlsConfig {
                mode: SslMode::Prefer,
                ..TlsConfig::disabled()
            },
            "require" => TlsConfig::require(),
            "verify-ca" => TlsConfig::verify_ca(root),
            // libpq and sqlx match an IP address against the certificate's
            // IP names; so does rustls when the server name is that address.
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
        match (self.cert, self.key) {
            (Some(cert), Some(key)) => Ok(tls.with_client_cert(cert, key)),
            (None, None) => Ok(tls),
            _ => Err("sslcert and sslkey go together".into()),
        }
    }
}

#[cfg(test)]
mod tests {
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
        // sqlx's spellings, and the last of a repeated key, as the pool.
        let aliased = tls("?ssl-mode=require&ssl-mode=verify-full&ssl-ca=/ca.pem").unwrap();
        assert_eq!(aliased.mode, SslMode::VerifyFull);
        assert_eq!(aliased.ca_pem_path, Some(PathBuf::from("/ca.pem")));
    }

    #[test]
    fn the_query_moves_the_connection_as_it_moves_the_pool() {
        let connection = ReplicationConnection::from_url(
            "postgres://u:p@db.example/d?host=replica.example&port=6432&dbname=outbox&user=relay&password=s3cret",
        )
        .unwrap();
        assert_eq!(
            (
                connection.host.as_str(),
                connection.port,
                connection.database.as_str(),
                connection.user.as_str(),
                connection.password.as_str()
            ),
            ("replica.example", 6432, "outbox", "relay", "s3cret")
        );
        assert!(
            !format!("{connection:?}").contains("s3cret"),
            "Debug leaves the password out"
        );
        assert!(ReplicationConnection::from_url("postgres://u@h/d?port=x").is_err());
    }
}
