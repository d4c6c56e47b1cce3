//! Networks: a spec, its guard, and creation.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use bollard::models::NetworkCreateRequest;
use bollard::query_parameters::ListNetworksOptions;
use bollard::Docker;

use crate::error::{Error, Result};
use crate::guard::{guard_methods, Armed};
use crate::resource::{Kind, Resource};
use crate::scope::Scope;
use crate::{blocking, docker, engine, gate, removal};

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
    blocking::run(crate::docker::calls::why("create", async move {
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
        let labels = req.labels.clone().unwrap_or_default();
        crate::docker::calls::note("network", "create_network");
        let id = match engine::past_interface_race(|| crate::retry::bounded(docker.create_network(req.clone()))).await {
            Ok(created) => created.id,
            Err(e) => match removal::found_again(&docker, Kind::Network, &name, &labels, &e).await {
                Some(r) => r.id,
                None => return Err(Error::docker(format!("create network {name}"), e)),
            },
        };
        let res = Resource::new(Kind::Network, id, name.clone());
        // Guarded from here on: whatever goes wrong below, the network does not outlive the
        // context.
        let mut guard = NetworkGuard { armed: Armed::new(res, scope), logical: spec.logical };
        let others = match others_named(&docker, &name, guard.id()).await {
            Ok(others) => others,
            Err(e) => {
                // Unchecked, it may be a twin; the context's teardown retries what this misses.
                let _ = guard.armed.remove().await;
                return Err(e);
            }
        };
        if others.is_empty() {
            return Ok(guard);
        }
        let ours = guard.id().to_string();
        let removed = guard.armed.remove().await;
        Err(name_taken(&name, &others, &ours, removed.err()))
    }))
    .await
}

/// The IDs of the networks other than `ours` whose name is exactly `name`. Docker before API
/// 1.44 does not refuse a second network under a name already taken; it creates it and says
/// so only in a warning. Docker's name filter matches substrings, so it only narrows the
/// listing: the names are compared here.
async fn others_named(docker: &Docker, name: &str, ours: &str) -> Result<Vec<String>> {
    let filters = HashMap::from([("name".to_string(), vec![name.to_string()])]);
    let listed = crate::retry::bounded(docker.list_networks(Some(ListNetworksOptions { filters: Some(filters) })))
        .await
        .map_err(|e| Error::docker(format!("list networks named {name}"), e))?;
    Ok(listed
        .into_iter()
        .filter(|n| n.name.as_deref() == Some(name))
        .filter_map(|n| n.id)
        .filter(|id| id != ours)
        .collect())
}

/// The conflict a Docker of API 1.44 or later answers itself: a 409, so that
/// [`Error::is_conflict`] holds whichever daemon it was.
fn name_taken(name: &str, others: &[String], ours: &str, not_removed: Option<Error>) -> Error {
    let short = |id: &str| id.chars().take(12).collect::<String>();
    let others: Vec<String> = others.iter().map(|id| short(id)).collect();
    let fate = match not_removed {
        None => "which the harness removed again".to_string(),
        Some(e) => format!("which could not be removed yet ({e}); the context's teardown removes it"),
    };
    let message = format!(
        "network name {name} is already taken by network {}; this daemon (API before 1.44) created a \
         second network {} under it anyway, {fate}.\n  \
         help: another network of this context (the harness's, or one a program under test made \
         under its prefix) already has this name; give this one another logical name",
        others.join(", "),
        short(ours),
    );
    Error::docker(
        format!("create network {name}"),
        bollard::errors::Error::DockerResponseServerError { status_code: 409, message },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_name_is_a_conflict_that_says_what_became_of_the_twin() {
        let e = name_taken("dh-t-1-net", &["a".repeat(64)], &"b".repeat(64), None);
        assert!(e.is_conflict(), "{e}");
        let text = e.to_string();
        assert!(text.starts_with("failed to create network dh-t-1-net: "), "{text}");
        assert!(text.contains(&format!("taken by network {}", "a".repeat(12))), "{text}");
        assert!(text.contains(&format!("second network {} under it anyway, which the harness removed", "b".repeat(12))));
        assert!(text.contains("\n  help: "), "{text}");
        let left =
            Error::Timeout { what: "see network dh-t-1-net gone".into(), after: std::time::Duration::from_secs(10) };
        let text = name_taken("dh-t-1-net", &["a".into()], "b", Some(left)).to_string();
        assert!(text.contains("could not be removed yet (timed out after 10s"), "{text}");
    }
}
