//! The options real workloads set on a container (limits, capabilities, filesystems,
//! ulimits, init, names, signals, platform): kept as given, checked before anything is
//! created, and laid onto the create body; and the one escape hatch for everything else
//! Docker has. What makes a value valid is in `checks`.

use std::fmt;
use std::sync::Arc;

use bollard::models::{ContainerCreateBody, HostConfig, ResourcesUlimits};

use super::checks::{self, Invalid};
use crate::error::Result;

/// A closure given the create body before it is sent (see `ContainerSpec::with_create_body`).
#[derive(Clone)]
pub(crate) struct Hook(pub(crate) Arc<dyn Fn(&mut ContainerCreateBody) + Send + Sync>);

impl fmt::Debug for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hook(..)")
    }
}

/// One ulimit as given: a name and its soft and hard limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ulimit {
    pub(crate) name: String,
    pub(crate) soft: u64,
    pub(crate) hard: u64,
}

/// Every option a spec was given; `None` and empty leave Docker's default.
#[derive(Debug, Clone, Default)]
pub(crate) struct Options {
    pub(crate) memory: Option<u64>,
    pub(crate) cpus: Option<f64>,
    pub(crate) cpu_shares: Option<u32>,
    pub(crate) pids: Option<u32>,
    pub(crate) cap_add: Vec<String>,
    pub(crate) cap_drop: Vec<String>,
    pub(crate) privileged: Option<bool>,
    pub(crate) read_only: Option<bool>,
    pub(crate) tmpfs: Vec<(String, String)>,
    pub(crate) ulimits: Vec<Ulimit>,
    pub(crate) shm: Option<u64>,
    pub(crate) security: Vec<String>,
    pub(crate) init: Option<bool>,
    pub(crate) hostname: Option<String>,
    pub(crate) extra_hosts: Vec<(String, String)>,
    pub(crate) stop_signal: Option<String>,
    pub(crate) platform: Option<String>,
    pub(crate) hooks: Vec<Hook>,
}

impl Options {
    /// The first option Docker would refuse or misread, as the error for container `logical`.
    pub(crate) fn check(&self, logical: &str) -> Result<()> {
        self.first_invalid().map_or(Ok(()), |i| Err(i.into_error(logical)))
    }

    fn first_invalid(&self) -> Option<Invalid> {
        let one = |r: std::result::Result<(), Invalid>| r.err();
        let each = |v: &[String], f: fn(&str) -> std::result::Result<(), Invalid>| v.iter().find_map(|s| f(s).err());
        self.memory
            .and_then(|m| one(checks::memory(m)))
            .or_else(|| self.cpus.and_then(|c| one(checks::cpus(c))))
            .or_else(|| self.cpu_shares.and_then(|s| one(checks::cpu_shares(s))))
            .or_else(|| self.pids.and_then(|p| one(checks::pids(p))))
            .or_else(|| each(&self.cap_add, checks::capability))
            .or_else(|| each(&self.cap_drop, checks::capability))
            .or_else(|| self.tmpfs.iter().find_map(|(t, o)| one(checks::tmpfs(t, o))))
            .or_else(|| self.ulimits.iter().find_map(|u| one(checks::ulimit(&u.name, u.soft, u.hard))))
            .or_else(|| self.shm.and_then(|s| one(checks::shm_size(s))))
            .or_else(|| each(&self.security, checks::security_opt))
            .or_else(|| self.hostname.as_deref().and_then(|h| one(checks::hostname(h))))
            .or_else(|| self.extra_hosts.iter().find_map(|(h, ip)| one(checks::extra_host(h, ip))))
            .or_else(|| self.stop_signal.as_deref().and_then(|s| one(checks::signal("stop signal", s))))
            .or_else(|| self.platform.as_deref().and_then(|p| one(checks::platform(p))))
    }

    /// The create query's platform (`os/arch[/variant]`), or empty for the daemon's own.
    pub(crate) fn platform(&self) -> String {
        self.platform.clone().unwrap_or_default()
    }

