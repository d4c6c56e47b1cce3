//! Session-shared containers: one expensive container (a database, a broker) created once
//! per session and used by every test of it, whatever the runner.
//!
//! A `static` cannot do this: under nextest every test is its own process, so a static is
//! created once per test, and since statics are never dropped each one leaks. Here the
//! first process creates the container under the session's cross-process lock and records
//! its ID; the others attach to it. It belongs to no test: no context tracks it, the signal
//! handler skips it, and it carries the session's runner (nextest, or the test binary under
//! `cargo test`) in `docker-harness.runner`, so the sweep removes it once the session is
//! over and never while it runs.

mod build;

pub use self::build::session_build;

use std::ops::Deref;
use std::time::Duration;

use bollard::query_parameters::InspectContainerOptions;
use bollard::Docker;
use serde::{Deserialize, Serialize};

use crate::container::{self, Container, ContainerSpec};
use crate::engine::is_404;
use crate::error::{Error, Result};
use crate::resource::Kind;
use crate::{blocking, config, docker, image, labels, naming, owner, removal, session, sweep};

/// How long a process waits for another one to finish creating the shared container
/// (including its wait strategies).
const CREATE_LIMIT: Duration = Duration::from_secs(300);

/// How often a vanished shared container is recreated within one session before giving up.
const MAX_GENERATIONS: u32 = 5;

/// A container shared by every test of the session. It is not removed when this handle
/// drops, nor by any test's teardown. Everything it does is its [`Container`] handle's,
/// which it dereferences to: `db.exec(..)`, `db.logs()`, `db.host_port(..)`.
///
/// # Resource leaking
/// It lives until its session is over: the session's watcher removes it once the session's
/// runner process is gone (as the last resort, the next session's pre-test check or
/// `docker-harness reap` does), and `docker-harness clean --session ID` removes it at once.
/// A script that runs a suite can end with that `clean`.
#[derive(Debug, Clone)]
pub struct SharedContainer {
    key: String,
    container: Container,
}

impl Deref for SharedContainer {
    type Target = Container;

    fn deref(&self) -> &Container {
        &self.container
    }
}

impl SharedContainer {
    /// The key it is shared under (its `docker-harness.shared` label).
    pub fn key(&self) -> &str {
        &self.key
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    id: String,
    name: String,
}

/// The session's shared container for `key`, created from `spec` by the first caller of the
/// session (in any process) and attached to by the others. Its wait strategies
/// ([`ContainerSpec::with_wait`]) have held by the time any caller gets it. If it vanished
/// (someone removed it), the next caller creates it again under the lock.
///
/// Later callers' specs are not compared with the first one's: use one key per setup.
/// Per-test state inside it goes under a name of the test's own, e.g. a directory, schema or
/// key prefix named with `ctx.prefix()`.
///
/// # Errors
/// [`Error::InvalidName`] for a key that is not 1 to 64 letters, digits, `-`, `_` or `.`;
/// otherwise as creating a container and waiting for it.
///
/// # Example
/// ```no_run
/// use docker_harness::{shared_container, ContainerSpec, TestContext, WaitFor};
///
/// # async fn f() -> anyhow::Result<()> {
/// let db = shared_container(
///     "kv",
///     ContainerSpec::new("kv").with_cmd(["sleep", "3600"]).with_wait(WaitFor::exec(["true"])),
/// )
/// .await?;
/// let ctx = TestContext::new()?;
/// db.exec(["mkdir", "-p", &format!("/data/{}", ctx.prefix())]).await?;
/// # Ok(()) }
/// ```
pub async fn shared_container(key: &str, spec: ContainerSpec) -> Result<SharedContainer> {
    if !naming::is_plain_key(key) {
        return Err(Error::InvalidName {
            what: "shared container key",
            value: key.to_string(),
            reason: "use 1 to 64 letters, digits, '-', '_' or '.'",
        });
    }
    let key = key.to_string();
    blocking::run(async move {
        let sess = session::current()?;
        // The session's check first: a crashed earlier session's shared containers go now.
        sweep::preflight().await?;
        let docker = docker::client().await?;
        let image = match spec.image() {
            Some(i) => image::ensure(i).await?,
            None => image::session_image_resolved().await?,
        };
        for generation in 0..MAX_GENERATIONS {
            let once_key = format!("shared-{key}-{generation}");
            let record: Record = session::once(sess.state_dir(), &once_key, CREATE_LIMIT, || {
                create(&docker, &key, &spec, image.clone(), sess.id())
            })
            .await?;
            match crate::retry::bounded(docker.inspect_container(&record.id, None::<InspectContainerOptions>)).await {
                Ok(_) => {
                    return Ok(SharedContainer { key: key.clone(), container: Container::new(record.id, record.name) })
                }
                // Removed behind the session's back: the next generation recreates it.
                Err(e) if is_404(&e) => {}
                Err(e) => return Err(Error::docker(format!("inspect shared container {}", record.name), e)),
            }
        }
        Err(Error::SharedContainerVanished { key: key.clone(), times: MAX_GENERATIONS })
    })
    .await
}

async fn create(
    docker: &Docker,
    key: &str,
    spec: &ContainerSpec,
    image: image::SessionImage,
    session_id: &str,
) -> Result<Record> {
    let ttl = config::settings()?.ttl;
    let task = uuid::Uuid::new_v4().to_string();
    let name = naming::resource_name(&naming::prefix(&format!("shared-{key}"), &task), spec.logical_name());
    let labels = labels::for_shared(key, session_id, &task, ttl, &owner::runner());
    let c = container::create::create(docker, spec, &image, name, labels).await?;
    if let Err(e) = container::create::ready(docker, &c, spec).await {
        // A half-made shared container would be attached to by every other test.
        if let Err(rm) = removal::remove(docker, Kind::Container, c.id(), c.name()).await {
            eprintln!("docker-harness: could not remove the failed shared container {}: {rm}", c.name());
        }
        return Err(e);
    }
    Ok(Record { id: c.id().to_string(), name: c.name().to_string() })
}
