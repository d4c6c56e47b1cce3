//! What Docker accepts for each container option, checked on the client: a bad value fails
//! before anything is created, with the option, the value and what to give instead, rather
//! than as a daemon error after the image was resolved (or, for a zero limit, not at all:
//! Docker reads it as "no limit").

use std::fmt;
use std::net::IpAddr;

use crate::error::Error;

/// One refused value; `options` turns it into `Error::InvalidOption` for a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub(crate) option: &'static str,
    pub(crate) value: String,
    pub(crate) reason: String,
    pub(crate) help: String,
}

impl Invalid {
    /// The error for container `container` (a spec's logical name, or a Docker name).
    pub(crate) fn into_error(self, container: &str) -> Error {
        Error::InvalidOption {
            container: container.to_string(),
            option: self.option,
            value: self.value,
            reason: self.reason,
            help: self.help,
        }
    }
}

type Check = Result<(), Invalid>;

fn refuse(option: &'static str, value: impl fmt::Display, reason: &str, help: &str) -> Check {
    Err(Invalid { option, value: value.to_string(), reason: reason.to_string(), help: help.to_string() })
}

/// Docker's (and Podman's) smallest memory limit: 6 MiB.
const MIN_MEMORY: u64 = 6 << 20;

pub(crate) fn memory(bytes: u64) -> Check {
    match bytes {
        0 => refuse("memory limit", bytes, "0 means no limit to Docker", "leave the option out for no limit"),
        b if b < MIN_MEMORY => {
            refuse("memory limit", b, "Docker refuses less than 6 MiB", "give at least 6 << 20 bytes")
        }
        b if i64::try_from(b).is_err() => refuse("memory limit", b, "it does not fit Docker's i64", "leave it out"),
        _ => Ok(()),
    }
}

pub(crate) fn cpus(cpus: f64) -> Check {
    if cpus.is_finite() && (0.01..=1e6).contains(&cpus) {
        return Ok(());
    }
    refuse("CPU limit", cpus, "Docker takes 0.01 CPUs or more", "give a number of CPUs such as 0.5 or 2.0")
}

pub(crate) fn cpu_shares(shares: u32) -> Check {
    if (2..=262_144).contains(&shares) {
        return Ok(());
    }
    refuse("CPU shares", shares, "the kernel takes 2 to 262144 (0 would mean Docker's default, 1024)", "give e.g. 512")
}

pub(crate) fn pids(limit: u32) -> Check {
    if limit == 0 {
        return refuse("PID limit", limit, "0 means no limit to Docker", "leave the option out for no limit");
    }
    Ok(())
}

/// Linux's capabilities, as Docker names them (without `CAP_`).
const CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// A capability as every Docker version and Podman take it: upper case, no `CAP_` (Docker
/// before 20.10 prefixes it itself, so `CAP_NET_ADMIN` would become `CAP_CAP_NET_ADMIN`).
pub(crate) fn capability_name(cap: &str) -> String {
    let upper = cap.trim().to_ascii_uppercase();
    upper.strip_prefix("CAP_").map(str::to_string).unwrap_or(upper)
}

pub(crate) fn capability(cap: &str) -> Check {
    let name = capability_name(cap);
    if name == "ALL" || CAPABILITIES.contains(&name.as_str()) {
        return Ok(());
    }
    refuse("capability", cap, "it is not a Linux capability", "give one such as NET_ADMIN (or CAP_NET_ADMIN), or ALL")
}

pub(crate) fn tmpfs(target: &str, options: &str) -> Check {
    if !target.starts_with('/') || target == "/" || target.contains(':') {
        return refuse("tmpfs target", target, "it must be an absolute path other than / (no ':')", "e.g. /scratch");
    }
    if options.chars().any(char::is_whitespace) {
        return refuse(
            "tmpfs options",
            options,
            "options are comma-separated, without spaces",
            "e.g. size=64m,mode=1777",
        );
    }
    Ok(())
}