    /// Lays the options onto the body (run after `check`: values are known to fit).
    pub(crate) fn apply(&self, body: &mut ContainerCreateBody) {
        let i64_of = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        if self.hostname.is_some() {
            body.hostname.clone_from(&self.hostname);
        }
        if self.stop_signal.is_some() {
            body.stop_signal = self.stop_signal.as_deref().map(checks::signal_name);
        }
        let hc: &mut HostConfig = body.host_config.get_or_insert_with(Default::default);
        hc.memory = self.memory.map(i64_of).or(hc.memory);
        // f64 to nanoseconds of CPU per second: checked to be within 0.01 and a sane bound.
        #[allow(clippy::cast_possible_truncation)]
        let nano = self.cpus.map(|c| (c * 1e9).round() as i64);
        hc.nano_cpus = nano.or(hc.nano_cpus);
        hc.cpu_shares = self.cpu_shares.map(i64::from).or(hc.cpu_shares);
        hc.pids_limit = self.pids.map(i64::from).or(hc.pids_limit);
        let caps = |v: &[String]| (!v.is_empty()).then(|| v.iter().map(|c| checks::capability_name(c)).collect());
        hc.cap_add = caps(&self.cap_add).or(hc.cap_add.take());
        hc.cap_drop = caps(&self.cap_drop).or(hc.cap_drop.take());
        hc.privileged = self.privileged.or(hc.privileged);
        hc.readonly_rootfs = self.read_only.or(hc.readonly_rootfs);
        if !self.tmpfs.is_empty() {
            hc.tmpfs = Some(self.tmpfs.iter().cloned().collect());
        }
        if !self.ulimits.is_empty() {
            let ulimit = |u: &Ulimit| ResourcesUlimits {
                name: Some(u.name.clone()),
                soft: Some(i64_of(u.soft)),
                hard: Some(i64_of(u.hard)),
            };
            hc.ulimits = Some(self.ulimits.iter().map(ulimit).collect());
        }
        hc.shm_size = self.shm.map(i64_of).or(hc.shm_size);
        if !self.security.is_empty() {
            hc.security_opt = Some(self.security.clone());
        }
        hc.init = self.init.or(hc.init);
        if !self.extra_hosts.is_empty() {
            hc.extra_hosts = Some(self.extra_hosts.iter().map(|(h, ip)| format!("{h}:{ip}")).collect());
        }
    }

    /// Runs the escape hatches, in the order they were given.
    pub(crate) fn run_hooks(&self, body: &mut ContainerCreateBody) {
        for hook in &self.hooks {
            (hook.0)(body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn options_land_where_docker_reads_them() {
        let o = Options {
            memory: Some(64 << 20),
            cpus: Some(0.5),
            cap_add: vec!["cap_net_admin".into()],
            ulimits: vec![Ulimit { name: "nofile".into(), soft: 100, hard: 200 }],
            extra_hosts: vec![("db.internal".into(), "10.1.2.3".into())],
            stop_signal: Some("usr1".into()),
            tmpfs: vec![("/scratch".into(), "size=16m".into())],
            ..Default::default()
        };
        o.check("app").unwrap();
        let mut body = ContainerCreateBody::default();
        o.apply(&mut body);
        assert_eq!(body.stop_signal.as_deref(), Some("SIGUSR1"));
        let hc = body.host_config.unwrap();
        assert_eq!((hc.memory, hc.nano_cpus), (Some(64 << 20), Some(500_000_000)));
        assert_eq!(hc.cap_add, Some(vec!["NET_ADMIN".to_string()]));
        assert_eq!(hc.ulimits.unwrap()[0].hard, Some(200));
        assert_eq!(hc.extra_hosts, Some(vec!["db.internal:10.1.2.3".to_string()]));
        assert_eq!(hc.tmpfs.unwrap()["/scratch"], "size=16m");
        assert_eq!(hc.init, None, "an option not given leaves Docker's default");
    }

    #[test]
    fn the_first_bad_option_is_the_error_and_names_the_container() {
        let o = Options { pids: Some(0), memory: Some(0), ..Default::default() };
        match o.check("worker") {
            Err(Error::InvalidOption { container, option, .. }) => {
                assert_eq!((container.as_str(), option), ("worker", "memory limit"));
            }
            other => panic!("expected InvalidOption, got {other:?}"),
        }
    }
}
