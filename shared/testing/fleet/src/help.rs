//! What each binary of the fleet reads, from its `--help`: a deployment
//! (a chart, a compose file) that sets a variable no binary reads has a
//! typo or a stale name, which would otherwise be ignored in silence.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::container::{InImage, Security};

/// What each binary (and subcommand) reads, from its `--help` (the
/// image's binary's, when the pods run in the image).
pub(crate) struct Help<'a> {
    bin_dir: &'a Path,
    image: Option<&'a str>,
    read: HashMap<Vec<String>, String>,
}

impl<'a> Help<'a> {
    pub(crate) fn new(bin_dir: &'a Path, image: Option<&'a str>) -> Self {
        Self {
            bin_dir,
            image,
            read: HashMap::new(),
        }
    }

    /// Fails when `who` (a pod, a compose service) is given a Sluice or
    /// OpenTelemetry variable (`set`) its binary does not read: a typo, or
    /// a setting renamed in the binary and not in the chart, would
    /// otherwise be ignored in silence.
    pub(crate) fn check(
        &mut self,
        who: &str,
        binary: &str,
        args: &[String],
        set: &[String],
    ) -> Result<()> {
        // The subcommand, if the first argument names one (saga-orchestrator run).
        let mut command = vec![binary.to_owned()];
        command.extend(args.first().filter(|a| !a.starts_with('-')).cloned());
        let help = match self.read.entry(command.clone()) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(new) => {
                // The binary's own flags, and its subcommand's (which do
                // not repeat the binary's unless they are global).
                let mut invocations = vec![&command[..1]];
                if command.len() > 1 {
                    invocations.push(&command[..]);
                }
                let mut text = String::new();
                for words in invocations {
                    let mut help = match self.image {
                        Some(image) => InImage {
                            image: image.to_owned(),
                            mounts: Vec::new(),
                            security: Security::default(),
                        }
                        .command("help", &words[0], &words[1..], &[]),
                        None => {
                            let mut local =
                                std::process::Command::new(self.bin_dir.join(&words[0]));
                            local.args(&words[1..]);
                            local
                        }
                    };
                    let output = help
                        .arg("--help")
                        .output()
                        .with_context(|| format!("{} --help", words.join(" ")))?;
                    text.push_str(&String::from_utf8_lossy(&output.stdout));
                }
                new.insert(text)
            }
        };
        let unread: Vec<&String> = set
            .iter()
            .filter(|name| name.starts_with("SLUICE_") || name.starts_with("OTEL_"))
            .filter(|name| !help.contains(&format!("[env: {name}")))
            .collect();
        if !unread.is_empty() {
            bail!(
                "{who}: {unread:?} set, which `{} --help` does not list: nothing reads them",
                command.join(" ")
            );
        }
        Ok(())
    }
}
