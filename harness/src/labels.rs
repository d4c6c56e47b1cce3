//! The labels every harness resource carries, the owner identity, and the rules that decide
//! whether a leftover still belongs to someone.
//!
//! The whole `docker-harness.` label namespace is reserved for the harness.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use once_cell::sync::Lazy;

/// `true` on everything the harness created. Nothing without it is ever listed or touched.
pub const MANAGED: &str = "docker-harness.managed";
/// The session ID.
pub const SESSION: &str = "docker-harness.session";
/// The test's name, as given (not sanitised).
pub const TEST: &str = "docker-harness.test";
/// The test context's task ID.
pub const TASK: &str = "docker-harness.task";
/// `host/pid/start time` of the process that created the resource.
pub const OWNER: &str = "docker-harness.owner";
/// Unix seconds after which a resource of another host may be presumed abandoned.
pub const EXPIRES: &str = "docker-harness.expires";
/// Unix seconds until which a resource is kept for debugging.
pub const KEEP_UNTIL: &str = "docker-harness.keep-until";
/// Set on session-shared resources, which no single test's teardown removes.
pub const SHARED: &str = "docker-harness.shared";
/// `host/pid/start time` of the session's runner (nextest, or the test binary under
/// `cargo test`), on session-shared resources: they live as long as it does.
pub const RUNNER: &str = "docker-harness.runner";

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
pub(crate) fn is_zombie(stat: &str) -> bool {
    stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next()) == Some("Z")
}

