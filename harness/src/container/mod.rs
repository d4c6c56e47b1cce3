//! Containers: what to create (a spec), the handle that does everything with one (exec,
//! logs, inspect, ports, waits, copies), and the guard that adds the duty to remove it.
//!
//! Inside, each concern is a leaf that takes a client, an ID and a name (`exec`, `logs`,
//! `files`, `ports`, `wait`); `handle` puts them behind one type on the harness runtime;
//! `create` is the one launch path, for a test's containers and shared ones alike. This
//! module re-exports the leaves but uses nothing of `create`, which builds on it.

pub(crate) mod create;
mod exec;
mod files;
mod handle;
mod logs;
mod ports;
mod wait;

use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bollard::models::HealthConfig;

pub use exec::ExecOutput;
pub use files::FileSource;
pub use handle::Container;
pub use logs::{LogStream, Logs};
pub use wait::{WaitFor, DEFAULT_WAIT_TIMEOUT};

use crate::guard::{guard_methods, Armed};
use crate::naming;
use crate::network::NetworkGuard;
use crate::resource::{Kind, Resource};
use crate::scope::Scope;
use crate::volume::VolumeGuard;

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
}

fn strings(items: impl IntoIterator<Item = impl Into<String>>) -> Vec<String> {
    items.into_iter().map(Into::into).collect()
}

/// A container that is removed (with force, and with its anonymous volumes) when the guard
/// drops. Everything else it does is its [`Container`] handle's, which it dereferences to:
/// `guard.exec(..)`, `guard.logs()`, `guard.host_port(..)`.
///
/// # Resource leaking
/// As for [`crate::TestContext`]: a killed process cannot run Drop; the sweep covers it.
pub struct ContainerGuard {
    container: Container,
    armed: Armed,
    logical: String,
}

impl fmt::Debug for ContainerGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContainerGuard")
            .field("name", &self.container.name())
            .field("id", &self.container.id())
            .finish()
    }
}

impl Deref for ContainerGuard {
    type Target = Container;

    fn deref(&self) -> &Container {
        &self.container
    }
}

impl ContainerGuard {
    /// Tracks a created container in its scope and arms removal on Drop.
    fn new(container: Container, scope: Arc<Scope>, logical: &str) -> ContainerGuard {
        let res = Resource::new(Kind::Container, container.id(), container.name());
        ContainerGuard { armed: Armed::new(res, scope), container, logical: logical.to_string() }
    }

    /// A handle to the container that can be cloned and moved into other tasks; it does not
    /// keep the container alive (the guard, or the context's teardown, removes it).
    pub fn container(&self) -> &Container {
        &self.container
    }

    guard_methods!("container", " (with force, and with its anonymous volumes)", "");
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
