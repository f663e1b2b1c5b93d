//! The image the chart's pods run, read from the Dockerfile's last stage:
//! its `ENV` (what every container starts with) and the files its `COPY`
//! lines take from the repository. Binaries copied from the build stage
//! are the workspace's built binaries here.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The runtime stage of the Dockerfile.
#[derive(Debug, Clone, Default)]
pub struct Image {
    /// Its `ENV`, in order.
    pub env: Vec<(String, String)>,
    /// Files copied from the repository: (path in the image, path here).
    pub files: Vec<(String, PathBuf)>,
    /// Where `COPY --from=…` puts the built binaries.
    pub bin_dir: String,
}

impl Image {
    /// Reads the last stage of `dockerfile`; repository paths are taken
    /// from `root`.
    pub fn read(dockerfile: &Path, root: &Path) -> Result<Image> {
        let text = std::fs::read_to_string(dockerfile)
            .with_context(|| format!("reading {}", dockerfile.display()))?;
        let mut image = Image::default();
        for line in instructions(&text) {
            let (word, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
            match word.to_ascii_uppercase().as_str() {
                "FROM" => image = Image::default(),
                "ENV" => image.env.extend(env_pairs(rest)?),
                "COPY" => {
                    let parts: Vec<&str> = rest.split_whitespace().collect();
                    let Some((&destination, sources)) = parts.split_last() else {
                        bail!("COPY without a destination: {line}");
                    };
                    if sources.first().is_some_and(|s| s.starts_with("--from")) {
                        image.bin_dir = destination.trim_end_matches('/').to_owned();
                    } else if let [source] = sources {
                        image
                            .files
                            .push((destination.to_owned(), root.join(source)));
                    }
                }
                _ => {}
            }
        }
        if image.bin_dir.is_empty() {
            bail!(
                "{}: the last stage copies no binaries",
                dockerfile.display()
            );
        }
        Ok(image)
    }

    /// The binary a container's command names, if it is one of the image's.
    pub fn binary<'a>(&self, command: &'a str) -> Option<&'a str> {
        command
            .strip_prefix(&self.bin_dir)?
            .strip_prefix('/')
            .filter(|name| !name.contains('/'))
    }
}

/// The Dockerfile's instructions, continuation lines joined, comments out.
fn instructions(text: &str) -> Vec<String> {
    let mut all = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head.trim_end());
                current.push(' ');
            }
            None => {
                current.push_str(line);
                all.push(std::mem::take(&mut current));
            }
        }
    }
    all
}

/// `K=V K2=V2` (values without spaces or quotes, as this Dockerfile has).
fn env_pairs(rest: &str) -> Result<Vec<(String, String)>> {
    rest.split_whitespace()
        .map(|pair| {
            let (key, value) = pair
                .split_once('=')
                .with_context(|| format!("ENV {pair}: only the K=V form is read"))?;
            Ok((key.to_owned(), value.trim_matches('"').to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_stage_is_read_with_its_env_and_copies() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("sluice-image-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let dockerfile = dir.join("Dockerfile");
        std::fs::write(
            &dockerfile,
            "FROM rust AS builder\nENV BUILD=1\nCOPY . .\n\
             FROM debian AS runtime\n# a comment\nCOPY --from=builder /out/ /usr/local/bin/\n\
             COPY rules.toml /usr/share/sluice/rules.toml\n\
             ENV A=/usr/share/sluice/rules.toml \\\n    B=json\nUSER 10001\n",
        )?;
        let image = Image::read(&dockerfile, Path::new("/repo"))?;
        assert_eq!(
            image.env,
            [
                ("A".to_owned(), "/usr/share/sluice/rules.toml".to_owned()),
                ("B".to_owned(), "json".to_owned())
            ]
        );
        assert_eq!(
            image.files,
            [(
                "/usr/share/sluice/rules.toml".to_owned(),
                PathBuf::from("/repo/rules.toml")
            )]
        );
        assert_eq!(image.binary("/usr/local/bin/ingest"), Some("ingest"));
        assert_eq!(image.binary("/bin/sh"), None);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