/// Field 22 of `/proc/PID/stat`. The command name (field 2) may hold spaces and
/// parentheses, so the fields are counted from the last `)`.
pub(crate) fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Field 4 of `/proc/PID/stat`: the parent's PID.
pub(crate) fn parse_ppid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// A process's parent, or `None` if there is no such process.
pub(crate) fn parent_of(pid: u32) -> Option<u32> {
    parse_ppid(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// What a leftover is, seen from this host now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Its owner is alive (or, on another host, not yet expired): never touched.
    Owned,
    /// Kept for debugging until its keep label expires.
    Kept,
    /// Its owner is gone: it may be removed.
    Orphan,
}

/// Decides whether a resource with these labels is an orphan.
///
/// - A resource still inside its keep window is `Kept`, whoever owns it.
/// - An owner on this host is alive only if its PID exists with the same start time.
/// - An owner on another host cannot be checked: its resources are orphans once `expires`
///   has passed, never earlier.
/// - A managed resource whose owner label is missing or unreadable is judged by expiry alone.
/// - A session-shared resource (`docker-harness.shared`) is judged by its session's runner
///   (`docker-harness.runner`) instead of its owner: under nextest the test process that
///   created it exits long before the session ends, while the runner lives exactly as long
///   as the session. Without a readable runner, or on another host, by expiry alone.
pub fn classify(
    labels: &HashMap<String, String>,
    this_host: &str,
    now: u64,
    start_of: &dyn Fn(u32) -> Option<u64>,
) -> Verdict {
    let num = |k: &str| labels.get(k).and_then(|v| v.parse::<u64>().ok());
    if num(KEEP_UNTIL).is_some_and(|until| now < until) {
        return Verdict::Kept;
    }
    let judge_by = if labels.contains_key(SHARED) { RUNNER } else { OWNER };
    match labels.get(judge_by).and_then(|o| Owner::parse(o)) {
        Some(o) if o.host == this_host => {
            if start_of(o.pid) == Some(o.start) {
                Verdict::Owned
            } else {
                Verdict::Orphan
            }
        }
        _ => match num(EXPIRES) {
            Some(exp) if now < exp => Verdict::Owned,
            _ => Verdict::Orphan,
        },
    }
}

/// The labels of this process's resources for one test.
pub(crate) fn for_test(session: &str, test: &str, task: &str, ttl: Duration) -> HashMap<String, String> {
    HashMap::from([
        (MANAGED.to_string(), "true".to_string()),
        (SESSION.to_string(), session.to_string()),
        (TEST.to_string(), truncate_label(test)),
        (TASK.to_string(), task.to_string()),
        (OWNER.to_string(), Owner::current().to_string()),
        (EXPIRES.to_string(), (unix_now() + ttl.as_secs()).to_string()),
    ])
}

/// Label values have no documented limit, but a whole test's labels should stay readable.
fn truncate_label(v: &str) -> String {
    match v.char_indices().nth(512) {
        Some((i, _)) => v[..i].to_string(),
        None => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const NOW: u64 = 1_000_000;

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
    fn a_live_owner_on_this_host_is_never_an_orphan() {
        let l = labels(&[(OWNER, "h/10/500"), (EXPIRES, "1")]);
        assert_eq!(classify(&l, "h", NOW, &|pid| (pid == 10).then_some(500)), Verdict::Owned);
    }

    #[test]
    fn a_dead_owner_on_this_host_leaves_orphans_even_before_expiry() {
        let l = labels(&[(OWNER, "h/10/500"), (EXPIRES, &(NOW + 999).to_string())]);
        assert_eq!(classify(&l, "h", NOW, &|_| None), Verdict::Orphan);
    }

    #[test]
    fn a_reused_pid_is_not_the_owner() {
        let l = labels(&[(OWNER, "h/10/500")]);
        assert_eq!(classify(&l, "h", NOW, &|_| Some(777)), Verdict::Orphan);
    }

    #[test]
    fn another_hosts_resources_wait_for_their_expiry() {
        let alive = |_| Some(500);
        let fresh = labels(&[(OWNER, "other/10/500"), (EXPIRES, &(NOW + 1).to_string())]);
        assert_eq!(classify(&fresh, "h", NOW, &alive), Verdict::Owned);
        let stale = labels(&[(OWNER, "other/10/500"), (EXPIRES, &(NOW - 1).to_string())]);
        assert_eq!(classify(&stale, "h", NOW, &alive), Verdict::Orphan);
    }

    #[test]
    fn kept_resources_are_spared_until_their_keep_expiry() {
        let kept = labels(&[(OWNER, "h/10/500"), (KEEP_UNTIL, &(NOW + 60).to_string())]);
        assert_eq!(classify(&kept, "h", NOW, &|_| None), Verdict::Kept);
        let expired = labels(&[(OWNER, "h/10/500"), (KEEP_UNTIL, &(NOW - 60).to_string())]);
        assert_eq!(classify(&expired, "h", NOW, &|_| None), Verdict::Orphan);
    }

    #[test]
    fn an_unreadable_owner_falls_back_to_expiry() {
        let l = labels(&[(OWNER, "???"), (EXPIRES, &(NOW + 5).to_string())]);
        assert_eq!(classify(&l, "h", NOW, &|_| None), Verdict::Owned);
        let l = labels(&[(OWNER, "???")]);
        assert_eq!(classify(&l, "h", NOW, &|_| None), Verdict::Orphan);
    }

    #[test]
    fn a_shared_resource_outlives_its_creator_while_the_runner_lives() {
        let l = labels(&[(SHARED, "db"), (OWNER, "h/10/500"), (RUNNER, "h/3/300"), (EXPIRES, "1")]);
        let only_runner = |pid| (pid == 3).then_some(300);
        assert_eq!(classify(&l, "h", NOW, &only_runner), Verdict::Owned);
    }

    #[test]
    fn a_shared_resource_is_an_orphan_once_its_runner_is_gone() {
        let l =
            labels(&[(SHARED, "db"), (OWNER, "h/10/500"), (RUNNER, "h/3/300"), (EXPIRES, &(NOW + 999).to_string())]);
        let only_creator = |pid| (pid == 10).then_some(500);
        assert_eq!(classify(&l, "h", NOW, &only_creator), Verdict::Orphan);
        let reused_pid = |_| Some(301);
        assert_eq!(classify(&l, "h", NOW, &reused_pid), Verdict::Orphan);
    }

    #[test]
    fn a_shared_resource_without_a_runner_or_of_another_host_waits_for_expiry() {
        let alive = |_| Some(500);
        let fresh = labels(&[(SHARED, "db"), (OWNER, "h/10/500"), (EXPIRES, &(NOW + 1).to_string())]);
        assert_eq!(classify(&fresh, "h", NOW, &|_| None), Verdict::Owned);
        let remote = labels(&[(SHARED, "db"), (RUNNER, "other/3/300"), (EXPIRES, &(NOW - 1).to_string())]);
        assert_eq!(classify(&remote, "h", NOW, &alive), Verdict::Orphan);
        let kept = labels(&[(SHARED, "db"), (RUNNER, "h/3/300"), (KEEP_UNTIL, &(NOW + 5).to_string())]);
        assert_eq!(classify(&kept, "h", NOW, &|_| None), Verdict::Kept);
    }

    #[test]
    fn the_runner_is_read_from_a_parent_pid_field() {
        let stat = "123 (my (odd) name) S 77 123 123 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 55555 1000 10";
        assert_eq!(parse_ppid(stat), Some(77));
    }

    #[test]
    fn test_labels_carry_every_key() {
        let l = for_test("s", "t", "k", Duration::from_secs(60));
        for key in [MANAGED, SESSION, TEST, TASK, OWNER, EXPIRES] {
            assert!(l.contains_key(key), "{key} missing");
        }
        assert_eq!(l[MANAGED], "true");
        assert!(l[EXPIRES].parse::<u64>().unwrap() >= unix_now() + 59);
    }
}
