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

/// Rounds of a figure that is a ratio of two runs: three in a full run,
/// its median reported (one round's sink-to-reference ratio ranged 0.60 to
/// 1.02 over thirteen runs of erp-sink's benchmark, 2026-12-07); one in the
/// smoke run.
pub fn rounds() -> usize {
    if bench_scale() < 1.0 { 1 } else { 3 }
}

/// The median of `values` (not empty; of an even count, the lower middle).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[(sorted.len() - 1) / 2]
}

/// A sink's rates as one replica and as two, round by round.
pub struct Scaling(Vec<(f64, f64)>);

impl Scaling {
    /// `run(replicas)` (its commands/s) for one replica, then two, in each
    /// of [`rounds`].
    pub async fn measure<F: std::future::Future<Output = f64>>(run: impl Fn(usize) -> F) -> Self {
        let mut rounds_run = Vec::new();
        for _ in 0..rounds() {
            let one = run(1).await;
            let two = run(2).await;
            eprintln!("scaling out: one replica {one:.0}, two {two:.0} commands/s");
            rounds_run.push((one, two));
        }
        Self(rounds_run)
    }

    /// Each round's rates: "92 and 178; 92 and 179".
    pub fn rates(&self) -> String {
        self.0
            .iter()
            .map(|(one, two)| format!("{one:.0} and {two:.0}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The median over the rounds of two replicas ÷ one.
    pub fn median(&self) -> f64 {
        median(
            &self
                .0
                .iter()
                .map(|(one, two)| two / one)
                .collect::<Vec<_>>(),
        )
    }
}

/// The `p`-th percentile (0–100) of `sorted` (ascending, not empty), by
/// the nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `count` items over requests that arrived at `times_ms` (ms, ascending):
/// items per second from the first request to the last, as a sink's pace
/// is read from the sandbox's log (joining a group and committing offsets
/// are not its pace).
pub fn per_second_over(count: u32, times_ms: &[i64]) -> f64 {
    let (Some(first), Some(last)) = (times_ms.first(), times_ms.last()) else {
        return 0.0;
    };
    f64::from(count) * 1000.0 / (last - first).max(1) as f64
}

/// How long sink replicas get to join their group before a benchmark's
/// commands come: a join takes a rebalance of a few seconds, and a group
/// has no event a benchmark can wait on without an admin client of its
/// own.
const SETTLE: Duration = Duration::from_secs(10);

/// Runs `count` commands through `replicas` sinks of `group` on `topic`
/// (`partitions` partitions), each started by `start`, which returns the
/// sender that stops it. One replica finds them preloaded by `produce`;
/// several get them once all have joined and the group settled, so that no
/// rebalance falls in the run. Returns once the group has committed them
/// all, the sinks stopped.
pub async fn through_replicas<P: std::future::Future<Output = ()>>(
    replicas: usize,
    mut start: impl FnMut() -> tokio::sync::oneshot::Sender<()>,
    produce: impl Fn() -> P,
    (group, topic, partitions): (&str, &str, i32),
    count: u32,
) {
    if replicas == 1 {
        produce().await;
    }
    let stops: Vec<_> = (0..replicas).map(|_| start()).collect();
    if replicas > 1 {
        tokio::time::sleep(SETTLE).await;
        produce().await;
    }
    let wait = Duration::from_secs(600);
    crate::until_committed(group, topic, partitions, i64::from(count), wait).await;
    for stop in stops {
        let _ = stop.send(());
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn the_median_is_the_middle_value_or_the_lower_of_two() {
        assert_eq!(median(&[0.9, 0.6, 1.02]), 0.9);
        assert_eq!(median(&[0.85]), 0.85);
        assert_eq!(median(&[0.8, 0.7, 0.9, 0.6]), 0.7);
    }
}
