//! The metrics a test process records, and reading a Prometheus text
//! exposition.

use std::sync::OnceLock;

/// Sets up logs, trace context and the metrics recorder of this test
/// process once, as a service's runtime does (loops and handlers run
/// in-process record into it); returns what was recorded so far, rendered.
pub fn process_metrics() -> String {
    static TELEMETRY: OnceLock<sluice_telemetry::Telemetry> = OnceLock::new();
    TELEMETRY.get_or_init(|| {
        sluice_telemetry::init(&sluice_telemetry::TelemetryConfig {
            service_name: "sluice-test".into(),
            log_format: sluice_telemetry::LogFormat::Json,
            log_filter: "warn".into(),
            otlp_endpoint: None,
        })
        .expect("telemetry of the test process")
    });
    sluice_telemetry::prometheus_handle()
        .expect("the recorder just installed")
        .render()
}

/// The sum of the samples of `name` whose labels include every one of
/// `labels`; 0 when there is none.
pub fn metric(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            let matches = metric == name
                && labels
                    .iter()
                    .all(|(label, wanted)| rest.contains(&format!("{label}=\"{wanted}\"")));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// How often breaker `breaker` went to open, half-open and closed, from
/// `sluice_breaker_transitions_total`.
pub fn breaker_transitions(exposition: &str, breaker: &str) -> (f64, f64, f64) {
    let to = |state: &str| {
        metric(
            exposition,
            "sluice_breaker_transitions_total",
            &[("breaker", breaker), ("to", state)],
        )
    };
    (to("open"), to("half_open"), to("closed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_matched_by_name_and_labels() {
        let text = "# TYPE t counter\nt{breaker=\"erp\",to=\"open\"} 3\nt{breaker=\"erp\",to=\"closed\"} 2\nt_other{breaker=\"erp\"} 9\nu 4\n";
        assert_eq!(
            metric(text, "t", &[("breaker", "erp"), ("to", "open")]),
            3.0
        );
        assert_eq!(metric(text, "t", &[("breaker", "erp")]), 5.0);
        assert_eq!(metric(text, "u", &[]), 4.0);
        assert_eq!(metric(text, "t", &[("to", "half_open")]), 0.0);
    }
}
