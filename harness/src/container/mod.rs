//! Containers: what to create (a spec), the handle that does everything with one (exec,
//! logs, inspect, ports, waits, copies), and the guard that adds the duty to remove it.
//!
//! Inside, each concern is a leaf that takes a client, an ID and a name (`exec`, `logs`,
//! `files`, `ports`, `wait`, `lifecycle`); `handle` puts them behind one type on the harness
//! runtime; `options` (with `checks`) holds the options a spec sets on Docker's create
//! body; `guard` adds the removal duty; `create` is the one launch path, for a test's
//! containers and shared ones alike. This module re-exports the leaves but uses nothing of
//! `create`, which builds on it.

mod checks;
pub(crate) mod create;
mod exec;
mod files;
mod guard;
mod follow;
mod handle;
mod lifecycle;
mod logs;
mod options;
mod ports;
mod wait;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HealthConfig};

pub use exec::{ExecOutput, ExecSpec};
pub use files::FileSource;
pub use guard::ContainerGuard;
pub use handle::Container;
pub(crate) use logs::last_words;
pub use logs::{LogLine, LogStream, Logs};
pub(crate) use ports::bind_ip;
pub use wait::{WaitFor, DEFAULT_WAIT_TIMEOUT};

use crate::naming;
use crate::network::NetworkGuard;
use crate::volume::VolumeGuard;
use options::{Hook, Options, Ulimit};

/// What container to create. Without [`with_image`](Self::with_image) it runs the session
/// image (`alpine:3.19.1` unless `DOCKER_HARNESS_IMAGE` says otherwise).
///
/// ```
/// use docker_harness::ContainerSpec;
/// let spec = ContainerSpec::new("worker")
///     .with_cmd(["sleep", "3600"])
///     .with_env("MODE", "test")
///     .with_label("app", "demo");
/// assert_eq!(spec.logical_name(), "worker");
/// ```
#[must_use]
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    logical: String,
    image: Option<String>,
    cmd: Option<Vec<String>>,
    entrypoint: Option<Vec<String>>,
    env: Vec<String>,
    mounts: Vec<(String, String)>,
    network: Option<String>,
    aliases: Vec<String>,
    labels: HashMap<String, String>,
    user: Option<String>,
    workdir: Option<String>,
    start: bool,
    ports: Vec<u16>,
    files: Vec<files::FileSpec>,
    healthcheck: Option<HealthConfig>,
    waits: Vec<WaitFor>,
    options: Options,
    consumers: Vec<follow::Consumer>,
}

impl ContainerSpec {
    /// A container with this logical name, started on creation.
    pub fn new(logical: impl Into<String>) -> Self {
        let logical = logical.into();
        ContainerSpec {
            aliases: vec![naming::sanitize(&logical)].into_iter().filter(|a| !a.is_empty()).collect(),
            logical,
            image: None,
            cmd: None,
            entrypoint: None,
            env: Vec::new(),
            mounts: Vec::new(),
            network: None,
            labels: HashMap::new(),
            user: None,
            workdir: None,
            start: true,
            ports: Vec::new(),
            files: Vec::new(),
            healthcheck: None,
            waits: Vec::new(),
            options: Options::default(),
            consumers: Vec::new(),
        }
    }

    /// The logical name.
    pub fn logical_name(&self) -> &str {
        &self.logical
    }

    pub(crate) fn image(&self) -> Option<&str> {
        self.image.as_deref()
    }