/// The ulimits Docker knows (go-units' names for the kernel's RLIMIT_*).
const ULIMITS: &[&str] = &[
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

pub(crate) fn ulimit(name: &str, soft: u64, hard: u64) -> Check {
    if !ULIMITS.contains(&name) {
        return refuse("ulimit", name, "Docker knows no such ulimit", &format!("give one of {}", ULIMITS.join(", ")));
    }
    if soft > hard {
        let value = format!("{name}={soft}:{hard}");
        return refuse("ulimit", value, "the soft limit is above the hard one", "give soft <= hard");
    }
    if i64::try_from(hard).is_err() {
        return refuse(
            "ulimit",
            format!("{name}={soft}:{hard}"),
            "it does not fit Docker's i64",
            "give a smaller limit",
        );
    }
    Ok(())
}

pub(crate) fn shm_size(bytes: u64) -> Check {
    match bytes {
        0 => refuse("shared memory size", bytes, "0 means Docker's default (64 MiB)", "leave it out for the default"),
        b if i64::try_from(b).is_err() => {
            refuse("shared memory size", b, "it does not fit Docker's i64", "leave it out")
        }
        _ => Ok(()),
    }
}

pub(crate) fn security_opt(opt: &str) -> Check {
    if opt.is_empty() || opt.chars().any(char::is_whitespace) {
        return refuse(
            "security option",
            opt,
            "it is empty or has spaces",
            "e.g. no-new-privileges or seccomp=unconfined",
        );
    }
    if let Some(v) = opt.strip_prefix("no-new-privileges").and_then(|r| r.strip_prefix([':', '='])) {
        if v != "true" && v != "false" {
            return refuse(
                "security option",
                opt,
                "no-new-privileges takes true or false",
                "e.g. no-new-privileges:true",
            );
        }
    }
    Ok(())
}

/// A host name the kernel takes (at most 64 bytes) and resolvers read: letters, digits,
/// `-` and `.`, neither first nor last.
pub(crate) fn hostname(name: &str) -> Check {
    let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    let ends = |c: char| c == '-' || c == '.';
    if (1..=63).contains(&name.len()) && ok_chars && !name.starts_with(ends) && !name.ends_with(ends) {
        return Ok(());
    }
    refuse("hostname", name, "use 1 to 63 letters, digits, '-' or '.', not first or last", "e.g. app-1.test")
}

pub(crate) fn extra_host(host: &str, ip: &str) -> Check {
    if host.is_empty() || host.contains(':') || host.chars().any(char::is_whitespace) {
        return refuse(
            "extra host",
            host,
            "a host name has no ':' or spaces",
            "e.g. with_extra_host(\"db.internal\", ..)",
        );
    }
    if ip != "host-gateway" && ip.parse::<IpAddr>().is_err() {
        return refuse("extra host address", ip, "it is not an IP address", "e.g. 10.1.2.3, ::1 or host-gateway");
    }
    Ok(())
}

/// Signals by name (with or without `SIG`, any case) as Docker's `ParseSignal` reads them.
const SIGNALS: &[&str] = &[
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL", "PIPE", "POLL",
    "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1",
    "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ", "RTMIN", "RTMAX",
];

/// A signal as sent to Docker: `SIGUSR1` for `usr1`, numbers as they are.
pub(crate) fn signal_name(sig: &str) -> String {
    let upper = sig.trim().to_ascii_uppercase();
    if upper.parse::<u32>().is_ok() || upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    }
}

pub(crate) fn signal(option: &'static str, sig: &str) -> Check {
    let name = signal_name(sig);
    let bare = name.strip_prefix("SIG").unwrap_or(&name);
    let offset = |prefix: &str| bare.strip_prefix(prefix).and_then(|n| n.parse::<u32>().ok());
    let known = match name.parse::<u32>() {
        Ok(n) => (1..=64).contains(&n),
        Err(_) => {
            SIGNALS.contains(&bare)
                || offset("RTMIN+").is_some_and(|n| (1..=15).contains(&n))
                || offset("RTMAX-").is_some_and(|n| (1..=14).contains(&n))
        }
    };
    if known {
        return Ok(());
    }
    refuse(option, sig, "it is not a Linux signal", "give a name such as SIGTERM, USR1 or SIGRTMIN+3, or 1 to 64")
}

