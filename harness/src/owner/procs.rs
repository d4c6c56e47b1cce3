//! The host processes a test's program left behind: found by the marker in their
//! environment (inherited through `setsid` and double forks), with every descendant, and
//! ended tree by tree: SIGTERM, a short grace, SIGKILL, each signal sent only to the
//! process found (a pidfd opened, then its start time checked), confirmed gone (a zombie
//! counts as gone). Linux only: elsewhere nothing is found, and the README says so.

use std::time::{Duration, Instant};

/// A host process found by its marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) pid: u32,
    pub(crate) start: u64,
    pub(crate) command: String,
}

/// The variable that marks a process as one a test's program started, set to the test's
/// task ID; every process it starts inherits it.
pub(crate) const MARKER: &str = "DOCKER_HARNESS_TASK";

/// The marker of one task, as it reads in a process's environment.
pub(crate) fn needle(task: &str) -> String {
    format!("{MARKER}={task}")
}

/// How long a process may take to go after SIGTERM before it gets SIGKILL.
const GRACE: Duration = Duration::from_secs(2);
/// How long a SIGKILLed process may take to be gone.
const KILL_WAIT: Duration = Duration::from_secs(2);

#[cfg(target_os = "linux")]
pub(crate) use linux::{end, marked};

#[cfg(not(target_os = "linux"))]
pub(crate) fn marked(_needle: &str) -> Vec<Found> {
    Vec::new()
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn end(_found: &[Found]) -> Vec<Found> {
    Vec::new()
}

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::{HashMap, HashSet};
    use std::fs;
    use std::os::fd::OwnedFd;

    use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal};

    use super::super::sys::{linux as table, Seen};
    use super::{Found, GRACE, KILL_WAIT};

    /// Every process whose environment holds `needle` (`KEY=VALUE`), with its descendants,
    /// never this process or one of its ancestors.
    pub(crate) fn marked(needle: &str) -> Vec<Found> {
        let needle = needle.as_bytes();
        let mut parent: HashMap<u32, u32> = HashMap::new();
        let mut hit: HashSet<u32> = HashSet::new();
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            if let Some(ppid) = table::parent_of(pid) {
                parent.insert(pid, ppid);
            }
            let environ = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            if environ.split(|b| *b == 0).any(|kv| kv == needle) {
                hit.insert(pid);
            }
        }
        let mut mine = HashSet::from([std::process::id()]);
        let mut p = std::process::id();
        while let Some(&up) = parent.get(&p) {
            mine.insert(up);
            p = up;
        }
        // A descendant of a marked process is part of its tree, marker or not.
        let in_tree = |mut pid: u32| {
            for _ in 0..64 {
                if hit.contains(&pid) {
                    return true;
                }
                match parent.get(&pid) {
                    Some(&up) if up > 1 => pid = up,
                    _ => return false,
                }
            }
            false
        };
        let mut found: Vec<Found> = parent
            .keys()
            .copied()
            .filter(|pid| !mine.contains(pid) && in_tree(*pid))
            .filter_map(|pid| match table::seen(pid) {
                Seen::Running(start) => Some(Found { pid, start, command: command_line(pid) }),
                _ => None,
            })
            .collect();
        found.sort_by_key(|f| f.pid);
        found
    }

    fn command_line(pid: u32) -> String {
        let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let words: Vec<String> =
            raw.split(|b| *b == 0).filter(|w| !w.is_empty()).map(|w| String::from_utf8_lossy(w).into_owned()).collect();
        words.join(" ")
    }

    /// A handle on exactly the process found: a pidfd opened first, then its start time
    /// checked, so that a PID reused meanwhile is never signalled.
    fn handle(f: &Found) -> Option<OwnedFd> {
        let fd = pidfd_open(Pid::from_raw(i32::try_from(f.pid).ok()?)?, PidfdFlags::empty()).ok()?;
        (table::seen(f.pid) == Seen::Running(f.start)).then_some(fd)
    }

    fn running(f: &Found) -> bool {
        table::seen(f.pid) == Seen::Running(f.start)
    }

    /// Ends every process found; returns those still running afterwards.
    pub(crate) fn end(found: &[Found]) -> Vec<Found> {
        let handles: Vec<(&Found, OwnedFd)> = found.iter().filter_map(|f| Some((f, handle(f)?))).collect();
        for (_, fd) in &handles {
            let _ = pidfd_send_signal(fd, Signal::TERM);
        }
        wait_gone(&handles, GRACE);
        for (f, fd) in &handles {
            if running(f) {
                let _ = pidfd_send_signal(fd, Signal::KILL);
            }
        }
        wait_gone(&handles, KILL_WAIT);
        handles.iter().filter(|(f, _)| running(f)).map(|(f, _)| (*f).clone()).collect()
    }

    fn wait_gone(handles: &[(&Found, OwnedFd)], limit: std::time::Duration) {
        let started = super::Instant::now();
        while handles.iter().any(|(f, _)| running(f)) && started.elapsed() < limit {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
