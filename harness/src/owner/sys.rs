//! The host's process table, per platform: this machine's place (its boot and PID
//! namespace), what one PID is, and a process's parent and name. Linux reads `/proc`, and
//! only when it is this process's own (`/proc/self` names `getpid()`); elsewhere the
//! kernel is asked through sysinfo. Only Linux is tested; the rest is written for macOS,
//! FreeBSD and Windows (what sysinfo supports) and kept to what sysinfo and rustix do
//! there. `owner` names the platform's reading (`linux` or `kernel`); both build on what
//! is shared here.

/// What the host's process table says of one PID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// It runs, started at this time.
    Running(u64),
    /// It has exited (a zombie, or the kernel says there is no such process).
    #[cfg_attr(not(unix), allow(dead_code))]
    Gone,
    /// It cannot be seen (not permitted, or no process table to read).
    Unseen,
}

/// A host process found by its marker (see `procs`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) struct Found {
    pub(crate) pid: u32,
    pub(crate) start: u64,
    pub(crate) command: String,
}

/// The host name from uname.
#[cfg(unix)]
pub(super) fn hostname() -> Option<String> {
    Some(rustix::system::uname().nodename().to_string_lossy().into_owned())
}

#[cfg(not(unix))]
pub(super) fn hostname() -> Option<String> {
    sysinfo::System::host_name()
}

/// What `kill(pid, 0)` tells of a PID the process table does not show: only "no such
/// process" is gone; a refusal (another user's process) or an answer is unseen.
#[cfg(unix)]
fn kill_probe(pid: u32) -> Seen {
    let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) else {
        return Seen::Unseen;
    };
    match rustix::process::test_kill_process(pid) {
        Err(rustix::io::Errno::SRCH) => Seen::Gone,
        _ => Seen::Unseen,
    }
}

#[cfg(target_os = "linux")]
pub(super) mod linux {
    use std::fs;

    use once_cell::sync::Lazy;

    use super::kill_probe;
    use super::Seen;

    /// Whether `/proc` is this process's PID namespace's: under `unshare --pid` without a
    /// fresh `/proc`, or with a tmpfs over it, it is not, and its PIDs are not ours.
    /// `/proc/self` naming `getpid()` could be a coincidence of numbers between namespaces;
    /// an `NSpid` line with one entry says the process sits in the namespace `/proc` shows.
    static PROC_IS_MINE: Lazy<bool> = Lazy::new(|| {
        let self_is_me =
            fs::read_link("/proc/self").is_ok_and(|p| p.to_string_lossy() == std::process::id().to_string());
        let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
        let nspid = status.lines().find_map(|l| l.strip_prefix("NSpid:")).map(|v| v.split_whitespace().count());
        // Kernels before 4.1 have no NSpid line: /proc/self alone decides there.
        self_is_me && nspid.is_none_or(|n| n == 1)
    });

    /// `<boot id>~<PID namespace inode>`, with `~t<time namespace inode>` where the kernel
    /// has time namespaces and this one is not the first (start times in `/proc` are shifted
    /// by the reader's time namespace); `None` when anything cannot be read.
    pub(crate) fn place() -> Option<String> {
        if !*PROC_IS_MINE {
            return None;
        }
        let boot: String = fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()?
            .chars()
            .filter(char::is_ascii_hexdigit)
            .take(12)
            .collect();
        let pid_ns = parse_ns_inode("pid", &fs::read_link("/proc/self/ns/pid").ok()?.to_string_lossy())?;
        let time_ns =
            fs::read_link("/proc/self/ns/time").ok().and_then(|l| parse_ns_inode("time", &l.to_string_lossy()));
        let time_part = time_ns.filter(|&t| t != INITIAL_TIME_NS).map(|t| format!("~t{t}")).unwrap_or_default();
        (boot.len() == 12).then(|| format!("{boot}~{pid_ns}{time_part}"))
    }

    /// The inode of the first time namespace (`PROC_TIME_INIT_INO`): left out of places, so
    /// that they read as they did before time namespaces were named.
    const INITIAL_TIME_NS: u64 = 0xEFFF_FFFA;

    /// `pid:[4026531836]` → 4026531836.
    pub(super) fn parse_ns_inode(kind: &str, link: &str) -> Option<u64> {
        link.strip_prefix(kind)?.strip_prefix(":[")?.strip_suffix(']')?.parse().ok()
    }

    /// Parent, start time and whether it has exited, from one read of `/proc/PID/stat`.
    pub(crate) fn stat(pid: u32) -> Option<(u32, u64, bool)> {
        if !*PROC_IS_MINE {
            return None;
        }
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Some((parse_ppid(&stat)?, parse_start_time(&stat)?, is_zombie(&stat)))
    }

