//! `sandbox`: the stand-in for Google Sheets (and its token endpoint) and
//! Odoo's JSON-RPC API, for tests and the demo.
//!
//!   sandbox keygen --out key.json --token-uri http://127.0.0.1:PORT/token
//!   sandbox serve --listen 127.0.0.1:PORT --service-account key.json …

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
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
        /// Spreadsheets to create, as `ID=Sheet1,Sheet2` (repeatable).
        #[arg(long = "spreadsheet", value_name = "ID=SHEETS")]
        spreadsheets: Vec<String>,
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
            odoo_database,
            odoo_login,
            odoo_password,
        } => {
            let key = ServiceAccountKey::read(&service_account)?;
            let issuer =
                TokenIssuer::new(&key.public_key_pem()?, &key.client_email, &key.token_uri)
                    .map_err(anyhow::Error::msg)
                    .context("the service account's public key")?;
            let app = Sandbox::new(
                issuer,
                OdooAccount {
                    database: odoo_database,
                    login: odoo_login,
                    password: odoo_password,
                },
            );
            for spec in &spreadsheets {
                let (id, sheets) = spec.split_once('=').with_context(|| {
                    format!("--spreadsheet {spec:?}: expected ID=Sheet1,Sheet2")
                })?;
                let sheets: Vec<String> = sheets.split(',').map(str::to_owned).collect();
                app.create_spreadsheet(id, &sheets);
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
