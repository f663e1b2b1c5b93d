//! The chart's NOTES, run: every `kubectl exec deploy/<name> -- <command>`
//! they tell an operator to type is run as the kubelet would run it in that
//! Deployment's first pod (its environment and mounted files; in a
//! container of the image when the pods run in one), once the fleet is up,
//! and must exit 0. A command the pod's binary cannot run there (a flag it
//! does not know, a setting the pod does not give it) fails the chart-run.
//!
//! `helm template` does not render NOTES.txt, so a copy of the chart gets
//! one more template, a ConfigMap holding NOTES.txt rendered with the same
//! values.

use std::path::Path;

use anyhow::{Context, Result, bail};

use super::objects::Object;

/// The NOTES.txt of `chart_dir` rendered by `template` (helm with the
/// release's values, given the chart folder and further arguments).
pub(super) fn render(
    chart_dir: &Path,
    work_dir: &Path,
    template: impl Fn(&Path, &[&str]) -> Result<String>,
) -> Result<String> {
    let copy = work_dir.join("notes-chart");
    std::fs::remove_dir_all(&copy).ok();
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(chart_dir)
        .arg(&copy)
        .status()
        .context("copying the chart")?;
    if !status.success() {
        bail!("copying {} failed", chart_dir.display());
    }
    std::fs::write(
        copy.join("templates/zz-notes.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: |\n\
         {{- include (print $.Template.BasePath \"/NOTES.txt\") . | nindent 4 }}\n",
    )?;
    let rendered = template(&copy, &["--show-only", "templates/zz-notes.yaml"])?;
    let objects = super::objects::parse(&rendered)?;
    let notes: Option<&Object> = objects.iter().find(|o| o.metadata.name == "notes");
    notes
        .and_then(|o| o.data.get("notes"))
        .cloned()
        .context("the rendered NOTES")
}

/// A command the NOTES run in a Deployment's pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Exec {
    /// The Deployment (`deploy/<name>`).
    pub deployment: String,
    /// The command and its arguments.
    pub command: Vec<String>,
}

/// Every `kubectl … exec deploy/<name> -- …` of `notes`, continuation
/// lines joined.
pub(super) fn execs(notes: &str) -> Result<Vec<Exec>> {
    let joined = notes.replace("\\\n", " ");
    let mut execs = Vec::new();
    for line in joined.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() != Some(&"kubectl") || !words.contains(&"exec") {
            continue;
        }
        let target = words
            .iter()
            .find_map(|w| w.strip_prefix("deploy/"))
            .with_context(|| format!("NOTES: `{line}` names no deploy/<name>"))?;
        let at = words
            .iter()
            .position(|w| *w == "--")
            .with_context(|| format!("NOTES: `{line}` has no `--` before its command"))?;
        execs.push(Exec {
            deployment: target.to_owned(),
            command: words[at + 1..].iter().map(|w| (*w).to_owned()).collect(),
        });
    }
    Ok(execs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_lines_are_read_across_continuations() -> Result<()> {
        let notes = "See:\n  kubectl -n s exec deploy/s-saga -- \\\n    /usr/local/bin/saga list --state failed\n\
                     Then:\n  kubectl -n s port-forward svc/s-ingest 8080\n";
        assert_eq!(
            execs(notes)?,
            [Exec {
                deployment: "s-saga".into(),
                command: vec![
                    "/usr/local/bin/saga".into(),
                    "list".into(),
                    "--state".into(),
                    "failed".into()
                ],
            }]
        );
        Ok(())
    }
}
