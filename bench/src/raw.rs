//! The same Docker work as the harness does, as plain bollard calls: the baseline every
//! harness figure is divided by. Each call here mirrors one the harness makes (same image,
//! same create body shape, force-remove with `v=true`, inspect until 404, the same exec
//! polling schedule), so that a ratio above 1 is the harness's own cost and nothing else.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, ExecConfig, NetworkCreateRequest, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, InspectNetworkOptions, ListContainersOptions, ListNetworksOptions,
    ListVolumesOptions, RemoveContainerOptions, RemoveVolumeOptions, StartContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use docker_harness::labels;
use futures_util::StreamExt;

/// Carried by everything the bench creates, raw or through the harness, so that its final
/// sweep finds exactly its own resources. Outside the reserved `docker-harness.` namespace.
pub(crate) const RUN_LABEL: &str = "docker-harness-bench.run";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Container,
    Network,
    Volume,
}

/// A client of its own (not the harness's), negotiated down as the harness does.
pub(crate) async fn connect() -> Result<Docker> {
    let docker = Docker::connect_with_defaults().context("connect to the Docker daemon")?;
    docker.negotiate_version().await.context("negotiate the Docker API version")
}

pub(crate) fn is_404(e: &bollard::errors::Error) -> bool {
    status_of(e) == Some(404)
}

