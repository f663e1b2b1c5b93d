//! What each service of a fleet of local processes costs: resident memory
//! (now, and the peak the kernel kept) and CPU time, read from /proc. A
//! service in a container is podman's process here, so a chart or compose
//! run reports none.

use std::collections::BTreeMap;

use crate::Fleet;
use crate::fleet::label;

/// /proc counts CPU time in USER_HZ ticks, 100 a second on every Linux ABI
/// this runs on (x86-64 and arm64: the kernel scales its own HZ to it).
const TICKS_PER_SECOND: f64 = 100.0;

/// One process's use, read at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// Resident set (VmRSS), KiB.
    pub rss_kib: u64,
    /// The highest resident set so far (VmHWM), KiB.
    pub peak_kib: u64,
    /// User and system CPU time so far, seconds.
    pub cpu_secs: f64,
}

impl Usage {
    /// The process `pid`'s use; None once it is gone.
    pub fn of(pid: u32) -> Option<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces and parentheses: fields count
        // from after its closing one (state is field 3; utime 14, stime 15).
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks = |field: usize| fields.get(field - 3)?.parse::<u64>().ok();
        Some(Self {
            rss_kib: kib("VmRSS:")?,
            peak_kib: kib("VmHWM:")?,
            cpu_secs: (ticks(14)? + ticks(15)?) as f64 / TICKS_PER_SECOND,
        })
    }
}

/// The fields of `/proc/{pid}/stat` after the command name, which may hold
/// spaces and parentheses: `fields[0]` is field 3 (state).
fn stat_fields(pid: &str) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = stat.rsplit_once(')')?.1;
    // The state is a letter; the numbers from field 4 on.
    Some(
        after_name
            .split_whitespace()
            .skip(1)
            .map(|field| field.parse().unwrap_or(0))
            .collect(),
    )
}

/// CPU seconds of the process `pid` and its children so far: its own, the
/// children it has reaped, and those still running (a server that forks a
/// process per connection, Postgres say, counted whole). None once it is
/// gone.
pub fn tree_cpu_secs(pid: u32) -> Option<f64> {
    // Field n sits at index n - 4: ppid 4, utime 14, stime 15, cutime 16,
    // cstime 17.
    let own = stat_fields(&pid.to_string())?;
    let ticks = |fields: &[u64], from: usize, to: usize| -> u64 {
        (from..=to).filter_map(|n| fields.get(n - 4)).sum()
    };
    let mut total = ticks(&own, 14, 17);
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(name) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if let Some(fields) = stat_fields(name).filter(|f| f.first() == Some(&u64::from(pid))) {
            total += ticks(&fields, 14, 17);
        }
    }
    Some(total as f64 / TICKS_PER_SECOND)
}

/// Each running replica's process and use, by its label (`erp-sink`,
/// `erp-sink-2`).
pub type Sampled = BTreeMap<String, (u32, Usage)>;

/// Each running replica's use now.
pub async fn sample(fleet: &Fleet) -> Sampled {
    let mut all = BTreeMap::new();
    for service in &fleet.services {
        if service.spec.in_image.is_some() {
            continue;
        }
        let Some(pid) = service.pid().await else {
            continue;
        };
        if let Some(usage) = Usage::of(pid) {
            all.insert(label(&service.spec), (pid, usage));
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_resident_set_and_some_cpu_time() {
        let busy: u64 = (0..2_000_000u64).map(|i| i % 7).sum();
        let usage = Usage::of(std::process::id()).unwrap_or_else(|| panic!("no /proc ({busy})"));
        assert!(
            usage.rss_kib > 0 && usage.peak_kib >= usage.rss_kib,
            "{usage:?}"
        );
        assert!(usage.cpu_secs >= 0.0, "{usage:?}");
        assert_eq!(Usage::of(u32::MAX), None);
    }

    /// A child spinning until it has used at least 0.05 s of CPU; its use.
    fn spinner() -> (std::process::Child, f64) {
        let child = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        let used = loop {
            let used = Usage::of(child.id()).unwrap().cpu_secs;
            if used >= 0.05 {
                break used;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        (child, used)
    }

    #[test]
    fn a_tree_counts_its_children_running_and_reaped() {
        let me = std::process::id();
        let before = tree_cpu_secs(me).unwrap();
        let (mut reaped, reaped_secs) = spinner();
        reaped.kill().unwrap();
        reaped.wait().unwrap();
        let (mut running, running_secs) = spinner();
        let after = tree_cpu_secs(me).unwrap();
        running.kill().unwrap();
        running.wait().unwrap();
        // Both children's time at least (each was read a little before).
        assert!(
            after - before >= reaped_secs + running_secs,
            "{before} → {after}, children {reaped_secs} + {running_secs}"
        );
        assert_eq!(tree_cpu_secs(u32::MAX), None);
    }
}
