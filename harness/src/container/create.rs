//! The one launch path: create the container, then copy its files in, start it and wait
//! for it. A test's containers and session-shared ones both come this way; they differ only
//! in who owns the container between the two steps.

use std::collections::HashMap;
use std::sync::Arc;

use bollard::models::{ContainerCreateBody, EndpointSettings, HostConfig, NetworkingConfig};
use bollard::query_parameters::{CreateContainerOptions, StartContainerOptions};
use bollard::Docker;

use super::handle::Container;
use super::wait::poll;
use super::{files, ports, ContainerGuard, ContainerSpec};
use crate::error::{Error, Result};
use crate::scope::Scope;
use crate::{blocking, docker};

/// What Docker is asked to create for a spec, with the harness's labels over the spec's own.
fn body(spec: &ContainerSpec, image: String, labels: HashMap<String, String>) -> ContainerCreateBody {
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
        exposed_ports: ports::exposed(&spec.ports),
        healthcheck: spec.healthcheck.clone(),
        host_config: Some(HostConfig {
            binds: (!spec.mounts.is_empty()).then(|| spec.mounts.clone()),
            network_mode: spec.network.clone(),
            port_bindings: ports::bindings(&spec.ports),
            ..Default::default()
        }),
        networking_config,
        ..Default::default()
    }
}

/// Creates the container (not started). `labels` are the harness's, laid over the spec's.
pub(crate) async fn create(
    docker: &Docker,
    spec: &ContainerSpec,
    image: String,
    name: String,
    labels: HashMap<String, String>,
) -> Result<Container> {
    let mut all = spec.labels.clone();
    all.extend(labels);
    let opts = CreateContainerOptions { name: Some(name.clone()), platform: String::new() };
    let created = docker
        .create_container(Some(opts), body(spec, image, all))
        .await
        .map_err(|e| Error::docker(format!("create container {name}"), e))?;
    Ok(Container::new(created.id, name))
}

/// Copies the spec's files in and, unless it is created only, starts the container and
/// waits for its strategies.
pub(crate) async fn ready(docker: &Docker, c: &Container, spec: &ContainerSpec) -> Result<()> {
    files::upload_all(docker, c.id(), c.name(), &spec.files).await?;
    if !spec.start {
        return Ok(());
    }
    docker
        .start_container(c.id(), None::<StartContainerOptions>)
        .await
        .map_err(|e| Error::docker(format!("start container {}", c.name()), e))?;
    poll::apply(docker, c.id(), c.name(), &spec.waits).await
}

/// A test's container: tracked by its scope (and guarded) as soon as Docker has it, so a
/// failed copy, start or wait leaves nothing behind.
pub(crate) async fn for_scope(scope: Arc<Scope>, spec: ContainerSpec, image: String) -> Result<ContainerGuard> {
    blocking::run(async move {
        let docker = docker::client().await?;
        let labels = scope.labels_for_new(&HashMap::new());
        let c = create(&docker, &spec, image, scope.name_for(&spec.logical), labels).await?;
        let guard = ContainerGuard::new(c, scope, &spec.logical);
        ready(&docker, &guard, &spec).await?;
        Ok(guard)
    })
    .await
}