pub(crate) fn platform(p: &str) -> Check {
    let parts: Vec<&str> = p.split('/').collect();
    let part_ok =
        |s: &&str| !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if (2..=3).contains(&parts.len()) && parts.iter().all(part_ok) {
        return Ok(());
    }
    refuse(
        "platform",
        p,
        "a platform is os/arch or os/arch/variant, in lower case",
        "e.g. linux/amd64 or linux/arm64/v8",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_or_tiny_memory_limit_is_refused_and_a_real_one_taken() {
        assert!(memory(0).unwrap_err().reason.contains("no limit"));
        assert!(memory(1 << 20).unwrap_err().reason.contains("6 MiB"));
        assert_eq!(memory(64 << 20), Ok(()));
        assert!(memory(u64::MAX).is_err());
    }

    #[test]
    fn cpu_limits_and_shares_are_within_what_docker_and_the_kernel_take() {
        assert_eq!(cpus(0.5), Ok(()));
        for bad in [0.0, 0.001, -1.0, f64::NAN, f64::INFINITY] {
            assert!(cpus(bad).is_err(), "{bad}");
        }
        assert_eq!(cpu_shares(512), Ok(()));
        assert!(cpu_shares(0).is_err() && cpu_shares(1).is_err() && cpu_shares(300_000).is_err());
        assert!(pids(0).is_err() && pids(1).is_ok());
    }

    #[test]
    fn capabilities_are_known_names_with_or_without_cap_and_sent_without() {
        assert_eq!(capability("NET_ADMIN"), Ok(()));
        assert_eq!(capability("cap_sys_ptrace"), Ok(()));
        assert_eq!(capability("ALL"), Ok(()));
        assert!(capability("NET_ADMINS").is_err());
        assert!(capability("").is_err());
        assert_eq!(capability_name("cap_net_admin"), "NET_ADMIN");
    }

    #[test]
    fn a_ulimit_docker_does_not_know_or_upside_down_is_refused() {
        assert_eq!(ulimit("nofile", 1024, 2048), Ok(()));
        let e = ulimit("openfiles", 1, 1).unwrap_err();
        assert!(e.help.contains("nofile") && e.value == "openfiles", "{e:?}");
        assert!(ulimit("nofile", 10, 5).unwrap_err().reason.contains("soft"));
        assert!(ulimit("nproc", 1, u64::MAX).is_err());
    }

    #[test]
    fn tmpfs_targets_are_absolute_and_options_plain() {
        assert_eq!(tmpfs("/scratch", "size=64m,mode=1777"), Ok(()));
        assert_eq!(tmpfs("/scratch", ""), Ok(()));
        assert!(tmpfs("scratch", "").is_err() && tmpfs("/", "").is_err() && tmpfs("/a:b", "").is_err());
        assert!(tmpfs("/scratch", "size=64m, mode=1777").is_err());
    }

    #[test]
    fn shared_memory_security_options_and_hostnames_are_checked() {
        assert!(shm_size(0).is_err() && shm_size(128 << 20).is_ok());
        assert_eq!(security_opt("no-new-privileges"), Ok(()));
        assert_eq!(security_opt("no-new-privileges:true"), Ok(()));
        assert_eq!(security_opt("seccomp=unconfined"), Ok(()));
        assert!(security_opt("no-new-privileges:yes").is_err() && security_opt("").is_err());
        assert_eq!(hostname("app-1.test"), Ok(()));
        for bad in ["", "-app", "app.", "app_1", "a b", &"x".repeat(64)] {
            assert!(hostname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn extra_hosts_need_a_plain_name_and_an_address() {
        assert_eq!(extra_host("db.internal", "10.1.2.3"), Ok(()));
        assert_eq!(extra_host("db6", "fd00::1"), Ok(()));
        assert_eq!(extra_host("gw", "host-gateway"), Ok(()));
        assert!(extra_host("db:5432", "10.1.2.3").is_err());
        assert!(extra_host("db", "10.1.2").unwrap_err().option.contains("address"));
    }

    #[test]
    fn signals_are_read_as_docker_reads_them() {
        for ok in ["SIGTERM", "term", "USR1", "sigusr2", "9", "64", "SIGRTMIN+3", "RTMAX-1", "RTMIN"] {
            assert_eq!(signal("signal", ok), Ok(()), "{ok}");
        }
        for bad in ["SIGFOO", "0", "65", "", "RTMIN+16", "RTMAX-15"] {
            assert!(signal("signal", bad).is_err(), "{bad:?}");
        }
        assert_eq!(signal_name("usr1"), "SIGUSR1");
        assert_eq!(signal_name("SIGTERM"), "SIGTERM");
        assert_eq!(signal_name("10"), "10");
    }

    #[test]
    fn platforms_are_os_and_arch_with_an_optional_variant() {
        for ok in ["linux/amd64", "linux/arm64/v8", "linux/386"] {
            assert_eq!(platform(ok), Ok(()), "{ok}");
        }
        for bad in ["linux", "amd64/", "Linux/AMD64", "linux/arm64/v8/x", ""] {
            assert!(platform(bad).is_err(), "{bad:?}");
        }
    }
}
