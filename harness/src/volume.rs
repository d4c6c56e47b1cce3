//! Volumes: a spec, its guard, and creation.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use bollard::models::VolumeCreateRequest;

use crate::context::Inner;
use crate::error::{Error, Result};
use crate::guard::Armed;
use crate::resource::{Kind, Resource};
use crate::{blocking, docker, naming};

/// What volume to create.
#[must_use]
#[derive(Debug, Clone)]
pub struct VolumeSpec {
    logical: String,
    labels: HashMap<String, String>,
    pub(crate) seed: Option<std::path::PathBuf>,
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
    pub fn with_seed(mut self, host_dir: impl Into<std::path::PathBuf>) -> Self {
        self.seed = Some(host_dir.into());
        self
    }
}

/// A volume that is removed when the guard drops.
///
/// # Resource leaking
/// As for [`crate::TestContext`]: a killed process cannot run Drop; the sweep covers it.
pub struct VolumeGuard {
    pub(crate) armed: Armed,
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

    /// The logical name it was created under.
    pub fn logical_name(&self) -> &str {
        &self.logical
    }

    /// Removes the volume now, waiting until Docker confirms it is gone.
    ///
    /// # Errors
    /// [`Error::Docker`] when Docker refuses (e.g. a container still uses it).
    pub async fn remove(mut self) -> Result<()> {
        self.armed.remove().await
    }

    /// Leaves the volume on the daemon; returns its name.
    pub fn keep(mut self) -> String {
        self.armed.keep();
        self.armed.res.name.clone()
    }

    /// Hands removal to the context's teardown instead of this guard's Drop.
    pub fn into_context(mut self) {
        self.armed.disarm();
    }
}

pub(crate) async fn create(ctx: Arc<Inner>, spec: VolumeSpec) -> Result<VolumeGuard> {
    blocking::run(async move {
        let name = naming::resource_name(&ctx.prefix, &spec.logical);
        let req = VolumeCreateRequest {
            name: Some(name.clone()),
            driver: Some("local".into()),
            labels: Some(ctx.labels_for_new(&spec.labels)),
            ..Default::default()
        };
        let docker = docker::client().await?;
        let v = docker.create_volume(req).await.map_err(|e| Error::docker(format!("create volume {name}"), e))?;
        let res = Resource { kind: Kind::Volume, id: v.name.clone(), name: v.name, labels: HashMap::new() };
        Ok(VolumeGuard { armed: Armed::new(res, ctx), logical: spec.logical })
    })
    .await
}
