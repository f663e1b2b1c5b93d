use std::path::PathBuf;

/// Configuration that cannot be used, naming the setting and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The command line or environment did not parse (or asked for
    /// `--help`); `clap::Error::exit` prints it as clap does.
    #[error(transparent)]
    Cli(#[from] clap::Error),
    /// The config file could not be read.
    #[error("config file {path}: {source}")]
    FileRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML, or a value has the wrong shape.
    #[error("config file {path}: {reason}")]
    FileSyntax {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The config file sets something no flag is called.
    #[error(
        "config file {path}: unknown setting {key:?} (settings are named like the flags, e.g. kafka-bootstrap)"
    )]
    UnknownSetting {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A setting has a value that cannot work.
    #[error("setting {setting}: {reason}")]
    Invalid {
        /// The flag name of the setting.
        setting: &'static str,
        /// Why its value cannot work.
        reason: String,
    },
}
