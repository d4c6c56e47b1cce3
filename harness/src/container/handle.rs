//! `Container`: one handle to a container, whoever owns it (a test's guard, or the session
//! for a shared container). Every method runs on the harness runtime, so it works from any
//! runtime a test uses.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;

use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{InspectContainerOptions, StartContainerOptions};
use bollard::Docker;

use super::exec::{self, ExecOutput};
use super::files::{self, FileSource, FileSpec};
use super::logs::{self, Logs};
use super::ports;
use super::wait::{poll, WaitFor};
use crate::error::{Error, Result};
use crate::network::NetworkGuard;
use crate::{blocking, docker};

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

    /// Starts a container created with [`ContainerSpec::created_only`](crate::ContainerSpec::created_only).
    ///
    /// # Errors
    /// [`Error::Docker`] when Docker refuses.
    pub async fn start(&self) -> Result<()> {
        self.call(|d, c| async move {
            d.start_container(&c.id, None::<StartContainerOptions>)
                .await
                .map_err(|e| Error::docker(format!("start container {}", c.name), e))
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
        self.call(|d, c| async move { exec::exec(&d, &c.id, &c.name, cmd).await }).await
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
    /// [`Error::Docker`] when Docker refuses (404 once it is gone).
    pub async fn inspect(&self) -> Result<ContainerInspectResponse> {
        self.call(|d, c| async move {
            d.inspect_container(&c.id, None::<InspectContainerOptions>)
                .await
                .map_err(|e| Error::docker(format!("inspect container {}", c.name), e))
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