pub(crate) fn status_of(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Raw {
    pub(crate) docker: Docker,
    pub(crate) image: String,
    run_id: String,
    session: String,
}

impl Raw {
    pub(crate) fn new(docker: Docker, image: String, run_id: String, session: String) -> Raw {
        Raw { docker, image, run_id, session }
    }

    /// The harness's full label set with this run's values. Without an owner label of a
    /// live process, another session's pre-test check on this shared daemon would take these
    /// for orphans and remove them mid-measurement.
    fn labels(&self, test: &str) -> HashMap<String, String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        HashMap::from([
            (labels::MANAGED.to_string(), "true".to_string()),
            (labels::SESSION.to_string(), self.session.clone()),
            (labels::TEST.to_string(), test.to_string()),
            (labels::TASK.to_string(), uuid::Uuid::new_v4().to_string()),
            (labels::OWNER.to_string(), labels::Owner::current().to_string()),
            (labels::EXPIRES.to_string(), (now + 3600).to_string()),
            (RUN_LABEL.to_string(), self.run_id.clone()),
        ])
    }

    fn name(&self, what: &str) -> String {
        format!("dhb-raw-{}-{what}-{}", self.run_id, &uuid::Uuid::new_v4().simple().to_string()[..8])
    }

    /// Creates and starts a `sleep 3600` container; returns its ID.
    pub(crate) async fn container_started(&self, test: &str) -> Result<String> {
        let name = self.name("c");
        let body = ContainerCreateBody {
            image: Some(self.image.clone()),
            cmd: Some(vec!["sleep".into(), "3600".into()]),
            labels: Some(self.labels(test)),
            host_config: Some(Default::default()),
            ..Default::default()
        };
        let opts = CreateContainerOptions { name: Some(name.clone()), platform: String::new() };
        let id = self.docker.create_container(Some(opts), body).await.with_context(|| format!("create {name}"))?.id;
        if let Err(e) = self.docker.start_container(&id, None::<StartContainerOptions>).await {
            let _ = self.remove_confirmed(Kind::Container, &id).await;
            return Err(e).with_context(|| format!("start {name}"));
        }
        Ok(id)
    }

    /// Runs `true` attached and reads its exit code, polling as the harness's exec does.
    pub(crate) async fn exec_true(&self, id: &str) -> Result<i64> {
        let config = ExecConfig {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(vec!["true".into()]),
            ..Default::default()
        };
        let created = self.docker.create_exec(id, config).await.context("create exec")?;
        let opts = StartExecOptions { detach: false, tty: false, output_capacity: None };
        if let StartExecResults::Attached { mut output, .. } =
            self.docker.start_exec(&created.id, Some(opts)).await.context("start exec")?
        {
            while let Some(chunk) = output.next().await {
                chunk.context("read exec output")?;
            }
        }
        for pause in [0u64, 5, 10, 20, 50, 100, 200, 400] {
            tokio::time::sleep(Duration::from_millis(pause)).await;
            let info = self.docker.inspect_exec(&created.id).await.context("inspect exec")?;
            if info.running != Some(true) {
                return Ok(info.exit_code.unwrap_or(-1));
            }
        }
        bail!("exec `true` in {id} still running after 785 ms")
    }

    /// Removes and waits for the 404, with the harness's retry rules for 409/403/500.
    pub(crate) async fn remove_confirmed(&self, kind: Kind, id: &str) -> Result<()> {
        let started = Instant::now();
        let settle = Duration::from_secs(10);
        let mut pause = Duration::from_millis(20);
        loop {
            let attempt = match kind {
                Kind::Container => {
                    let opts = RemoveContainerOptions { force: true, v: true, link: false };
                    self.docker.remove_container(id, Some(opts)).await
                }
                Kind::Network => self.docker.remove_network(id).await,
                Kind::Volume => self.docker.remove_volume(id, Some(RemoveVolumeOptions { force: false })).await,
            };
            match attempt {
                Ok(()) => {}
                Err(e) if is_404(&e) => {}
                Err(e) if matches!(status_of(&e), Some(409 | 403 | 500)) && started.elapsed() < settle => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                    continue;
                }
                Err(e) => return Err(e).with_context(|| format!("remove {kind:?} {id}")),
            }
            let seen = match kind {
                Kind::Container => self.docker.inspect_container(id, None::<InspectContainerOptions>).await.map(drop),
                Kind::Network => self.docker.inspect_network(id, None::<InspectNetworkOptions>).await.map(drop),
                Kind::Volume => self.docker.inspect_volume(id).await.map(drop),
            };
            match seen {
                Err(e) if is_404(&e) => return Ok(()),
                Err(e) => return Err(e).with_context(|| format!("inspect {kind:?} {id}")),
                Ok(()) if started.elapsed() >= settle => {
                    bail!("{kind:?} {id} still there after {settle:?}")
                }
                Ok(()) => tokio::time::sleep(pause).await,
            }
        }
    }

    /// Create, start, exec `true`, force-remove, inspect until 404.
    pub(crate) async fn lifecycle(&self) -> Result<Duration> {
        let t = Instant::now();
        let id = self.container_started("bench-raw-lifecycle").await?;
        let code = match self.exec_true(&id).await {
            Ok(code) => code,
            Err(e) => {
                let _ = self.remove_confirmed(Kind::Container, &id).await;
                return Err(e);
            }
        };
        self.remove_confirmed(Kind::Container, &id).await?;
        let d = t.elapsed();
        if code != 0 {
            bail!("`true` exited with {code} in a raw container");
        }
        Ok(d)
    }

    /// The docker-CLI way to tear a container down: stop with the daemon's default timeout,
    /// then remove and wait for the 404.
    pub(crate) async fn stop_then_remove(&self, id: &str) -> Result<()> {
        self.docker.stop_container(id, None::<StopContainerOptions>).await.context("stop container")?;
        self.remove_confirmed(Kind::Container, id).await
    }

    pub(crate) async fn network_cycle(&self) -> Result<Duration> {
        let t = Instant::now();
        let req = NetworkCreateRequest {
            name: self.name("n"),
            driver: Some("bridge".into()),
            internal: Some(false),
            labels: Some(self.labels("bench-raw-network")),
            ..Default::default()
        };
        let id = self.docker.create_network(req).await.context("create network")?.id;
        self.remove_confirmed(Kind::Network, &id).await?;
        Ok(t.elapsed())
    }

    pub(crate) async fn volume_cycle(&self) -> Result<Duration> {
        let t = Instant::now();
        let req = VolumeCreateRequest {
            name: Some(self.name("v")),
            driver: Some("local".into()),
            labels: Some(self.labels("bench-raw-volume")),
            ..Default::default()
        };
        let name = self.docker.create_volume(req).await.context("create volume")?.name;
        self.remove_confirmed(Kind::Volume, &name).await?;
        Ok(t.elapsed())
    }

    /// What a context's first resource costs before it is created: the label-filtered
    /// listing of all three kinds that the harness's per-context leftover check makes.
    pub(crate) async fn context_check_list(&self, test: &str) -> Result<()> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{}=true", labels::MANAGED), format!("{}={test}", labels::TEST)],
        )]);
        let opts = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        self.docker.list_containers(Some(opts)).await.context("list containers")?;
        Ok(())
    }

    /// Every resource carrying this run's label, of each kind.
    pub(crate) async fn own(&self) -> Result<Vec<(Kind, String)>> {
        self.labelled(format!("{RUN_LABEL}={}", self.run_id)).await
    }

    /// Every resource carrying this label filter (`key` or `key=value`), of each kind.
    pub(crate) async fn labelled(&self, filter: String) -> Result<Vec<(Kind, String)>> {
        let filters = HashMap::from([("label".to_string(), vec![filter])]);
        let mut out = Vec::new();
        let cs = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters.clone()),
                ..Default::default()
            }))
            .await?;
        out.extend(cs.into_iter().filter_map(|c| c.id).map(|id| (Kind::Container, id)));
        let ns = self.docker.list_networks(Some(ListNetworksOptions { filters: Some(filters.clone()) })).await?;
        out.extend(ns.into_iter().filter_map(|n| n.id).map(|id| (Kind::Network, id)));
        let vs = self.docker.list_volumes(Some(ListVolumesOptions { filters: Some(filters) })).await?;
        out.extend(vs.volumes.unwrap_or_default().into_iter().map(|v| (Kind::Volume, v.name)));
        Ok(out)
    }
}
