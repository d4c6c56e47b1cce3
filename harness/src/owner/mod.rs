//! Who owns a resource, and whether that owner still lives.
//!
//! An owner is a process: where it runs (its *place*: the machine, its boot and its PID
//! namespace, written into one string) and which process it is there (PID and start
//! time, so a reused PID is not mistaken for it). Liveness has three answers, and
//! **unknown is never dead**: an owner of another place (another host, boot or PID
//! namespace), one whose process cannot be seen (`hidepid`, another user's process
//! elsewhere) and every owner judged by a process that cannot trust its own view of the
//! host (no `/proc`, or another namespace's) are unknown, and their resources go by
//! expiry alone. What reads the host's process table is in `sys` (the readings) and
//! `procs` (host processes under a test's marker).

pub(crate) mod procs;
mod sys;

#[cfg(not(target_os = "linux"))]
use self::sys::kernel as table;
#[cfg(target_os = "linux")]
use self::sys::linux as table;
pub(crate) use self::sys::Seen;

use std::fmt;

use once_cell::sync::Lazy;

/// The process that created a resource: its place (`host`: the machine, the boot and the
/// PID namespace), its PID and the PID's start time, so that a reused PID is not taken
/// for the owner.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    /// Where it runs: `<host name>~<boot>~<PID namespace>`, or a place no other process
    /// shares (`<host name>~unverified~<random>`) when the process could not read those.
    /// Labels written before places were named hold the bare host name: a place no
    /// current process has, so their resources go by expiry.
    pub host: String,
    /// The process ID.
    pub pid: u32,
    /// The process's start time, in the platform's own unit (clock ticks since boot on
    /// Linux).
    pub start: u64,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.host, self.pid, self.start)
    }
}

/// Whether an owner still runs, as far as this process can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// Its PID runs, with the same start time.
    Alive,
    /// Seen gone: no such process (or a zombie), or its PID now belongs to another one.
    Dead,
    /// Cannot be known from here: its resources are judged by their expiry.
    Unknown,
}

impl Owner {
    /// Parses `place/pid/start`. The place may not contain `/`.
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
            let (host, start) = place_from(&hostname(), table::place().as_deref(), start_of(pid), &random_tag());
            Owner { host, pid, start }
        });
        &ME
    }

    /// Whether this owner still runs, judged from this process.
    pub(crate) fn liveness(&self) -> Liveness {
        judge(self, &Owner::current().host, table::seen)
    }

    /// Whether this owner's process could vouch for its place: if not, no judge (itself
    /// included) can ever see it alive or dead.
    pub(crate) fn is_verified(&self) -> bool {
        !self.host.contains(UNVERIFIED)
    }

    /// A process of this process's place, if it runs.
    pub(crate) fn local(pid: u32) -> Option<Owner> {
        Some(Owner { host: Owner::current().host.clone(), pid, start: start_of(pid)? })
    }
}

const UNVERIFIED: &str = "~unverified~";

/// A running process's start time.
fn start_of(pid: u32) -> Option<u64> {
    match table::seen(pid) {
        Seen::Running(start) => Some(start),
        _ => None,
    }
}

/// This host's name, from the operating system (uname), never from `HOSTNAME`.
pub fn hostname() -> String {
    let name = sys::hostname().map(|h| h.trim().replace(['/', '~'], "_")).filter(|h| !h.is_empty());
    name.unwrap_or_else(|| "unknown-host".to_string())
}

/// An owner's liveness, seen from a process at `my_place` that reads the process table
/// through `seen`. Another place is unknown: its PIDs mean nothing here. So is every owner
/// when this process could not vouch for its own place, even one that shares it (only
/// this process does): its start time was made up.
pub(crate) fn judge(owner: &Owner, my_place: &str, seen: impl Fn(u32) -> Seen) -> Liveness {
    if owner.host != my_place || my_place.contains(UNVERIFIED) {
        return Liveness::Unknown;
    }
    match seen(owner.pid) {
        Seen::Running(start) if start == owner.start => Liveness::Alive,
        Seen::Running(_) | Seen::Gone => Liveness::Dead,
        Seen::Unseen => Liveness::Unknown,
    }
}

/// The place and start time an owner writes: `<host>~<machine place>` when the process
/// can vouch for both, else a place no other process shares (every judge, this process
/// included, then goes by expiry) and a start time that is not 0, so it reads as no
/// real process's.
fn place_from(host: &str, machine_place: Option<&str>, start: Option<u64>, tag: &str) -> (String, u64) {
    match (machine_place, start) {
        (Some(place), Some(start)) => (format!("{host}~{place}"), start),
        _ => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            (format!("{host}{UNVERIFIED}{tag}"), now.max(2))
        }
    }
}

