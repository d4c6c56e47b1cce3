//! Networks: a spec, its guard, and creation.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use bollard::models::NetworkCreateRequest;

use crate::error::{Error, Result};
use crate::guard::{guard_methods, Armed};
use crate::resource::{Kind, Resource};
use crate::scope::Scope;
use crate::{blocking, docker, engine, gate};

/// What network to create. The Docker name is derived from the logical name and the
/// context's prefix.
#[must_use]
#[derive(Debug, Clone)]
pub struct NetworkSpec {
    logical: String,
    internal: bool,
    driver: Option<String>,
    labels: HashMap<String, String>,
}

impl NetworkSpec {
    /// A bridge network with this logical name.
    pub fn new(logical: impl Into<String>) -> Self {
        NetworkSpec { logical: logical.into(), internal: false, driver: None, labels: HashMap::new() }
    }

    /// An internal network: no route to the outside.
    pub fn with_internal(mut self, internal: bool) -> Self {
        self.internal = internal;
        self
    }

    /// Another driver than `bridge`.
    pub fn with_driver(mut self, driver: impl Into<String>) -> Self {
        self.driver = Some(driver.into());
        self
    }

    /// An extra label (the harness's own labels are always added).
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
}

/// A network that is removed when the guard drops.
///
/// # Resource leaking
/// As for [`crate::TestContext`]: a killed process cannot run Drop; the sweep covers it.
pub struct NetworkGuard {
    armed: Armed,
    logical: String,
}

impl fmt::Debug for NetworkGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkGuard").field("name", &self.armed.res.name).field("id", &self.armed.res.id).finish()
    }
}

impl NetworkGuard {
    /// The Docker ID.
    pub fn id(&self) -> &str {
        &self.armed.res.id
    }

    /// The Docker name.
    pub fn name(&self) -> &str {
        &self.armed.res.name
    }

    guard_methods!("network", "", " (e.g. a container not created by this context is still attached)");
}

pub(crate) async fn create(scope: Arc<Scope>, spec: NetworkSpec) -> Result<NetworkGuard> {
    blocking::run(async move {
        let name = scope.name_for(&spec.logical);
        let req = NetworkCreateRequest {
            name: name.clone(),
            driver: Some(spec.driver.unwrap_or_else(|| "bridge".into())),
            internal: Some(spec.internal),
            labels: Some(scope.labels_for_new(&spec.labels)),
            ..Default::default()
        };
        let docker = docker::client().await?;
        let _pass = gate::enter(&format!("create network {name}"))?;
        let created = engine::past_interface_race(|| docker.create_network(req.clone()))
            .await
            .map_err(|e| Error::docker(format!("create network {name}"), e))?;
        let res = Resource::new(Kind::Network, created.id, name);
        Ok(NetworkGuard { armed: Armed::new(res, scope), logical: spec.logical })
    })
    .await
}
