//! The host processes of a trial, read from `/proc`: every process the driver started for
//! it carries the trial's marker (`DH_CHAOS_TRIAL=<token>`) in its environment, inherited
//! by everything below nextest, so the driver never looks at (or signals) anyone else's.

use std::fs;
use std::os::fd::OwnedFd;

use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal};

/// The variable that marks a trial's processes.
pub(crate) const TRIAL_ENV: &str = "DH_CHAOS_TRIAL";
/// The harness's marker on the processes a test's program started.
pub(crate) const TASK_ENV: &str = "DOCKER_HARNESS_TASK";
/// Set in the environment of a session's watcher.
pub(crate) const WATCHER_ENV: &str = "DOCKER_HARNESS_WATCHER";
/// Set by nextest on the process of a test (not on its `--list` runs).
const TEST_ENV: &str = "NEXTEST_TEST_NAME";

#[derive(Debug, Clone)]
pub(crate) struct Proc {
    pub(crate) pid: u32,
    pub(crate) ppid: u32,
    pub(crate) start: u64,
    pub(crate) env: Vec<String>,
    pub(crate) cmd: String,
}

impl Proc {
    pub(crate) fn var(&self, key: &str) -> Option<&str> {
        self.env.iter().find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
    }

    pub(crate) fn is_test(&self, nextest: u32) -> bool {
        self.ppid == nextest && self.var(TEST_ENV).is_some()
    }

    pub(crate) fn is_watcher(&self) -> bool {
        self.var(WATCHER_ENV).is_some_and(|v| !v.is_empty() && v != "off")
    }

    pub(crate) fn describe(&self) -> String {
        let what = self.var(TEST_ENV).map_or_else(|| self.cmd.clone(), str::to_string);
        format!("PID {} ({what})", self.pid)
    }
}

/// `(parent, start time)` from `/proc/<pid>/stat`; `None` for a zombie or a gone process.
pub(crate) fn stat(pid: u32) -> Option<(u32, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command may hold spaces and parentheses: the fields start after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    if f.first() == Some(&"Z") || f.first() == Some(&"X") {
        return None;
    }
    Some((f.get(1)?.parse().ok()?, f.get(19)?.parse().ok()?))
}

/// Whether the process `pid` started at `start` still runs.
pub(crate) fn alive(pid: u32, start: u64) -> bool {
    stat(pid).is_some_and(|(_, s)| s == start)
}

/// Every live process carrying the trial's `token`.
pub(crate) fn of_trial(token: &str) -> Vec<Proc> {
    let needle = format!("{TRIAL_ENV}={token}");
    scan(|kv| kv == needle)
}

/// Every live process of any trial of the run `run` (tokens `<run>-<trial>`).
pub(crate) fn of_run(run: &str) -> Vec<Proc> {
    let prefix = format!("{TRIAL_ENV}={run}-");
    scan(|kv| kv.starts_with(&prefix))
}

fn scan(marked: impl Fn(&str) -> bool) -> Vec<Proc> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Some((ppid, start)) = stat(pid) else { continue };
        let Ok(raw) = fs::read(format!("/proc/{pid}/environ")) else { continue };
        let env: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|kv| !kv.is_empty())
            .map(|kv| String::from_utf8_lossy(kv).into_owned())
            .collect();
        // Read before and after the environment: a PID reused in between is left out.
        if !env.iter().any(|kv| marked(kv)) || !alive(pid, start) {
            continue;
        }
        let cmd = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string();
        out.push(Proc { pid, ppid, start, env, cmd });
    }
    out
}

/// Sends SIGTERM (`kill == false`) or SIGKILL to `p` through a pidfd opened first and
/// checked against its start time, so a PID reused since the scan is never signalled.
pub(crate) fn signal(p: &Proc, kill: bool) -> bool {
    let Some(pid) = i32::try_from(p.pid).ok().and_then(Pid::from_raw) else { return false };
    let Ok(fd): Result<OwnedFd, _> = pidfd_open(pid, PidfdFlags::empty()) else { return false };
    if !alive(p.pid, p.start) {
        return false;
    }
    pidfd_send_signal(&fd, if kill { Signal::KILL } else { Signal::TERM }).is_ok()
}