    pub(crate) fn seen(pid: u32) -> Seen {
        if !*PROC_IS_MINE {
            return Seen::Unseen;
        }
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) if is_zombie(&stat) => Seen::Gone,
            Ok(stat) => parse_start_time(&stat).map_or(Seen::Unseen, Seen::Running),
            // Missing from /proc: gone only if the kernel agrees (`hidepid` hides others).
            Err(_) => kill_probe(pid),
        }
    }

    pub(crate) fn parent_of(pid: u32) -> Option<u32> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        parse_ppid(&stat).filter(|_| *PROC_IS_MINE)
    }

    pub(crate) fn command_name(pid: u32) -> Option<String> {
        fs::read_to_string(format!("/proc/{pid}/comm")).ok().filter(|_| *PROC_IS_MINE)
    }

    /// Field 3 of `/proc/PID/stat`, the state, is `Z` for a zombie: it has exited, only its
    /// parent has not reaped it yet.
    pub(super) fn is_zombie(stat: &str) -> bool {
        stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next()) == Some("Z")
    }

    /// Field 22 of `/proc/PID/stat`. The command name (field 2) may hold spaces and
    /// parentheses, so the fields are counted from the last `)`.
    pub(super) fn parse_start_time(stat: &str) -> Option<u64> {
        let rest = &stat[stat.rfind(')')? + 1..];
        rest.split_whitespace().nth(19)?.parse().ok()
    }

    /// Field 4 of `/proc/PID/stat`: the parent's PID.
    pub(super) fn parse_ppid(stat: &str) -> Option<u32> {
        let rest = &stat[stat.rfind(')')? + 1..];
        rest.split_whitespace().nth(1)?.parse().ok()
    }
}

/// Written for macOS, FreeBSD and Windows; not built here.
#[cfg(not(target_os = "linux"))]
pub(super) mod kernel {
    use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

    use super::Seen;

    /// `<boot time>~host`: these systems have no PID namespaces to tell apart.
    pub(crate) fn place() -> Option<String> {
        Some(format!("{}~host", System::boot_time())).filter(|p| !p.starts_with("0~"))
    }

    fn with_process<T>(pid: u32, f: impl FnOnce(&sysinfo::Process) -> T) -> Option<T> {
        let mut sys = System::new();
        let pid = Pid::from_u32(pid);
        sys.refresh_processes_specifics(ProcessesToUpdate::Some(&[pid]), true, ProcessRefreshKind::nothing());
        sys.process(pid).map(f)
    }

    pub(crate) fn seen(pid: u32) -> Seen {
        match with_process(pid, sysinfo::Process::start_time) {
            // sysinfo's 0 is "could not read it" (a refused OpenProcess or proc_pidinfo).
            Some(0) => Seen::Unseen,
            Some(start) => Seen::Running(start),
            #[cfg(unix)]
            None => super::kill_probe(pid),
            #[cfg(not(unix))]
            None => Seen::Unseen,
        }
    }

    pub(crate) fn parent_of(pid: u32) -> Option<u32> {
        with_process(pid, |p| p.parent().map(Pid::as_u32)).flatten()
    }

    pub(crate) fn command_name(pid: u32) -> Option<String> {
        with_process(pid, |p| p.name().to_string_lossy().into_owned())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::linux::*;
    use super::Seen;

    #[test]
    fn start_time_survives_a_command_name_with_spaces_and_parens() {
        let stat = "123 (my (odd) name) S 1 123 123 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 55555 1000 10";
        assert_eq!(parse_start_time(stat), Some(55555));
        assert_eq!(parse_ppid(stat), Some(1));
    }

    #[test]
    fn a_zombie_is_gone() {
        assert!(is_zombie("77 (sleep) Z 1 77 77 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 500 0 0"));
        assert!(!is_zombie("77 (a) Z) S 1 77 77 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 500 0 0"));
    }

    #[test]
    fn the_pid_namespace_is_read_from_its_link() {
        assert_eq!(parse_ns_inode("pid", "pid:[4026531836]"), Some(4026531836));
        assert_eq!(parse_ns_inode("pid", "net:[4026531836]"), None);
        assert_eq!(parse_ns_inode("time", "time:[4026531834]"), Some(4026531834));
    }

    #[test]
    fn this_host_has_a_place_and_a_pid_that_never_ran_is_gone() {
        assert!(place().is_some_and(|p| p.contains('~')));
        // PID 2^22 + 1 is beyond Linux's largest PID: no process has it.
        assert_eq!(seen(4_194_305), Seen::Gone);
        assert!(matches!(seen(std::process::id()), Seen::Running(_)));
    }
}
