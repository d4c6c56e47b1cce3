//! The labels every harness resource carries, building them, and the rules that read them
//! to decide whether a leftover still belongs to someone.
//!
//! The whole `docker-harness.` label namespace is reserved for the harness.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::owner::Liveness;
pub use crate::owner::{hostname, Owner};

/// `true` on everything the harness created. Nothing without it is ever listed or touched.
pub const MANAGED: &str = "docker-harness.managed";
/// The session ID.
pub const SESSION: &str = "docker-harness.session";
/// The test's name, as given (not sanitised).
pub const TEST: &str = "docker-harness.test";
/// The test context's task ID.
pub const TASK: &str = "docker-harness.task";
/// `place/pid/start time` of the process that created the resource (see
/// [`Owner`]: the place is `<host>~<boot>~<PID namespace>`).
pub const OWNER: &str = "docker-harness.owner";
/// Unix seconds after which a resource whose owner cannot be seen (another host, boot or
/// PID namespace) may be presumed abandoned.
pub const EXPIRES: &str = "docker-harness.expires";
/// Unix seconds until which a resource is kept for debugging.
pub const KEEP_UNTIL: &str = "docker-harness.keep-until";
/// Set on session-shared resources, which no single test's teardown removes.
pub const SHARED: &str = "docker-harness.shared";
/// `place/pid/start time` of the session's runner (nextest, or the test binary under
/// `cargo test`), on session-shared resources: they live as long as it does.
pub const RUNNER: &str = "docker-harness.runner";
/// On containers: the image reference the test named. The container is made from the ID
/// the session resolved that reference to, which is what Docker shows as its image.
pub const IMAGE: &str = "docker-harness.image";
/// On everything a compose file brought up (its services' containers, its networks and
/// volumes): the project name the harness gave it, by which its guard finds them all.
pub const COMPOSE: &str = "docker-harness.compose";

/// Unix seconds now: the clock the expiry and keep labels are written in.
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

/// Decides whether a resource with these labels is an orphan. Private to the crate: the
/// liveness rules are the harness's to change; a user sees their verdicts.
///
/// - A resource still inside its keep window is `Kept`, whoever owns it.
/// - It is judged by its owner's liveness (`judge`): alive, it is `Owned`; seen dead
///   (gone, or its PID reused), an `Orphan`, even before its expiry.
/// - An owner whose liveness cannot be known (another host, boot or PID namespace, a
///   process this one cannot see, or any owner when this process cannot see the host's
///   processes at all) is never taken for dead: the resource is an orphan only once its
///   `expires` label has passed. So is one whose owner label is missing or unreadable.
/// - A session-shared resource (`docker-harness.shared`) is judged by its session's runner
///   (`docker-harness.runner`) instead of its owner: under nextest the test process that
///   created it exits long before the session ends, while the runner lives exactly as long
///   as the session.
pub(crate) fn classify(labels: &HashMap<String, String>, now: u64, judge: &dyn Fn(&Owner) -> Liveness) -> Verdict {
    let num = |k: &str| labels.get(k).and_then(|v| v.parse::<u64>().ok());
    if num(KEEP_UNTIL).is_some_and(|until| now < until) {
        return Verdict::Kept;
    }
    match judged_by(labels).map(|o| judge(&o)) {
        Some(Liveness::Alive) => Verdict::Owned,
        Some(Liveness::Dead) => Verdict::Orphan,
        Some(Liveness::Unknown) | None => match num(EXPIRES) {
            Some(exp) if now < exp => Verdict::Owned,
            _ => Verdict::Orphan,
        },
    }
}

/// The process whose life decides a resource's: its session's runner for a shared
/// resource, its owner for everything else. `None` when that label is missing or unreadable.
pub(crate) fn judged_by(labels: &HashMap<String, String>) -> Option<Owner> {
    let key = if labels.contains_key(SHARED) { RUNNER } else { OWNER };
    labels.get(key).and_then(|o| Owner::parse(o))
}

