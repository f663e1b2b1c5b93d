//! The optional config file: its values become the defaults of the flags.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, Command, Parser};

use crate::ConfigError;

const CONFIG_FLAG: &str = "config";
const CONFIG_ENV: &str = "SLUICE_CONFIG";

/// Parses `T` from the process's arguments, environment and config file.
/// As clap's own `parse`, it prints help, the version or a usage error and
/// exits (0 or 2) itself; the errors it returns are the config file's.
pub fn parse<T: Parser>() -> Result<T, ConfigError> {
    parse_from(std::env::args_os()).map_err(|err| match err {
        ConfigError::Cli(err) => err.exit(),
        other => other,
    })
}

/// Parses `T` from `args` (the first is the program name), the environment
/// and the config file named by `--config` or `SLUICE_CONFIG`.
pub fn parse_from<T, I, A>(args: I) -> Result<T, ConfigError>
where
    T: Parser,
    I: IntoIterator<Item = A>,
    A: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut command = T::command().arg(
        Arg::new(CONFIG_FLAG)
            .long(CONFIG_FLAG)
            .env(CONFIG_ENV)
            .value_name("FILE")
            .action(ArgAction::Set)
            .global(true)
            .help("TOML file setting any flag by its long name; flags and environment variables win over it"),
    );
    if let Some(path) = config_path(&args) {
        command = apply_file(command, &path)?;
    }
    let matches = command.try_get_matches_from(args)?;
    Ok(T::from_arg_matches(&matches)?)
}

/// The config file named on the command line or in the environment.
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let flag = format!("--{CONFIG_FLAG}");
    let prefix = format!("--{CONFIG_FLAG}=");
    let mut args = args.iter().skip(1).filter_map(|arg| arg.to_str());
    while let Some(arg) = args.next() {
        if arg == flag {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix(&prefix) {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os(CONFIG_ENV).map(PathBuf::from)
}

/// Makes each value of the file the default of the flag of the same name.
fn apply_file(mut command: Command, path: &Path) -> Result<Command, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::FileRead {
        path: path.to_owned(),
        source,
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|err| ConfigError::FileSyntax {
        path: path.to_owned(),
        reason: err.to_string(),
    })?;
    for (key, value) in table {
        let id = command
            .get_arguments()
            .find(|arg| arg.get_long() == Some(key.as_str()))
            .map(|arg| arg.get_id().clone())
            .ok_or_else(|| ConfigError::UnknownSetting {
                path: path.to_owned(),
                key: key.clone(),
            })?;
        let values = match value {
            toml::Value::Array(items) => items
                .iter()
                .map(|item| scalar(path, &key, item))
                .collect::<Result<Vec<_>, _>>()?,
            scalar_value => vec![scalar(path, &key, &scalar_value)?],
        };
        // A value from the file satisfies a flag that is otherwise required.
        command = command.mut_arg(id, |arg| arg.default_values(values).required(false));
    }
    Ok(command)
}

fn scalar(path: &Path, key: &str, value: &toml::Value) -> Result<String, ConfigError> {
    match value {
        toml::Value::String(text) => Ok(text.clone()),
        toml::Value::Integer(n) => Ok(n.to_string()),
        toml::Value::Float(x) => Ok(x.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => Err(ConfigError::FileSyntax {
            path: path.to_owned(),
            reason: format!(
                "{key}: expected a string, number, boolean or a list of them, got {}",
                other.type_str()
            ),
        }),
    }
}
