//! `Container`: one handle to a container, whoever owns it (a test's guard, or the session
//! for a shared container). Every method runs on the harness runtime, so it works from any
//! runtime a test uses.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::InspectContainerOptions;
use bollard::Docker;

use super::exec::{self, ExecOutput, ExecSpec};
use super::files::{self, FileSource, FileSpec};
use super::lifecycle;
use super::logs::{self, Logs};
use super::ports;
use super::wait::{poll, WaitFor};
use crate::error::{Error, Result};
use crate::network::NetworkGuard;
use crate::{blocking, docker, retry};

/// A container: its ID and name, and what a test does with it. Cheap to clone; it does not
/// own the container (a [`ContainerGuard`](crate::ContainerGuard) or the session does).
#[derive(Clone, PartialEq, Eq)]
pub struct Container {
    id: String,
    name: String,
}

impl fmt::Debug for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Container").field("name", &self.name).field("id", &self.id).finish()
    }
}

impl Container {
    pub(crate) fn new(id: String, name: String) -> Container {
        Container { id, name }
    }

    /// The Docker ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The Docker name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `work` with the process's client on the harness runtime.
    async fn call<T, F, Fut>(&self, work: F) -> Result<T>
    where
        F: FnOnce(Docker, Container) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let me = self.clone();
        blocking::run(async move { work(docker::client().await?, me).await }).await
    }

    /// Starts the container: one created with
    /// [`ContainerSpec::created_only`](crate::ContainerSpec::created_only), or one stopped.
    /// Starting a running container does nothing.
    ///
    /// # Errors
    /// [`Error::Docker`] when Docker refuses.
    pub async fn start(&self) -> Result<()> {
        self.call(|d, c| async move { lifecycle::start(&d, &c.id, &c.name).await }).await
    }

    /// Stops the container: its stop signal (SIGTERM unless
    /// [`with_stop_signal`](crate::ContainerSpec::with_stop_signal) said otherwise), then
    /// SIGKILL once `timeout` has passed (whole seconds, rounded up). Stopping a stopped
    /// container does nothing.
    ///
    /// # Errors
    /// [`Error::Docker`] when Docker refuses.
    ///
    /// # Example
    /// ```no_run
    /// # use std::time::Duration;
    /// # use docker_harness::ContainerGuard;
    /// # async fn f(db: ContainerGuard) -> docker_harness::Result<()> {
    /// db.kill("SIGUSR1").await?; // e.g. "reload your configuration"
    /// db.pause().await?;
    /// db.unpause().await?;
    /// db.stop(Duration::from_secs(5)).await?;
    /// db.start().await?;
    /// db.restart(Duration::from_secs(5)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn stop(&self, timeout: Duration) -> Result<()> {
        self.call(move |d, c| async move { lifecycle::stop(&d, &c.id, &c.name, timeout).await }).await
    }

    /// Stops the container as [`stop`](Self::stop) does and starts it again.
    ///
    /// # Errors
    /// [`Error::Docker`] when Docker refuses.
    pub async fn restart(&self, timeout: Duration) -> Result<()> {
        self.call(move |d, c| async move { lifecycle::restart(&d, &c.id, &c.name, timeout).await }).await
    }

    /// Sends a signal to the container's main process: a name (`SIGUSR1`, `usr1`) or a
    /// number. The process may handle it and keep running.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a signal Linux does not have; [`Error::Docker`] when
    /// Docker refuses (409 when the container is not running).
    pub async fn kill(&self, signal: &str) -> Result<()> {
        let signal = signal.to_string();
        self.call(|d, c| async move { lifecycle::kill(&d, &c.id, &c.name, &signal).await }).await
    }

    /// Freezes every process of the container (the cgroup freezer) until
    /// [`unpause`](Self::unpause); execs are refused meanwhile.
    ///
    /// # Errors
    /// [`Error::Docker`] when Docker refuses (e.g. it is not running, or already paused).
    pub async fn pause(&self) -> Result<()> {
        self.call(|d, c| async move { lifecycle::pause(&d, &c.id, &c.name).await }).await
    }

    /// Thaws a paused container.
    ///
    /// # Errors
    /// [`Error::Docker`] when Docker refuses (e.g. it is not paused).
    pub async fn unpause(&self) -> Result<()> {
        self.call(|d, c| async move { lifecycle::unpause(&d, &c.id, &c.name).await }).await
    }

    /// Attaches the (created or running) container to a network of the context, where
    /// peers reach it by its Docker name and by each of `aliases`.
    ///
    /// # Errors
    /// [`Error::Docker`] when Docker refuses (e.g. it is attached already).
    ///
    /// # Example
    /// ```no_run
    /// # use docker_harness::{ContainerGuard, NetworkGuard};
    /// # async fn f(db: ContainerGuard, net: NetworkGuard) -> docker_harness::Result<()> {
    /// db.connect(&net, &["db"]).await?;
    /// db.disconnect(&net).await?; // a network partition, for a resilience test
    /// # Ok(()) }
    /// ```
    pub async fn connect(&self, network: &NetworkGuard, aliases: &[&str]) -> Result<()> {
        self.connect_named(network.name(), aliases).await
    }

    /// Attaches the container to a network given by name, as [`connect`](Self::connect).
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn connect_named(&self, network: &str, aliases: &[&str]) -> Result<()> {
        let network = network.to_string();
        let aliases: Vec<String> = aliases.iter().map(|a| (*a).to_string()).collect();
        self.call(|d, c| async move { lifecycle::connect(&d, &c.id, &c.name, &network, aliases).await }).await
    }

    /// Detaches the container from a network of the context.
    ///
    /// # Errors
    /// [`Error::Docker`] when Docker refuses (e.g. it is not attached).
    pub async fn disconnect(&self, network: &NetworkGuard) -> Result<()> {
        self.disconnect_named(network.name()).await
    }

    /// Detaches the container from a network given by name.
    ///
    /// # Errors
    /// As [`disconnect`](Self::disconnect).
    pub async fn disconnect_named(&self, network: &str) -> Result<()> {
        let network = network.to_string();
        self.call(|d, c| async move { lifecycle::disconnect(&d, &c.id, &c.name, &network).await }).await
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
        self.exec_with(ExecSpec::new(cmd)).await
    }

    /// Runs a command as `spec` says (environment, user, working directory, stdin, timeout)
    /// and captures its output and exit code.
    ///
    /// # Errors
    /// As [`exec`](Self::exec); [`Error::ExecTimeout`] (naming the container and the
    /// command) when it has not ended within the spec's timeout.
    ///
    /// # Example
    /// ```no_run
    /// # use std::time::Duration;
    /// # use docker_harness::{ContainerGuard, Error, ExecSpec};
    /// # async fn f(app: ContainerGuard) -> docker_harness::Result<()> {
    /// let out = app
    ///     .exec_with(ExecSpec::new(["sh", "-c", "wc -l"]).with_stdin(b"a\nb\n".to_vec()).with_user("1000"))
    ///     .await?;
    /// assert_eq!(out.stdout.trim(), "2");
    /// let hung = app.exec_with(ExecSpec::new(["sleep", "60"]).with_timeout(Duration::from_secs(1))).await;
    /// assert!(matches!(hung, Err(Error::ExecTimeout { .. })));
    /// # Ok(()) }
    /// ```
    pub async fn exec_with(&self, spec: ExecSpec) -> Result<ExecOutput> {
        self.call(|d, c| async move { exec::exec(&d, &c.id, &c.name, spec).await }).await
    }

    /// Reads everything the container has logged so far, as it was written.
    ///
    /// # Errors
    /// [`Error::Docker`] when Docker refuses.
    pub async fn logs(&self) -> Result<Logs> {
        self.call(|d, c| async move { logs::read(&d, &c.id, &c.name).await }).await
    }

    /// Docker's full description of the container.
    ///
    /// # Errors
    /// [`Error::Docker`] when Docker refuses (404 once it is gone), after a few tries when
    /// its answer was lost or a 5xx; [`Error::Daemon`] when it did not answer in time.
    pub async fn inspect(&self) -> Result<ContainerInspectResponse> {
        self.call(|d, c| async move {
            let what = || format!("inspect container {}", c.name);
            retry::idempotent(&what, || d.inspect_container(&c.id, None::<InspectContainerOptions>))
                .await
                .map_err(|e| Error::docker(what(), e))
        })
        .await
    }

    /// The container's IP address on a network, if it is attached to it.
    ///
    /// # Errors
    /// As [`Container::inspect`].
    pub async fn ip_on(&self, network: &NetworkGuard) -> Result<Option<String>> {
        let info = self.inspect().await?;
        Ok(info
            .network_settings
            .and_then(|s| s.networks)
            .and_then(|mut n| n.remove(network.name()))
            .and_then(|e| e.ip_address)
            .filter(|ip| !ip.is_empty()))
    }

    /// The host port (on `127.0.0.1`, or on [`crate::host_address`] for a remote daemon)
    /// that a published container port is bound to.
    ///
    /// # Errors
    /// [`Error::PortNotPublished`] when the port was not published with
    /// [`ContainerSpec::with_exposed_port`](crate::ContainerSpec::with_exposed_port) or the
    /// container is not running.
    ///
    /// # Example
    /// ```no_run
    /// # use docker_harness::ContainerGuard;
    /// # async fn f(web: ContainerGuard) -> docker_harness::Result<()> {
    /// let port = web.host_port(8080).await?;
    /// let url = format!("http://127.0.0.1:{port}/");
    /// # Ok(()) }
    /// ```
    pub async fn host_port(&self, container_port: u16) -> Result<u16> {
        self.call(move |d, c| async move { ports::host_port(&d, &c.id, &c.name, container_port).await }).await
    }

    /// Waits until the container meets `wait`.
    ///
    /// # Errors
    /// [`Error::WaitTimeout`] when it does not within the strategy's timeout,
    /// [`Error::ExitedWhileWaiting`] as soon as the container exits (unless the exit is what
    /// was waited for), [`Error::WaitImpossible`] when the strategy cannot succeed (no
    /// healthcheck, port not published, a pattern that does not compile).
    ///
    /// # Example
    /// ```no_run
    /// # use docker_harness::{ContainerGuard, WaitFor};
    /// # async fn f(c: ContainerGuard) -> docker_harness::Result<()> {
    /// c.wait_for(WaitFor::log_line("migrations done")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn wait_for(&self, wait: WaitFor) -> Result<()> {
        self.call(|d, c| async move { poll::apply(&d, &c.id, &c.name, std::slice::from_ref(&wait)).await }).await
    }

    /// Copies bytes or a host file or directory into the (created or running) container at
    /// the absolute path `target`. `mode` is the mode of a single file; `None` keeps the host
    /// file's mode (0644 for bytes). A directory keeps its modes.
    ///
    /// # Errors
    /// [`Error::Copy`] when the source cannot be read or the target is not absolute;
    /// [`Error::Docker`] when Docker refuses.
    ///
    /// # Example
    /// ```no_run
    /// # use docker_harness::ContainerGuard;
    /// # async fn f(c: ContainerGuard) -> docker_harness::Result<()> {
    /// c.copy_in(b"port = 8080\n", "/etc/app/app.toml", Some(0o600)).await?;
    /// let back = c.copy_out_bytes("/etc/app/app.toml").await?;
    /// assert_eq!(back, b"port = 8080\n");
    /// # Ok(()) }
    /// ```
    pub async fn copy_in(
        &self,
        source: impl Into<FileSource>,
        target: impl Into<String>,
        mode: Option<u32>,
    ) -> Result<()> {
        let spec = FileSpec::new(source.into(), target.into(), mode);
        self.call(|d, c| async move { files::upload_all(&d, &c.id, &c.name, std::slice::from_ref(&spec)).await }).await
    }

    /// The contents of one file in the container.
    ///
    /// # Errors
    /// [`Error::Docker`] (404) when there is no such path; [`Error::Copy`] when it is not a
    /// regular file (copy a directory with [`copy_out_to`](Self::copy_out_to)).
    pub async fn copy_out_bytes(&self, path: impl Into<String>) -> Result<Vec<u8>> {
        let path = path.into();
        self.call(|d, c| async move { files::copy_out_bytes(&d, &c.id, &c.name, &path).await }).await
    }

    /// Copies a file or directory of the container into the host directory `local_dir`
    /// (created if missing), keeping modes; returns the path of the copy
    /// (`local_dir/<last component of path>`).
    ///
    /// # Errors
    /// [`Error::Docker`] (404) when there is no such path; [`Error::Copy`] when the local
    /// directory cannot be written.
    pub async fn copy_out_to(&self, path: impl Into<String>, local_dir: impl Into<PathBuf>) -> Result<PathBuf> {
        let (path, dir) = (path.into(), local_dir.into());
        self.call(|d, c| async move { files::copy_out_to(&d, &c.id, &c.name, &path, &dir).await }).await
    }
}
