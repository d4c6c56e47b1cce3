//! Containers: a spec, its guard, creation, exec and logs.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointSettings, ExecConfig, HostConfig, NetworkingConfig,
};
use bollard::query_parameters::{CreateContainerOptions, InspectContainerOptions, LogsOptions};
use futures_util::StreamExt;

use crate::context::Inner;
use crate::error::{Error, Result};
use crate::guard::Armed;
use crate::network::NetworkGuard;
use crate::resource::{Kind, Resource};
use crate::volume::VolumeGuard;
use crate::{blocking, docker, naming};

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
    mounts: Vec<String>,
    network: Option<String>,
    aliases: Vec<String>,
    labels: HashMap<String, String>,
    user: Option<String>,
    workdir: Option<String>,
    start: bool,
    // Set by the builders in `ports`, `files` and `wait`, which own those features.
    pub(crate) ports: Vec<u16>,
    pub(crate) files: Vec<crate::files::FileSpec>,
    pub(crate) healthcheck: Option<bollard::models::HealthConfig>,
    pub(crate) waits: Vec<crate::wait::WaitFor>,
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

    /// Another image than the session image.
    pub fn with_image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }

    /// The command (replaces the image's `CMD`).
    pub fn with_cmd<I, S>(mut self, cmd: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.cmd = Some(cmd.into_iter().map(Into::into).collect());
        self
    }

    /// The entrypoint (replaces the image's `ENTRYPOINT`).
    pub fn with_entrypoint<I, S>(mut self, entrypoint: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.entrypoint = Some(entrypoint.into_iter().map(Into::into).collect());
        self
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

    /// Mounts a named volume (or a host path) at `target`, as in `docker run -v SOURCE:TARGET`.
    pub fn with_mount(mut self, source: impl Into<String>, target: impl Into<String>) -> Self {
        self.mounts.push(format!("{}:{}", source.into(), target.into()));
        self
    }

    /// Attaches the container to a network of the context, where peers reach it by its
    /// logical name (a network alias) as well as by its Docker name.
    pub fn with_network(mut self, network: &NetworkGuard) -> Self {
        self.network = Some(network.name().to_string());
        self
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

    /// Creates the container without starting it (start it with [`ContainerGuard::start`]).
    pub fn created_only(mut self) -> Self {
        self.start = false;
        self
    }
}

/// What a command run with [`ContainerGuard::exec`] printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Standard output, lossily decoded as UTF-8.
    pub stdout: String,
    /// Standard error, lossily decoded as UTF-8.
    pub stderr: String,
    /// The exit code.
    pub exit_code: i64,
}

impl ExecOutput {
    /// True when the command exited with 0.
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }
}

/// A container's logs so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Logs {
    /// What it wrote to standard output.
    pub stdout: String,
    /// What it wrote to standard error.
    pub stderr: String,
}

/// A container that is removed (with force, and with its anonymous volumes) when the guard
/// drops.
///
/// # Resource leaking
/// As for [`crate::TestContext`]: a killed process cannot run Drop; the sweep covers it.
pub struct ContainerGuard {
    pub(crate) armed: Armed,
    logical: String,
}

impl fmt::Debug for ContainerGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContainerGuard").field("name", &self.armed.res.name).field("id", &self.armed.res.id).finish()
    }
}

impl ContainerGuard {
    /// The Docker ID.
    pub fn id(&self) -> &str {
        &self.armed.res.id
    }

    /// The Docker name.
    pub fn name(&self) -> &str {
        &self.armed.res.name
    }

    /// The logical name it was created under.
    pub fn logical_name(&self) -> &str {
        &self.logical
    }

    /// Starts a container created with [`ContainerSpec::created_only`].
    ///
    /// # Errors
    /// [`Error::Docker`] when Docker refuses.
    pub async fn start(&self) -> Result<()> {
        let id = self.id().to_string();
        blocking::run(async move {
            let docker = docker::client().await?;
            docker
                .start_container(&id, None::<bollard::query_parameters::StartContainerOptions>)
                .await
                .map_err(|e| Error::docker(format!("start container {id}"), e))
        })
        .await
    }

    /// Runs a command in the container and captures its output and exit code.
    ///
    /// # Errors
    /// [`Error::Docker`] when the exec cannot be created or started (e.g. the container is
    /// not running). A command that runs and fails is not an error: see `exit_code`.
    pub async fn exec<I, S>(&self, cmd: I) -> Result<ExecOutput>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let cmd: Vec<String> = cmd.into_iter().map(Into::into).collect();
        let (id, name) = (self.id().to_string(), self.name().to_string());
        blocking::run(async move { exec(&id, &name, cmd).await }).await
    }

    /// Reads everything the container has logged so far.
    ///
    /// # Errors
    /// [`Error::Docker`] when Docker refuses.
    pub async fn logs(&self) -> Result<Logs> {
        let (id, name) = (self.id().to_string(), self.name().to_string());
        blocking::run(async move {
            let docker = docker::client().await?;
            let opts = LogsOptions { stdout: true, stderr: true, ..Default::default() };
            let mut stream = docker.logs(&id, Some(opts));
            let mut logs = Logs::default();
            while let Some(chunk) = stream.next().await {
                match chunk.map_err(|e| Error::docker(format!("read the logs of container {name}"), e))? {
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        logs.stdout.push_str(&String::from_utf8_lossy(&message))
                    }
                    LogOutput::StdErr { message } => logs.stderr.push_str(&String::from_utf8_lossy(&message)),
                    LogOutput::StdIn { .. } => {}
                }
            }
            Ok(logs)
        })
        .await
    }

    /// Docker's full description of the container.
    ///
    /// # Errors
    /// [`Error::Docker`] when Docker refuses (404 once it is gone).
    pub async fn inspect(&self) -> Result<ContainerInspectResponse> {
        let (id, name) = (self.id().to_string(), self.name().to_string());
        blocking::run(async move {
            let docker = docker::client().await?;
            docker
                .inspect_container(&id, None::<InspectContainerOptions>)
                .await
                .map_err(|e| Error::docker(format!("inspect container {name}"), e))
        })
        .await
    }

    /// The container's IP address on a network, if it is attached to it.
    ///
    /// # Errors
    /// As [`ContainerGuard::inspect`].
    pub async fn ip_on(&self, network: &NetworkGuard) -> Result<Option<String>> {
        let info = self.inspect().await?;
        Ok(info
            .network_settings
            .and_then(|s| s.networks)
            .and_then(|mut n| n.remove(network.name()))
            .and_then(|e| e.ip_address)
            .filter(|ip| !ip.is_empty()))
    }

    /// Removes the container now (force, with its anonymous volumes) and waits until Docker
    /// confirms it is gone.
    ///
    /// # Errors
    /// [`Error::Docker`] when Docker refuses.
    pub async fn remove(mut self) -> Result<()> {
        self.armed.remove().await
    }

    /// Leaves the container on the daemon; returns its name.
    pub fn keep(mut self) -> String {
        self.armed.keep();
        self.armed.res.name.clone()
    }

    /// Hands removal to the context's teardown instead of this guard's Drop.
    pub fn into_context(mut self) {
        self.armed.disarm();
    }
}

