//! Who owns a resource: the owner identity (host, PID, the PID's start time), whether that
//! process still lives, and which process a session's life is bound to. Everything that
//! reads `/proc` is here.

use std::fmt;

use once_cell::sync::Lazy;

/// The process that created a resource: host name, PID and the PID's start time (in clock
/// ticks since boot, from `/proc`), so that a reused PID is not mistaken for the owner.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    /// The host name.
    pub host: String,
    /// The process ID.
    pub pid: u32,
    /// The process's start time in clock ticks since boot.
    pub start: u64,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.host, self.pid, self.start)
    }
}

impl Owner {
    /// Parses `host/pid/start`. The host may not contain `/`.
    pub fn parse(s: &str) -> Option<Owner> {
        let mut it = s.rsplitn(3, '/');
        let start = it.next()?.parse().ok()?;
        let pid = it.next()?.parse().ok()?;
        let host = it.next()?;
        (!host.is_empty() && !host.contains('/')).then(|| Owner { host: host.to_string(), pid, start })
    }

    /// This process.
    pub fn current() -> &'static Owner {
        static ME: Lazy<Owner> = Lazy::new(|| {
            let pid = std::process::id();
            Owner { host: hostname(), pid, start: process_start(pid).unwrap_or(0) }
        });
        &ME
    }

    /// Whether this process still runs on this host: its PID exists with the same start time.
    pub(crate) fn alive(&self) -> bool {
        process_start(self.pid) == Some(self.start)
    }
}

/// This host's name, as used in owner labels.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().replace('/', "_"))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_string())
}

/// A process's start time in clock ticks since boot, or `None` if there is no such process
/// (a zombie counts as none: it has exited, only its parent has not reaped it yet).
pub(crate) fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    if is_zombie(&stat) {
        return None;
    }
    parse_start_time(&stat)
}

/// Field 3 of `/proc/PID/stat`, the state, is `Z` for a zombie.
fn is_zombie(stat: &str) -> bool {
    stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next()) == Some("Z")
}

/// Field 22 of `/proc/PID/stat`. The command name (field 2) may hold spaces and
/// parentheses, so the fields are counted from the last `)`.
fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Field 4 of `/proc/PID/stat`: the parent's PID.
fn parse_ppid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// A process's parent, or `None` if there is no such process.
fn parent_of(pid: u32) -> Option<u32> {
    parse_ppid(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The process whose life is the session's: under nextest (one process per test) the
/// nextest process above this one; under `cargo test` this test binary itself.
pub(crate) fn runner() -> Owner {
    let me = Owner::current().clone();
    if std::env::var_os("NEXTEST_RUN_ID").is_none() {
        return me;
    }
    let found = nextest_ancestor(me.pid).or_else(|| parent_of(me.pid));
    match found.and_then(|pid| Some(Owner { host: me.host.clone(), pid, start: process_start(pid)? })) {
        Some(o) => o,
        None => me,
    }
}

/// The nearest ancestor named like nextest. A process a test spawned (which inherits
/// NEXTEST_RUN_ID) then still finds the run's nextest rather than its own parent test.
fn nextest_ancestor(mut pid: u32) -> Option<u32> {
    for _ in 0..16 {
        pid = parent_of(pid).filter(|p| *p > 1)?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.contains("nextest") {
            return Some(pid);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_round_trips_through_its_label() {
        let o = Owner { host: "ci-runner.local".into(), pid: 4242, start: 987654 };
        assert_eq!(Owner::parse(&o.to_string()), Some(o));
        assert_eq!(Owner::parse("host/notapid/1"), None);
        assert_eq!(Owner::parse("/1/2"), None);
        assert_eq!(Owner::parse("garbage"), None);
    }

    #[test]
    fn this_process_is_its_own_live_owner() {
        let me = Owner::current();
        assert_eq!(me.pid, std::process::id());
        assert!(me.start > 0);
        assert_eq!(process_start(me.pid), Some(me.start));
        assert!(me.alive());
        assert!(!Owner { start: me.start + 1, ..me.clone() }.alive());
    }

    #[test]
    fn start_time_survives_a_command_name_with_spaces_and_parens() {
        let stat = "123 (my (odd) name) S 1 123 123 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 55555 1000 10";
        assert_eq!(parse_start_time(stat), Some(55555));
    }

    #[test]
    fn a_zombie_is_not_alive() {
        assert!(is_zombie("77 (sleep) Z 1 77 77 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 500 0 0"));
        assert!(!is_zombie("77 (a) Z) S 1 77 77 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 500 0 0"));
    }

    #[test]
    fn the_runner_is_read_from_a_parent_pid_field() {
        let stat = "123 (my (odd) name) S 77 123 123 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 55555 1000 10";
        assert_eq!(parse_ppid(stat), Some(77));
    }

    #[test]
    fn outside_nextest_the_runner_is_this_process() {
        if std::env::var_os("NEXTEST_RUN_ID").is_none() {
            assert_eq!(&runner(), Owner::current());
        } else {
            let r = runner();
            assert_ne!(r.pid, std::process::id());
            assert_eq!(process_start(r.pid), Some(r.start));
        }
    }
}