    /// Another image than the session image, resolved as the session image is: pulled if
    /// absent (once per session across processes, under `DOCKER_HARNESS_PULL`, through
    /// `DOCKER_HARNESS_REGISTRY_MIRROR` for Docker Hub references, with the docker CLI's
    /// credentials for private registries), and checked unchanged before each use.
    pub fn with_image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }

    /// The command (replaces the image's `CMD`).
    pub fn with_cmd(mut self, cmd: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.cmd = Some(strings(cmd));
        self
    }

    /// The entrypoint (replaces the image's `ENTRYPOINT`).
    pub fn with_entrypoint(self, entrypoint: impl IntoIterator<Item = impl Into<String>>) -> Self {
        ContainerSpec { entrypoint: Some(strings(entrypoint)), ..self }
    }

    /// An environment variable.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push(format!("{}={}", key.into(), value.into()));
        self
    }

    /// Mounts a volume of the context at `target`.
    pub fn with_volume(self, volume: &VolumeGuard, target: impl Into<String>) -> Self {
        self.with_mount(volume.name(), target)
    }

    /// Mounts a named volume (or an absolute host path) at `target`, as in
    /// `docker run -v SOURCE:TARGET`; a target ending in `:ro` mounts it read-only.
    ///
    /// A named volume that does not exist yet is created by Docker with the test's labels,
    /// so it is found and removed like the test's own volumes (a `-v` bind string would
    /// make it unlabelled, and nothing would ever remove it).
    pub fn with_mount(mut self, source: impl Into<String>, target: impl Into<String>) -> Self {
        self.mounts.push((source.into(), target.into()));
        self
    }

    /// Attaches the container to a network of the context, where peers reach it by its
    /// logical name (a network alias) as well as by its Docker name.
    pub fn with_network(self, network: &NetworkGuard) -> Self {
        self.with_network_named(network.name())
    }

    /// Attaches the container to a network given by name.
    pub fn with_network_named(mut self, network: impl Into<String>) -> Self {
        self.network = Some(network.into());
        self
    }

    /// An extra network alias.
    pub fn with_alias(mut self, alias: impl Into<String>) -> Self {
        self.aliases.push(alias.into());
        self
    }

    /// An extra label (the harness's own labels are always added).
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// The user to run as.
    pub fn with_user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// The working directory.
    pub fn with_workdir(mut self, dir: impl Into<String>) -> Self {
        self.workdir = Some(dir.into());
        self
    }

    /// Creates the container without starting it (start it with [`Container::start`]).
    pub fn created_only(mut self) -> Self {
        self.start = false;
        self
    }

    /// Publishes a TCP port of the container on `127.0.0.1` at a port Docker picks; find
    /// it with [`Container::host_port`]. With a `DOCKER_HOST` on another machine it is
    /// published on that machine's interfaces instead, reached at [`crate::host_address`].
    pub fn with_exposed_port(mut self, container_port: u16) -> Self {
        if !self.ports.contains(&container_port) {
            self.ports.push(container_port);
        }
        self
    }

    /// Copies a file into the container between its creation and its start: bytes (a
    /// `Vec<u8>`, `&[u8]`, `b"…"` or a `String`) or a host path (a file, or a directory copied
    /// whole). `target` is the absolute path it gets in the container; missing parent
    /// directories are created. `mode` applies to a single file (bytes or a host file); a
    /// directory keeps the modes it has on the host.
    pub fn with_file(mut self, source: impl Into<FileSource>, target: impl Into<String>, mode: u32) -> Self {
        self.files.push(files::FileSpec::new(source.into(), target.into(), Some(mode)));
        self
    }

    /// Copies a host file or directory into the container before its start, keeping modes.
    pub fn with_copy(mut self, host_path: impl Into<PathBuf>, target: impl Into<String>) -> Self {
        self.files.push(files::FileSpec::new(FileSource::Path(host_path.into()), target.into(), None));
        self
    }

    /// Waits for this once the container has started; `ctx.container(..)` returns only when
    /// it holds (several calls add up, as [`WaitFor::all`] does). When it fails, the error
    /// is returned and the container is removed.
    pub fn with_wait(mut self, wait: WaitFor) -> Self {
        self.waits.push(wait);
        self
    }

    /// A Docker healthcheck: `cmd` run through the container's shell (`CMD-SHELL`) every
    /// `interval`, each run given at most `interval` too, with `retries` failures in a row
    /// making it unhealthy. Pair it with [`WaitFor::healthy`].
    pub fn with_healthcheck(mut self, cmd: impl Into<String>, interval: Duration, retries: u32) -> Self {
        let nanos = i64::try_from(interval.as_nanos()).unwrap_or(i64::MAX).max(1_000_000);
        self.healthcheck = Some(HealthConfig {
            test: Some(vec!["CMD-SHELL".to_string(), cmd.into()]),
            interval: Some(nanos),
            timeout: Some(nanos),
            retries: Some(i64::from(retries.max(1))),
            start_period: Some(0),
            ..Default::default()
        });
        self
    }

    fn option(mut self, set: impl FnOnce(&mut Options)) -> Self {
        set(&mut self.options);
        self
    }

    /// A memory limit in bytes (`--memory`; at least 6 MiB, as Docker requires).
    pub fn with_memory_limit(self, bytes: u64) -> Self {
        self.option(|o| o.memory = Some(bytes))
    }

    /// A CPU limit in CPUs, e.g. `0.5` (`--cpus`: a CFS quota of that share of each period).
    pub fn with_cpus(self, cpus: f64) -> Self {
        self.option(|o| o.cpus = Some(cpus))
    }

    /// A relative CPU weight, 2 to 262144 (`--cpu-shares`; Docker's default is 1024).
    pub fn with_cpu_shares(self, shares: u32) -> Self {
        self.option(|o| o.cpu_shares = Some(shares))
    }

    /// At most this many processes and threads at once (`--pids-limit`).
    pub fn with_pids_limit(self, limit: u32) -> Self {
        self.option(|o| o.pids = Some(limit))
    }

    /// Adds a capability (`NET_ADMIN` or `CAP_NET_ADMIN`, any case; `ALL` for every one).
    pub fn with_cap_add(self, cap: impl Into<String>) -> Self {
        self.option(|o| o.cap_add.push(cap.into()))
    }

    /// Drops a capability (as [`with_cap_add`](Self::with_cap_add) names them).
    pub fn with_cap_drop(self, cap: impl Into<String>) -> Self {
        self.option(|o| o.cap_drop.push(cap.into()))
    }

    /// Runs the container privileged: every capability, every device (`--privileged`).
    pub fn with_privileged(self, privileged: bool) -> Self {
        self.option(|o| o.privileged = Some(privileged))
    }

    /// Mounts the root filesystem read-only (`--read-only`); pair it with tmpfs mounts.
    pub fn with_read_only_root(self, read_only: bool) -> Self {
        self.option(|o| o.read_only = Some(read_only))
    }

    /// A tmpfs at the absolute path `target`, with mount options such as `size=64m,mode=1777`
    /// (`""` for the defaults), as `--tmpfs target:options`.
    pub fn with_tmpfs(self, target: impl Into<String>, options: impl Into<String>) -> Self {
        self.option(|o| o.tmpfs.push((target.into(), options.into())))
    }

    /// A resource limit by Docker's name for it (`nofile`, `nproc`, `core`, `memlock`, …),
    /// soft and hard (`--ulimit nofile=soft:hard`).
    pub fn with_ulimit(self, name: impl Into<String>, soft: u64, hard: u64) -> Self {
        self.option(|o| o.ulimits.push(Ulimit { name: name.into(), soft, hard }))
    }

    /// The size of `/dev/shm` in bytes (`--shm-size`; Docker's default is 64 MiB).
    pub fn with_shm_size(self, bytes: u64) -> Self {
        self.option(|o| o.shm = Some(bytes))
    }

    /// A security option, e.g. `seccomp=unconfined` or `apparmor=unconfined` (`--security-opt`).
    pub fn with_security_opt(self, opt: impl Into<String>) -> Self {
        self.option(|o| o.security.push(opt.into()))
    }

    /// No process of the container can gain privileges (setuid, file capabilities):
    /// the security option `no-new-privileges`.
    pub fn with_no_new_privileges(self) -> Self {
        self.with_security_opt("no-new-privileges")
    }

    /// Runs an init process as PID 1 (`--init`) that forwards signals and reaps zombies.
    pub fn with_init(self, init: bool) -> Self {
        self.option(|o| o.init = Some(init))
    }

    /// The container's host name (`--hostname`; Docker's default is the short ID).
    pub fn with_hostname(self, hostname: impl Into<String>) -> Self {
        self.option(|o| o.hostname = Some(hostname.into()))
    }

    /// A line `ip host` in the container's `/etc/hosts` (`--add-host host:ip`); `ip` may be
    /// `host-gateway`, the host as the container reaches it.
    pub fn with_extra_host(self, host: impl Into<String>, ip: impl Into<String>) -> Self {
        self.option(|o| o.extra_hosts.push((host.into(), ip.into())))
    }

    /// The signal a stop sends first (`--stop-signal`), e.g. `SIGUSR1`, `INT` or `15`.
    pub fn with_stop_signal(self, signal: impl Into<String>) -> Self {
        self.option(|o| o.stop_signal = Some(signal.into()))
    }

    /// The platform to create the container for (`--platform`, e.g. `linux/arm64`): the
    /// image must be present for it.
    pub fn with_platform(self, platform: impl Into<String>) -> Self {
        self.option(|o| o.platform = Some(platform.into()))
    }

    /// The escape hatch for anything else Docker has: `edit` gets bollard's create body
    /// (and its `host_config`) just before it is sent, after every other option. The
    /// harness's labels and mounts are laid on after it, so it cannot take them away; a
    /// volume mount it adds gets the harness's labels too, and a `Binds` string naming a
    /// volume is refused (Docker would create that volume unlabelled). Several calls run in
    /// order.
    ///
    /// ```
    /// use docker_harness::ContainerSpec;
    /// let spec = ContainerSpec::new("app").with_create_body(|body| {
    ///     let host = body.host_config.get_or_insert_with(Default::default);
    ///     host.oom_score_adj = Some(500);
    /// });
    /// # let _ = spec;
    /// ```
    pub fn with_create_body(self, edit: impl Fn(&mut ContainerCreateBody) + Send + Sync + 'static) -> Self {
        self.option(|o| o.hooks.push(Hook(Arc::new(edit))))
    }
}

fn strings(items: impl IntoIterator<Item = impl Into<String>>) -> Vec<String> {
    items.into_iter().map(Into::into).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_healthcheck_interval_is_given_in_nanoseconds() {
        let spec = ContainerSpec::new("x").with_healthcheck("true", Duration::from_millis(500), 3);
        let h = spec.healthcheck.unwrap();
        assert_eq!(h.interval, Some(500_000_000));
        assert_eq!(h.retries, Some(3));
        assert_eq!(h.test.unwrap()[0], "CMD-SHELL");
    }

    #[test]
    fn a_logical_name_is_also_a_network_alias_and_a_port_is_published_once() {
        let spec = ContainerSpec::new("Web Server").with_exposed_port(80).with_exposed_port(80);
        assert_eq!(spec.aliases, vec!["web-server".to_string()]);
        assert_eq!(spec.ports, vec![80]);
    }
}