fn random_tag() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// The process whose life is the session's: under nextest (one process per test) the
/// nextest process above this one; under `cargo test` this test binary itself.
pub(crate) fn runner() -> Owner {
    let me = Owner::current().clone();
    if std::env::var_os("NEXTEST_RUN_ID").is_none() {
        return me;
    }
    let found = nextest_ancestor(me.pid).or_else(|| table::parent_of(me.pid));
    found.and_then(Owner::local).unwrap_or(me)
}

/// The nearest ancestor named like nextest. A process a test spawned (which inherits
/// NEXTEST_RUN_ID) then still finds the run's nextest rather than its own parent test.
fn nextest_ancestor(mut pid: u32) -> Option<u32> {
    for _ in 0..16 {
        pid = table::parent_of(pid).filter(|p| *p > 1)?;
        if table::command_name(pid).is_some_and(|c| c.contains("nextest")) {
            return Some(pid);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const HERE: &str = "box~b00t~4026531836";

    fn owner(host: &str, pid: u32, start: u64) -> Owner {
        Owner { host: host.into(), pid, start }
    }

    #[test]
    fn owner_round_trips_through_its_label() {
        let o = owner("ci-runner.local~3f2a9c1e0b4d~4026531836", 4242, 987654);
        assert_eq!(Owner::parse(&o.to_string()), Some(o));
        assert_eq!(Owner::parse("host/notapid/1"), None);
        assert_eq!(Owner::parse("/1/2"), None);
        assert_eq!(Owner::parse("garbage"), None);
    }

    #[test]
    fn an_owner_of_this_place_is_alive_only_with_its_own_start_time() {
        let o = owner(HERE, 10, 500);
        assert_eq!(judge(&o, HERE, |_| Seen::Running(500)), Liveness::Alive);
        assert_eq!(judge(&o, HERE, |_| Seen::Running(777)), Liveness::Dead, "a reused PID is not the owner");
        assert_eq!(judge(&o, HERE, |_| Seen::Gone), Liveness::Dead);
    }

    #[test]
    fn a_process_that_cannot_be_seen_is_unknown_never_dead() {
        assert_eq!(judge(&owner(HERE, 10, 500), HERE, |_| Seen::Unseen), Liveness::Unknown);
    }

    #[test]
    fn another_boot_namespace_or_machine_is_unknown_whatever_its_pids_say() {
        for other in ["box~0ther~4026531836", "box~b00t~4026532999", "laptop~b00t~4026531836", "box"] {
            assert_eq!(judge(&owner(other, 10, 500), HERE, |_| Seen::Gone), Liveness::Unknown, "{other}");
        }
    }

    #[test]
    fn an_owner_that_cannot_vouch_for_its_place_is_everyones_other_host() {
        let (place, start) = place_from("box", None, Some(500), "a1");
        assert_eq!(place, "box~unverified~a1");
        assert!(start > 1, "never a start time of 0 or 1: {start}");
        let (place, _) = place_from("box", Some("b00t~4026531836"), None, "a2");
        assert_eq!(place, "box~unverified~a2");
        // Not even a judge with the same host name and an unreadable place matches it,
        // nor the process itself, whose start time was made up.
        let theirs = owner(&place, 10, start);
        assert_eq!(judge(&theirs, &place_from("box", None, None, "b7").0, |_| Seen::Gone), Liveness::Unknown);
        assert_eq!(judge(&theirs, &place, |_| Seen::Running(start + 1)), Liveness::Unknown);
        assert_eq!(place_from("box", Some("b00t~4026531836"), Some(500), "a3"), ("box~b00t~4026531836".into(), 500));
    }

    #[test]
    fn this_process_is_its_own_live_owner() {
        let me = Owner::current();
        assert_eq!(me.pid, std::process::id());
        assert!(me.start > 0);
        assert!(me.host.starts_with(&hostname()), "{}", me.host);
        if me.is_verified() {
            assert_eq!(me.liveness(), Liveness::Alive);
            assert_eq!(Owner { start: me.start + 1, ..me.clone() }.liveness(), Liveness::Dead);
        }
    }

    #[test]
    fn outside_nextest_the_runner_is_this_process() {
        if std::env::var_os("NEXTEST_RUN_ID").is_none() {
            assert_eq!(&runner(), Owner::current());
        } else {
            let r = runner();
            assert_ne!(r.pid, std::process::id());
            assert_eq!(r.liveness(), Liveness::Alive);
        }
    }
}
