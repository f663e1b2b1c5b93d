//! What an operator would look at after the stream, each checked: a field
//! that does not fit is refused by name, the partition the ERP outage
//! stalled is named in erp-sink's log, the Orders sheet shows every order in
//! a browser, and every metric the dashboards and alert rules use is
//! exported, with no partition still stalled.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use serde_json::json;
use sluice_fleet::Finished;
use sluice_fleet::load::Plan;

/// Runs every check, printing what it saw.
pub async fn all(finished: &Finished, plan: &Plan, work: &Path) -> Result<()> {
    faults_met(finished).await?;
    refused_by_name(finished, &plan.run).await?;
    stall_logged(finished)?;
    in_a_browser(finished, plan, work)?;
    metrics_exported(finished).await
}

/// The sandbox's request log shows the faults the scenario set: Odoo's
/// outage answered 503, Sheets' burst 429.
async fn faults_met(finished: &Finished) -> Result<()> {
    let log: Vec<serde_json::Value> =
        reqwest::get(format!("{}/admin/requests", finished.sandbox.url))
            .await
            .context("reading the sandbox's request log")?
            .json()
            .await
            .context("the sandbox's request log")?;
    let count = |api: &str, status: u16| {
        log.iter()
            .filter(|r| r["api"] == api && r["status"] == status)
            .count()
    };
    let (odoo_503, sheets_429) = (count("odoo", 503), count("sheets", 429));
    println!(
        "\nfaults met: Odoo answered 503 to {odoo_503} calls (its outage), Sheets 429 to {sheets_429}"
    );
    ensure!(
        odoo_503 > 0 && sheets_429 > 0,
        "a fault the demo sets was not met"
    );
    Ok(())
}

async fn refused_by_name(finished: &Finished, run: &str) -> Result<()> {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/events", finished.ingest))
        .bearer_auth(&finished.token)
        .json(
            &json!({"aggregate_type": "requests", "aggregate_id": format!("req-{run}-x"),
            "event_type": "RequestCreated", "payload": {"requester_email": "a@example.org",
            "subject": "x", "description": "x", "priority": "SOON"}}),
        )
        .send()
        .await
        .context("posting an unfit event")?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    println!("\na field that does not fit is refused, naming it:\n  {body}  (HTTP {status})");
    ensure!(
        status.as_u16() == 400 && body.contains("priority"),
        "an unfit priority got {status} {body}"
    );
    Ok(())
}

fn stall_logged(finished: &Finished) -> Result<()> {
    let log = finished.fleet.logs().join("erp-sink.log");
    let text =
        std::fs::read_to_string(&log).with_context(|| format!("reading {}", log.display()))?;
    let Some(line) = text.lines().find(|line| line.contains("partition stalled")) else {
        bail!(
            "the ERP outage stalled no partition of erp-sink for 3 s (its log: {})",
            log.display()
        );
    };
    println!("a partition stalled by the outage, as erp-sink logs it:\n  {line}");
    Ok(())
}

fn in_a_browser(finished: &Finished, plan: &Plan, work: &Path) -> Result<()> {
    let page = format!("{}/sheets/sluice-demo/Orders", finished.sandbox.url);
    let screenshot = work.join("orders-sheet.png");
    let browse = |extra: &[String]| -> Result<String> {
        let output = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
            ])
            .args(extra)
            .arg(&page)
            .output()
            .context("running headless Chromium")?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    browse(&[
        "--window-size=1280,2200".into(),
        format!("--screenshot={}", screenshot.display()),
    ])?;
    let dom = browse(&["--dump-dom".into()])?;
    let prefix = format!("<td>order-{}-", plan.run);
    let shown: BTreeSet<&str> = dom
        .match_indices(&prefix)
        .filter_map(|(at, _)| dom[at..].split_once("</td>").map(|(cell, _)| cell))
        .collect();
    ensure!(
        shown.len() == plan.orders,
        "the browser shows {} of {} orders on {page}",
        shown.len(),
        plan.orders
    );
    ensure!(
        std::fs::metadata(&screenshot).is_ok_and(|m| m.len() > 0),
        "no screenshot of {page}"
    );
    println!(
        "{} orders of this run on {page}; screenshot: {}",
        shown.len(),
        screenshot.display()
    );
    Ok(())
}

async fn metrics_exported(finished: &Finished) -> Result<()> {
    let mut scrape = String::new();
    for service in &finished.fleet.services {
        scrape += &sluice_fleet::scrape(&service.http)
            .await
            .with_context(|| format!("scraping {}", service.spec.name))?;
    }
    let mut used = BTreeSet::new();
    let mut sources = vec![Path::new("deploy/prometheus/alerts.yml").to_path_buf()];
    for entry in std::fs::read_dir("deploy/grafana/dashboards").context("the dashboards")? {
        sources.push(entry?.path());
    }
    for source in sources {
        let text = std::fs::read_to_string(&source)
            .with_context(|| format!("reading {}", source.display()))?;
        used.extend(metric_names(&text));
    }
    let exported = |name: &str| {
        scrape.lines().any(|line| {
            ["", "_count", "_sum"].iter().any(|suffix| {
                line.strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix(suffix))
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))
            })
        })
    };
    let missing: Vec<_> = used.iter().filter(|name| !exported(name)).collect();
    ensure!(
        missing.is_empty(),
        "not exported by any service: {missing:?}"
    );
    println!(
        "{} metric names the dashboards and alerts use, each exported",
        used.len()
    );
    let still_stalled = scrape
        .lines()
        .filter(|line| line.starts_with("sluice_partition_stalled{"))
        .filter(|line| {
            line.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v >= 0.0)
        })
        .count();
    ensure!(
        still_stalled == 0,
        "{still_stalled} partitions still stalled once the ERP is back"
    );
    Ok(())
}

/// Every `sluice_…` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let is_name = |c: char| c.is_ascii_lowercase() || c == '_';
    text.match_indices("sluice_")
        .filter(|(at, _)| !text[..*at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_'))
        .map(|(at, _)| {
            text[at..]
                .chars()
                .take_while(|c| is_name(*c))
                .collect::<String>()
        })
        // `sluice_.*` in a matcher is a prefix of slot names, not a metric.
        .filter(|name| !name.ends_with('_'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::metric_names;

    #[test]
    fn metric_names_are_whole_words() {
        let names = metric_names(
            "rate(sluice_consumed_total[5m]) / x_sluice_no + sluice_lag{a=\"b\"} {s=~\"sluice_.*\"}",
        );
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["sluice_consumed_total", "sluice_lag"]
        );
    }
}
