//! The process's Prometheus recorder asked for by many threads at once, as
//! tests running in parallel in one process do: every one gets the same
//! handle, none an "already installed" error. A binary of its own: the
//! recorder is process-wide.
// A test fails by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Barrier};

#[test]
fn threads_asking_at_once_share_one_recorder() {
    const THREADS: usize = 16;
    let start = Arc::new(Barrier::new(THREADS));
    let askers: Vec<_> = (0..THREADS)
        .map(|n| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                let handle = sluice_telemetry::prometheus_handle();
                metrics::counter!("sluice_test_asked_total", "thread" => n.to_string())
                    .increment(1);
                handle
            })
        })
        .collect();
    let handles: Vec<_> = askers
        .into_iter()
        .map(|asker| asker.join().unwrap())
        .collect::<Result<_, _>>()
        .expect("every thread gets the recorder");
    // One recorder: what any thread recorded, every handle renders.
    for handle in &handles {
        let rendered = handle.render();
        for n in 0..THREADS {
            assert!(
                rendered.contains(&format!("sluice_test_asked_total{{thread=\"{n}\"}} 1")),
                "{rendered}"
            );
        }
    }
}
