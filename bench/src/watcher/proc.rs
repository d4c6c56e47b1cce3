//! The watcher process as the kernel and its own record describe it, read here and not
//! through the harness: the bench is a witness of what the harness does, so it does not
//! ask the harness.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

pub(super) fn read_record(sess_dir: &Path) -> Option<(u32, u64)> {
    let v: Value = serde_json::from_slice(&std::fs::read(sess_dir.join("watcher.json")).ok()?).ok()?;
    Some((v["pid"].as_u64()? as u32, v["start"].as_u64()?))
}

/// `/proc/PID/stat` fields from the state on (the command name may hold spaces).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// The process with this PID is the one that started at `start` and is not a zombie.
pub(super) fn same_process(pid: u32, start: u64) -> bool {
    // After ')': field 3 (state) is index 0, field 22 (starttime) is index 19.
    stat_fields(pid).is_some_and(|f| f[0] != "Z" && f.get(19).and_then(|s| s.parse().ok()) == Some(start))
}

/// Field 22 of `/proc/PID/stat`, the start time in clock ticks since boot: what the
/// harness names an owner by.
pub(super) fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

pub(super) fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime (fields 14 and 15) of a process, in clock ticks.
pub(super) fn cpu_ticks(pid: u32) -> Option<u64> {
    let f = stat_fields(pid)?;
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Time on a CPU of all the process's threads, in ns, from `/proc/PID/task/*/schedstat`:
/// finer than the 10 ms ticks of `stat`, which an idle watcher barely moves.
pub(super) fn cpu_ns(pid: u32) -> Option<u64> {
    let mut sum = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let s = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        sum += s.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(sum)
}

/// A `kB` (or plain number) field of `/proc/PID/status`.
pub(super) fn status_kb(pid: u32, key: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
