//! Benchmark sizes: full by default, shrunk by `SLUICE_BENCH_SCALE`
//! (0 < scale ≤ 1) for the smoke run `make test` makes of `make bench`, so
//! every benchmark's code runs on every change without taking its minutes.

use std::sync::OnceLock;
use std::time::Duration;

/// The scale `SLUICE_BENCH_SCALE` asks for (1 when unset).
pub fn bench_scale() -> f64 {
    static SCALE: OnceLock<f64> = OnceLock::new();
    *SCALE.get_or_init(|| match std::env::var("SLUICE_BENCH_SCALE") {
        Err(_) => 1.0,
        Ok(text) => match text.parse::<f64>() {
            Ok(scale) if scale > 0.0 && scale <= 1.0 => scale,
            _ => panic!("SLUICE_BENCH_SCALE={text}: expected a number above 0, at most 1"),
        },
    })
}

/// `full` at the bench scale, never below `floor`.
pub fn scaled(full: usize, floor: usize) -> usize {
    ((full as f64 * bench_scale()).round() as usize).max(floor)
}

/// `full` at the bench scale, never below `floor`.
pub fn scaled_duration(full: Duration, floor: Duration) -> Duration {
    full.mul_f64(bench_scale()).max(floor)
}

/// Where benchmarks write their results: `SLUICE_BENCH_RESULTS` (relative
/// to the repository's root, as cargo runs each bench in its package), else
/// `bench-results/` there. A smoke run writes elsewhere, so a full run's
/// figures stay.
pub fn bench_results_dir() -> std::path::PathBuf {
    let root = crate::Stack::get();
    std::env::var_os("SLUICE_BENCH_RESULTS")
        .map_or_else(|| root.path("bench-results"), |dir| root.path(dir))
}
