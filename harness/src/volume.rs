//! Volumes: a spec, its guard, creation, and seeding a new volume from a host directory.
//!
//! Seeding runs a container, so this module builds on `container`, never the other way
//! round: even `ContainerSpec::with_volume` is written here.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bollard::models::VolumeCreateRequest;

use crate::container::{self, ContainerSpec};
use crate::error::{Error, Result};
use crate::guard::{guard_methods, Armed};
use crate::resource::{Kind, Resource};
use crate::scope::Scope;
use crate::{blocking, docker, engine, gate};

/// What volume to create.
#[must_use]
#[derive(Debug, Clone)]
pub struct VolumeSpec {
    logical: String,
    labels: HashMap<String, String>,
    seed: Option<PathBuf>,
}

impl VolumeSpec {
    /// A local volume with this logical name.
    pub fn new(logical: impl Into<String>) -> Self {
        VolumeSpec { logical: logical.into(), labels: HashMap::new(), seed: None }
    }

    /// An extra label (the harness's own labels are always added).
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Fills the new volume with the contents of a host directory (modes kept), e.g. data
    /// files from the test's fixtures. Done through a short-lived container of the session
    /// image that is created but never started, so seeding counts one container against the
    /// test's budget.
    pub fn with_seed(self, host_dir: impl Into<PathBuf>) -> Self {
        VolumeSpec { seed: Some(host_dir.into()), ..self }
    }
}

/// A volume that is removed when the guard drops.
///
/// # Resource leaking
/// As for [`crate::TestContext`]: a killed process cannot run Drop; the sweep covers it.
pub struct VolumeGuard {
    armed: Armed,
    logical: String,
}

impl fmt::Debug for VolumeGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VolumeGuard").field("name", &self.armed.res.name).finish()
    }
}

impl VolumeGuard {
    /// The Docker name (a volume's name is its ID).
    pub fn name(&self) -> &str {
        &self.armed.res.name
    }

    guard_methods!("volume", "", " (e.g. a container still uses it)");
}

impl VolumeSpec {
    /// The host directory to seed the volume from, if any.
    pub(crate) fn seed(&self) -> Option<&Path> {
        self.seed.as_deref()
    }
}

impl ContainerSpec {
    /// Mounts a volume of the context at `target`.
    pub fn with_volume(self, volume: &VolumeGuard, target: impl Into<String>) -> Self {
        self.with_mount(volume.name(), target)
    }
}

pub(crate) async fn create(scope: Arc<Scope>, spec: VolumeSpec) -> Result<VolumeGuard> {
    blocking::run(async move {
        let name = scope.name_for(&spec.logical);
        let req = VolumeCreateRequest {
            name: Some(name.clone()),
            driver: Some("local".into()),
            labels: Some(scope.labels_for_new(&spec.labels)),
            ..Default::default()
        };
        let docker = docker::client().await?;
        let _pass = gate::enter(&format!("create volume {name}"))?;
        let v = docker.create_volume(req).await.map_err(|e| Error::docker(format!("create volume {name}"), e))?;
        let res = Resource::new(Kind::Volume, v.name.clone(), v.name);
        Ok(VolumeGuard { armed: Armed::new(res, scope), logical: spec.logical })
    })
    .await
}

/// Copies a host directory into a new volume through a short-lived container of `image`,
/// one of the scope's (so it counts against the test's budget and goes at its teardown
/// whatever happens here).
pub(crate) async fn seed(scope: Arc<Scope>, volume: &VolumeGuard, dir: &Path, image: String) -> Result<()> {
    let seeder = ContainerSpec::new(format!("{}-seed", volume.logical_name())).with_volume(volume, "/seed");
    if blocking::run(engine::current()).await?.copies_into_created_mounts() {
        // The seeding container never has to run.
        let spec = seeder.with_cmd(["true"]).with_copy(dir, "/seed").created_only();
        container::create::for_scope(scope, spec, image).await?.remove().await
    } else {
        let spec = seeder.with_cmd(["sleep", "3600"]);
        let c = container::create::for_scope(scope, spec, image).await?;
        c.copy_in(dir, "/seed", None).await?;
        c.remove().await
    }
}
