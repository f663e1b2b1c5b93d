//! `sandbox`: the stand-in for Google Sheets (and its token endpoint) and
//! Odoo's JSON-RPC API, for tests and the demo.
//!
//!   sandbox keygen --out key.json --token-uri http://127.0.0.1:PORT/token
//!   sandbox serve --listen 127.0.0.1:PORT --service-account key.json …

use std::net::SocketAddr;
use std::path::PathBuf;

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use sluice_sandbox::{OdooAccount, Sandbox, ServiceAccountKey, TokenIssuer, router};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Stand-in for the Google Sheets and Odoo APIs, with fault injection"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a fresh service-account key file for a client to use.
    Keygen {
        /// Where to write it (mode 600).
        #[arg(long)]
        out: PathBuf,
        /// The sandbox's token endpoint, written into the key as token_uri.
        #[arg(long)]
        token_uri: String,
        /// The account's e-mail.
        #[arg(
            long,
            default_value = "sheets-sink@sluice-sandbox.iam.gserviceaccount.com"
        )]
        client_email: String,
    },
    /// Serve the APIs.
    Serve {
        /// Address to listen on (loopback).
        #[arg(long, env = "SANDBOX_LISTEN", default_value = "127.0.0.1:8089")]
        listen: SocketAddr,
        /// The service-account key whose JWTs the token endpoint accepts.
        #[arg(long, env = "SANDBOX_SERVICE_ACCOUNT")]
        service_account: PathBuf,
        /// Spreadsheets to create, as `ID=Sheet1,Sheet2` (repeatable); each
        /// is shared with the service account unless `--share` says whom.
        #[arg(long = "spreadsheet", value_name = "ID=SHEETS")]
        spreadsheets: Vec<String>,
        /// Share spreadsheet ID (one --spreadsheet makes) with exactly these
        /// accounts and users, as `ID=a@example.com,b@example.com`
        /// (repeatable, adding up); anyone else is answered 403
        /// PERMISSION_DENIED.
        #[arg(long = "share", value_name = "ID=PRINCIPALS")]
        shares: Vec<String>,
        /// Let the service account act for the users of this Workspace
        /// domain (domain-wide delegation: a JWT's `sub`); without it, a
        /// `sub` is refused as Google refuses an account not allowed to.
        #[arg(long, env = "SANDBOX_DELEGATION_DOMAIN", value_name = "DOMAIN")]
        delegation_domain: Option<String>,
        /// Odoo database name.
        #[arg(long, default_value = "sluice")]
        odoo_database: String,
        /// Odoo login.
        #[arg(long, default_value = "sluice")]
        odoo_login: String,
        /// Odoo password (API key).
        #[arg(long, env = "SANDBOX_ODOO_PASSWORD", default_value = "sandbox")]
        odoo_password: String,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Keygen {
            out,
            token_uri,
            client_email,
        } => {
            ServiceAccountKey::generate(&client_email, &token_uri)?.write(&out)?;
            println!("wrote {}", out.display());
            Ok(())
        }
        Command::Serve {
            listen,
            service_account,
            spreadsheets,
            shares,
            delegation_domain,
            odoo_database,
            odoo_login,
            odoo_password,
        } => {
            let key = ServiceAccountKey::read(&service_account)?;
            let mut issuer =
                TokenIssuer::new(&key.public_key_pem()?, &key.client_email, &key.token_uri)
                    .map_err(anyhow::Error::msg)
                    .context("the service account's public key")?;
            if let Some(domain) = &delegation_domain {
                issuer = issuer.with_delegation(domain);
            }
            let app = Sandbox::new(
                issuer,
                OdooAccount {
                    database: odoo_database,
                    login: odoo_login,
                    password: odoo_password,
                },
            );
            let mut made = Vec::new();
            for spec in &spreadsheets {
                let (id, sheets) = listed(spec, "--spreadsheet", "ID=Sheet1,Sheet2")?;
                app.create_spreadsheet(id, &sheets);
                made.push(id);
            }
            // Each spreadsheet's principals, from every --share naming it.
            let mut sharing: BTreeMap<&str, Vec<String>> = BTreeMap::new();
            for spec in &shares {
                let (id, principals) = listed(spec, "--share", "ID=a@example.com,b@example.com")?;
                if !made.contains(&id) {
                    bail!("--share {spec:?}: no --spreadsheet {id}=… to share");
                }
                sharing.entry(id).or_default().extend(principals);
            }
            for (id, principals) in &sharing {
                let principals: Vec<&str> = principals.iter().map(String::as_str).collect();
                app.share_only(id, &principals);
            }
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("listening on {listen}"))?;
            eprintln!("sandbox listening on http://{listen}");
            axum::serve(listener, router(app))
                .with_graceful_shutdown(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await
                .context("serving")
        }
    }
}

/// `ID=a,b` as the id and its list, none of them empty.
fn listed<'a>(spec: &'a str, flag: &str, form: &str) -> Result<(&'a str, Vec<String>)> {
    let (id, list) = spec
        .split_once('=')
        .filter(|(id, list)| !id.is_empty() && !list.is_empty())
        .with_context(|| format!("{flag} {spec:?}: expected {form}"))?;
    let items: Vec<String> = list.split(',').map(|item| item.trim().to_owned()).collect();
    if items.iter().any(String::is_empty) {
        bail!("{flag} {spec:?}: an empty name in the list (expected {form})");
    }
    Ok((id, items))
}