/// The labels of a session-shared resource: a test's labels under the key, plus the key
/// and the session's runner, whose life is the resource's.
pub(crate) fn for_shared(
    key: &str,
    session: &str,
    task: &str,
    ttl: Duration,
    runner: &Owner,
) -> HashMap<String, String> {
    let mut l = for_test(session, &format!("shared:{key}"), task, ttl);
    l.insert(SHARED.to_string(), key.to_string());
    l.insert(RUNNER.to_string(), runner.to_string());
    l
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
    use crate::owner::{judge, Seen};

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const NOW: u64 = 1_000_000;

    /// Judged from place `h`, with the process table faked by `seen`.
    fn at_h(l: &HashMap<String, String>, seen: impl Fn(u32) -> Seen) -> Verdict {
        classify(l, NOW, &|o: &Owner| judge(o, "h", &seen))
    }

    fn only(pid: u32, start: u64) -> impl Fn(u32) -> Seen {
        move |p| if p == pid { Seen::Running(start) } else { Seen::Gone }
    }

    #[test]
    fn a_live_owner_on_this_host_is_never_an_orphan() {
        let l = labels(&[(OWNER, "h/10/500"), (EXPIRES, "1")]);
        assert_eq!(at_h(&l, only(10, 500)), Verdict::Owned);
    }

    #[test]
    fn a_dead_owner_on_this_host_leaves_orphans_even_before_expiry() {
        let l = labels(&[(OWNER, "h/10/500"), (EXPIRES, &(NOW + 999).to_string())]);
        assert_eq!(at_h(&l, |_| Seen::Gone), Verdict::Orphan);
    }

    #[test]
    fn a_reused_pid_is_not_the_owner() {
        let l = labels(&[(OWNER, "h/10/500")]);
        assert_eq!(at_h(&l, |_| Seen::Running(777)), Verdict::Orphan);
    }

    #[test]
    fn an_owner_whose_liveness_cannot_be_known_is_judged_by_expiry_never_as_dead() {
        let fresh = labels(&[(OWNER, "h/10/500"), (EXPIRES, &(NOW + 1).to_string())]);
        assert_eq!(at_h(&fresh, |_| Seen::Unseen), Verdict::Owned);
        let stale = labels(&[(OWNER, "h/10/500"), (EXPIRES, &(NOW - 1).to_string())]);
        assert_eq!(at_h(&stale, |_| Seen::Unseen), Verdict::Orphan);
    }

    #[test]
    fn another_hosts_resources_wait_for_their_expiry() {
        let fresh = labels(&[(OWNER, "other/10/500"), (EXPIRES, &(NOW + 1).to_string())]);
        assert_eq!(at_h(&fresh, |_| Seen::Gone), Verdict::Owned);
        let stale = labels(&[(OWNER, "other/10/500"), (EXPIRES, &(NOW - 1).to_string())]);
        assert_eq!(at_h(&stale, only(10, 500)), Verdict::Orphan);
    }

    #[test]
    fn kept_resources_are_spared_until_their_keep_expiry() {
        let kept = labels(&[(OWNER, "h/10/500"), (KEEP_UNTIL, &(NOW + 60).to_string())]);
        assert_eq!(at_h(&kept, |_| Seen::Gone), Verdict::Kept);
        let expired = labels(&[(OWNER, "h/10/500"), (KEEP_UNTIL, &(NOW - 60).to_string())]);
        assert_eq!(at_h(&expired, |_| Seen::Gone), Verdict::Orphan);
    }

    #[test]
    fn an_unreadable_owner_falls_back_to_expiry() {
        let l = labels(&[(OWNER, "???"), (EXPIRES, &(NOW + 5).to_string())]);
        assert_eq!(at_h(&l, |_| Seen::Gone), Verdict::Owned);
        let l = labels(&[(OWNER, "???")]);
        assert_eq!(at_h(&l, |_| Seen::Gone), Verdict::Orphan);
    }

    #[test]
    fn a_shared_resource_outlives_its_creator_while_the_runner_lives() {
        let l = labels(&[(SHARED, "db"), (OWNER, "h/10/500"), (RUNNER, "h/3/300"), (EXPIRES, "1")]);
        assert_eq!(at_h(&l, only(3, 300)), Verdict::Owned);
    }

    #[test]
    fn a_shared_resource_is_an_orphan_once_its_runner_is_gone() {
        let l =
            labels(&[(SHARED, "db"), (OWNER, "h/10/500"), (RUNNER, "h/3/300"), (EXPIRES, &(NOW + 999).to_string())]);
        assert_eq!(at_h(&l, only(10, 500)), Verdict::Orphan);
        assert_eq!(at_h(&l, |_| Seen::Running(301)), Verdict::Orphan);
    }

    #[test]
    fn a_shared_resource_without_a_runner_or_of_another_host_waits_for_expiry() {
        let fresh = labels(&[(SHARED, "db"), (OWNER, "h/10/500"), (EXPIRES, &(NOW + 1).to_string())]);
        assert_eq!(at_h(&fresh, |_| Seen::Gone), Verdict::Owned);
        let remote = labels(&[(SHARED, "db"), (RUNNER, "other/3/300"), (EXPIRES, &(NOW - 1).to_string())]);
        assert_eq!(at_h(&remote, only(3, 300)), Verdict::Orphan);
        let kept = labels(&[(SHARED, "db"), (RUNNER, "h/3/300"), (KEEP_UNTIL, &(NOW + 5).to_string())]);
        assert_eq!(at_h(&kept, |_| Seen::Gone), Verdict::Kept);
    }

    #[test]
    fn shared_labels_carry_the_session_the_key_and_the_runner() {
        let runner = Owner { host: "h".into(), pid: 3, start: 300 };
        let l = for_shared("db", "s1", "t1", Duration::from_secs(60), &runner);
        assert_eq!(l[SHARED], "db");
        assert_eq!(l[RUNNER], "h/3/300");
        assert_eq!(l[SESSION], "s1");
        assert_eq!(l[MANAGED], "true");
        assert!(l.contains_key(OWNER) && l.contains_key(EXPIRES));
        assert_eq!(judged_by(&l), Some(runner));
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
