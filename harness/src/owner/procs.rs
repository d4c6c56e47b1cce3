//! The host processes a test's program left behind: found by the marker in their
//! environment (inherited through `setsid` and double forks), with every descendant, and
//! ended tree by tree: SIGTERM, a short grace, SIGKILL, each signal sent only to the
//! process found (a pidfd opened, then its start time checked), confirmed gone (a zombie
//! counts as gone). Linux only: elsewhere nothing is found, and the README says so.

pub(crate) use super::sys::Found;

/// The variable that marks a process as one a test's program started, set to the test's
/// task ID; every process it starts inherits it.
pub(crate) const MARKER: &str = "DOCKER_HARNESS_TASK";

/// The marker of one task, as it reads in a process's environment.
pub(crate) fn needle(task: &str) -> String {
    format!("{MARKER}={task}")
}

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
    use std::time::{Duration, Instant};

    use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal};

    use super::super::sys::{linux as table, Found, Seen};

    /// How long a process may take to go after SIGTERM before it gets SIGKILL.
    const GRACE: Duration = Duration::from_secs(2);
    /// How long a SIGKILLed process may take to be gone.
    const KILL_WAIT: Duration = Duration::from_secs(2);

    /// Every process whose environment holds `needle` (`KEY=VALUE`), with its descendants,
    /// never this process or one of its ancestors. A process is known by its PID and the
    /// start time read before its environment, and a PID whose start time changed during
    /// the scan is left out: a reused PID is never taken for the process that had it.
    pub(crate) fn marked(needle: &str) -> Vec<Found> {
        let needle = needle.as_bytes();
        // pid -> (parent, start)
        let mut procs: HashMap<u32, (u32, u64)> = HashMap::new();
        let mut hit: HashSet<u32> = HashSet::new();
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let Some((ppid, start, exited)) = table::stat(pid) else { continue };
            if exited {
                continue;
            }
            let environ = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let same = table::stat(pid).is_some_and(|(_, again, _)| again == start);
            if same && environ.split(|b| *b == 0).any(|kv| kv == needle) {
                hit.insert(pid);
            }
            procs.insert(pid, (ppid, start));
        }
        let mut mine = HashSet::from([std::process::id()]);
        let mut p = std::process::id();
        while let Some(&(up, _)) = procs.get(&p) {
            mine.insert(up);
            p = up;
        }
        // A descendant of a marked process is part of its tree, marker or not; a child
        // that started before its "parent" belongs to an earlier holder of that PID.
        let in_tree = |mut pid: u32| {
            for _ in 0..64 {
                if hit.contains(&pid) {
                    return true;
                }
                let (up, start) = procs[&pid];
                match procs.get(&up) {
                    Some(&(_, up_start)) if up > 1 && up_start <= start => pid = up,
                    _ => return false,
                }
            }
            false
        };
        let mut found: Vec<Found> = procs
            .iter()
            .filter(|(pid, _)| !mine.contains(pid) && in_tree(**pid))
            .map(|(&pid, &(_, start))| Found { pid, start, command: command_line(pid) })
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

    fn running(f: &Found) -> bool {
        table::seen(f.pid) == Seen::Running(f.start)
    }

    /// A handle on exactly the process found: a pidfd opened first, then its start time
    /// checked, so that a PID reused meanwhile is never signalled.
    fn handle(f: &Found) -> Option<OwnedFd> {
        let fd = pidfd_open(Pid::from_raw(i32::try_from(f.pid).ok()?)?, PidfdFlags::empty()).ok()?;
        running(f).then_some(fd)
    }

    /// Ends every process found; returns those still running afterwards, including any it
    /// could not get a handle on (a kernel without pidfds, a seccomp profile refusing them):
    /// those are never signalled, so never reported as ended.
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
        found.iter().filter(|f| running(f)).cloned().collect()
    }

    fn wait_gone(handles: &[(&Found, OwnedFd)], limit: Duration) {
        let started = Instant::now();
        while handles.iter().any(|(f, _)| running(f)) && started.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
