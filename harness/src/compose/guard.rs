//! The guard of a project a compose file brought up: a [`Container`] handle per service,
//! and the duty to remove everything compose created for it, found by label (containers
//! with force, then networks and volumes, each confirmed gone), as for any resource.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::container::Container;
use crate::error::{ComposeError, Error, Result};
use crate::resource::{Kind, Resource};
use crate::scope::Scope;
use crate::{blocking, docker, labels, removal};

/// Compose's own labels, read back from what it created.
const PROJECT: &str = "com.docker.compose.project";
const SERVICE: &str = "com.docker.compose.service";
const NUMBER: &str = "com.docker.compose.container-number";

/// How long Drop may wait for the project to be removed.
const DROP_LIMIT: Duration = Duration::from_secs(30);

/// A compose project brought up by [`TestContext::compose`](crate::TestContext::compose):
/// removed (every container with force, then its networks and volumes, each confirmed
/// gone) when the guard drops, or by [`remove`](Self::remove).
///
/// # Resource leaking
/// As for [`TestContext`](crate::TestContext): a killed process cannot run Drop. Everything
/// compose created carries the test's labels, so the watcher and the next session's check
/// remove it as they remove the test's other resources, and the compose process itself
/// carries the test's process marker, so a killed test's `up` is ended too.
pub struct ComposeGuard {
    logical: String,
    /// The project name as compose uses it (read back from its labels).
    project: String,
    /// The value of the harness's compose label on everything of this project.
    label: String,
    services: BTreeMap<String, Vec<Container>>,
    resources: Vec<Resource>,
    scope: Arc<Scope>,
    armed: bool,
}

impl fmt::Debug for ComposeGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComposeGuard")
            .field("project", &self.project)
            .field("services", &self.services.keys().collect::<Vec<_>>())
            .field("resources", &self.resources.len())
            .finish()
    }
}

impl ComposeGuard {
    /// Tracks what compose created (found by label) in the scope, and arms removal.
    pub(super) fn new(scope: Arc<Scope>, logical: String, label: String, found: Vec<Resource>) -> ComposeGuard {
        let project = found.iter().find_map(|r| r.labels.get(PROJECT).cloned()).unwrap_or_else(|| label.clone());
        let mut services: BTreeMap<String, Vec<(u32, Container)>> = BTreeMap::new();
        for r in found.iter().filter(|r| r.kind == Kind::Container) {
            if let Some(service) = r.labels.get(SERVICE) {
                let n = r.labels.get(NUMBER).and_then(|n| n.parse().ok()).unwrap_or(0);
                services.entry(service.clone()).or_default().push((n, Container::new(r.id.clone(), r.name.clone())));
            }
        }
        let services = services
            .into_iter()
            .map(|(s, mut cs)| {
                cs.sort_by_key(|(n, _)| *n);
                (s, cs.into_iter().map(|(_, c)| c).collect())
            })
            .collect();
        for r in &found {
            scope.track(r.clone());
        }
        ComposeGuard { logical, project, label, services, resources: found, scope, armed: true }
    }

    /// The logical name it was brought up under.
    pub fn logical_name(&self) -> &str {
        &self.logical
    }

    /// The project name compose uses (what its `com.docker.compose.project` labels say):
    /// the test's prefix and the logical name.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// The container of a service (its first, when it is scaled): exec, logs, ports, waits
    /// and copies, as for any container.
    ///
    /// # Errors
    /// [`ComposeError::NoService`](crate::ComposeError::NoService) when the project has no running or created container of
    /// that service.
    ///
    /// # Example
    /// ```no_run
    /// # async fn f(app: docker_harness::ComposeGuard) -> docker_harness::Result<()> {
    /// let web = app.service("web")?;
    /// let port = web.host_port(8080).await?;
    /// let out = app.service("client")?.exec(["wget", "-q", "-O", "-", "http://web:8080/"]).await?;
    /// # Ok(()) }
    /// ```
    pub fn service(&self, name: &str) -> Result<&Container> {
        self.services.get(name).and_then(|cs| cs.first()).ok_or_else(|| {
            Error::Compose(ComposeError::NoService {
                project: self.project.clone(),
                service: name.to_string(),
                known: self.services.keys().cloned().collect(),
            })
        })
    }

    /// Every container of a service, in compose's numbering (empty for an unknown one).
    pub fn containers(&self, service: &str) -> &[Container] {
        self.services.get(service).map_or(&[], Vec::as_slice)
    }

    /// The names of the services that have a container.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.services.keys().map(String::as_str)
    }

    /// Everything compose created for the project: containers, networks and volumes.
    pub fn resources(&self) -> &[Resource] {
        &self.resources
    }

    /// Removes the project now (containers with force, then networks and volumes, each
    /// confirmed gone, whatever carries its labels) and disarms Drop, whatever the answer:
    /// what could not be removed is left to the context's teardown.
    ///
    /// # Errors
    /// [`Error::Cleanup`] listing what is still there and why.
    pub async fn remove(mut self) -> Result<()> {
        self.armed = false;
        blocking::run(remove_all(self.scope.clone(), self.label.clone(), self.resources.clone())).await
    }

    /// Leaves the project on the daemon; returns its name. Neither this guard nor the
    /// context removes it (the sweeps do once this process is gone, as for any kept resource).
    pub fn keep(mut self) -> String {
        self.armed = false;
        for r in &self.resources {
            self.scope.untrack(&r.id);
        }
        self.project.clone()
    }

    /// Hands removal to the context's teardown instead of this guard's Drop.
    pub fn into_context(mut self) {
        self.armed = false;
    }
}

/// Removes what the guard knew of and whatever else carries the project's labels, in
/// dependency order, and tells the scope what is gone.
async fn remove_all(scope: Arc<Scope>, label: String, mut items: Vec<Resource>) -> Result<()> {
    let docker = docker::client().await?;
    let filters = [format!("{}={}", labels::TASK, scope.task_id), format!("{}={label}", labels::COMPOSE)];
    for r in removal::list_labelled(&docker, &filters).await? {
        if !items.iter().any(|i| i.id == r.id) {
            items.push(r);
        }
    }
    let failures = removal::remove_in_order(&docker, &items).await;
    for r in items.iter().filter(|r| !removal::failed_to_remove(&failures, r)) {
        scope.untrack(&r.id);
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::Cleanup(failures))
    }
}

impl Drop for ComposeGuard {
    fn drop(&mut self) {
        if !self.armed || self.scope.keeping_now() {
            return;
        }
        let work = remove_all(self.scope.clone(), self.label.clone(), self.resources.clone());
        match blocking::wait(work, DROP_LIMIT) {
            Some(Ok(())) => {}
            Some(Err(Error::Cleanup(failures))) => {
                for f in failures {
                    let (kind, name, project) = (f.kind, f.name, &self.project);
                    eprintln!("docker-harness: could not remove {kind} {name} of {project}: {}", f.error);
                }
            }
            Some(Err(e)) => eprintln!("docker-harness: could not remove compose project {}: {e}", self.project),
            None => eprintln!(
                "docker-harness: removing compose project {} did not finish within {}s; \
                 the context retries at teardown",
                self.project,
                DROP_LIMIT.as_secs()
            ),
        }
    }
}