pub(crate) async fn exec(id: &str, name: &str, cmd: Vec<String>) -> Result<ExecOutput> {
    let docker = docker::client().await?;
    let what = || format!("exec {:?} in container {name}", cmd);
    let config = ExecConfig {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(cmd.clone()),
        ..Default::default()
    };
    let created = docker.create_exec(id, config).await.map_err(|e| Error::docker(what(), e))?;
    // Attached, never detached: a detached exec's exit code is not reliably reported.
    let opts = StartExecOptions { detach: false, tty: false, output_capacity: None };
    let mut out = ExecOutput { stdout: String::new(), stderr: String::new(), exit_code: -1 };
    match docker.start_exec(&created.id, Some(opts)).await.map_err(|e| Error::docker(what(), e))? {
        StartExecResults::Attached { mut output, .. } => {
            while let Some(chunk) = output.next().await {
                match chunk.map_err(|e| Error::docker(what(), e))? {
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        out.stdout.push_str(&String::from_utf8_lossy(&message))
                    }
                    LogOutput::StdErr { message } => out.stderr.push_str(&String::from_utf8_lossy(&message)),
                    LogOutput::StdIn { .. } => {}
                }
            }
        }
        StartExecResults::Detached => {}
    }
    // The stream ends when the process's output closes; its exit code may land a moment later.
    for pause in [0u64, 5, 10, 20, 50, 100, 200, 400] {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let info = docker.inspect_exec(&created.id).await.map_err(|e| Error::docker(what(), e))?;
        if info.running != Some(true) {
            out.exit_code = info.exit_code.unwrap_or(-1);
            return Ok(out);
        }
    }
    Err(Error::Timeout { what: what(), after: Duration::from_millis(785) })
}

/// What Docker is asked to create for a spec, with the harness's labels over the spec's own.
pub(crate) fn create_body(
    spec: &ContainerSpec,
    image: String,
    harness_labels: HashMap<String, String>,
) -> ContainerCreateBody {
    let mut labels = spec.labels.clone();
    labels.extend(harness_labels);
    let networking_config = spec.network.as_ref().map(|net| NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            net.clone(),
            EndpointSettings { aliases: Some(spec.aliases.clone()), ..Default::default() },
        )])),
    });
    ContainerCreateBody {
        image: Some(image),
        cmd: spec.cmd.clone(),
        entrypoint: spec.entrypoint.clone(),
        env: (!spec.env.is_empty()).then(|| spec.env.clone()),
        labels: Some(labels),
        user: spec.user.clone(),
        working_dir: spec.workdir.clone(),
        exposed_ports: crate::ports::exposed(&spec.ports),
        healthcheck: spec.healthcheck.clone(),
        host_config: Some(HostConfig {
            binds: (!spec.mounts.is_empty()).then(|| spec.mounts.clone()),
            network_mode: spec.network.clone(),
            port_bindings: crate::ports::bindings(&spec.ports),
            ..Default::default()
        }),
        networking_config,
        ..Default::default()
    }
}

pub(crate) async fn create(ctx: Arc<Inner>, spec: ContainerSpec, image: String) -> Result<ContainerGuard> {
    blocking::run(async move {
        let name = naming::resource_name(&ctx.prefix, &spec.logical);
        let body = create_body(&spec, image, ctx.labels_for_new(&spec.labels));
        let docker = docker::client().await?;
        let opts = CreateContainerOptions { name: Some(name.clone()), platform: String::new() };
        let created = docker
            .create_container(Some(opts), body)
            .await
            .map_err(|e| Error::docker(format!("create container {name}"), e))?;
        let res = Resource { kind: Kind::Container, id: created.id.clone(), name, labels: HashMap::new() };
        // Tracked before it is started, so a failed start still leaves nothing behind.
        let guard = ContainerGuard { armed: Armed::new(res, ctx), logical: spec.logical.clone() };
        crate::files::upload_all(&docker, &created.id, guard.name(), &spec.files).await?;
        if spec.start {
            docker
                .start_container(&created.id, None::<bollard::query_parameters::StartContainerOptions>)
                .await
                .map_err(|e| Error::docker(format!("start container {}", guard.name()), e))?;
            crate::wait::apply(&docker, &created.id, guard.name(), &spec.waits).await?;
        }
        Ok(guard)
    })
    .await
}
