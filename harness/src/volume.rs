//! Volumes: a spec, its guard, and creation. Seeding a new volume runs a container, so it
//! is `seed`'s, above `container`, which mounts volumes and so builds on this module.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bollard::models::VolumeCreateRequest;

use crate::error::{Error, Result};
use crate::guard::{guard_methods, Armed};
use crate::resource::{Kind, Resource};
use crate::scope::Scope;
use crate::{blocking, docker, gate, removal};

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
    /// image (created but never started on Docker; on Podman it runs while the files go in),
    /// so seeding counts one container against the test's budget.
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

pub(crate) async fn create(scope: Arc<Scope>, spec: VolumeSpec) -> Result<VolumeGuard> {
    blocking::run(crate::docker::calls::why("create", async move {
        let name = scope.name_for(&spec.logical);
        let req = VolumeCreateRequest {
            name: Some(name.clone()),
            driver: Some("local".into()),
            labels: Some(scope.labels_for_new(&spec.labels)),
            ..Default::default()
        };
        let docker = docker::client().await?;
        let _pass = gate::enter(&format!("create volume {name}"))?;
        let labels = req.labels.clone().unwrap_or_default();
        crate::docker::calls::note("volume", "create_volume");
        let made = match crate::retry::bounded(docker.create_volume(req)).await {
            Ok(v) => v.name,
            Err(e) => match removal::found_again(&docker, Kind::Volume, &name, &labels, &e).await {
                Some(r) => r.name,
                None => return Err(Error::docker(format!("create volume {name}"), e)),
            },
        };
        let res = Resource::new(Kind::Volume, made.clone(), made);
        Ok(VolumeGuard { armed: Armed::new(res, scope), logical: spec.logical })
    }))
    .await
}
