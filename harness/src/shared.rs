//! Session-shared containers: one expensive container (a database, a broker) created once
//! per session and used by every test of it, whatever the runner.
//!
//! A `static` cannot do this: under nextest every test is its own process, so a static is
//! created once per test, and since statics are never dropped each one leaks. Here the
//! first process creates the container under the session's cross-process lock and records
//! its ID; the others attach to it. It belongs to no test: no context tracks it, the signal
//! handler skips it, and it carries the session's runner (nextest, or the test binary under
//! `cargo test`) in `docker-harness.runner`, so the sweep removes it once the session is
//! over and never while it runs (see [`crate::labels::classify`]).

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{CreateContainerOptions, InspectContainerOptions, StartContainerOptions};
use bollard::Docker;
use serde::{Deserialize, Serialize};

use crate::container::{ContainerSpec, ExecOutput, Logs};
use crate::error::{is_404, Error, Result};
use crate::files::FileSource;
use crate::labels::{self, Owner};
use crate::resource::Kind;
use crate::wait::WaitFor;
use crate::{blocking, config, docker, files, image, naming, ports, resource, session, sweep, wait};

/// How long a process waits for another one to finish creating the shared container
/// (including its wait strategies).
const CREATE_LIMIT: Duration = Duration::from_secs(300);

/// How often a vanished shared container is recreated within one session before giving up.
const MAX_GENERATIONS: u32 = 5;

/// A container shared by every test of the session. It is not removed when this handle
/// drops, nor by any test's teardown.
///
/// # Resource leaking
/// It lives until its session is over: the next session's pre-test check (or
/// `docker-harness reap`) removes it once the session's runner process is gone, and
/// `docker-harness clean --session ID` removes it at once. A `make` target that runs a
/// suite can end with that `clean`, as `make e2e-shared` does.
#[derive(Clone)]
pub struct SharedContainer {
    key: String,
    id: String,
    name: String,
}

impl fmt::Debug for SharedContainer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedContainer")
            .field("key", &self.key)
            .field("name", &self.name)
            .field("id", &self.id)
            .finish()
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
    if !valid_key(key) {
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
            Some(i) => i.to_string(),
            None => image::session_image_checked().await?.reference,
        };
        for generation in 0..MAX_GENERATIONS {
            let once_key = format!("shared-{key}-{generation}");
            let record: Record = session::once(sess.state_dir(), &once_key, CREATE_LIMIT, || {
                create(&docker, &key, &spec, image.clone(), sess.id())
            })
            .await?;
            match docker.inspect_container(&record.id, None::<InspectContainerOptions>).await {
                Ok(_) => return Ok(SharedContainer { key: key.clone(), id: record.id, name: record.name }),
                // Removed behind the session's back: the next generation recreates it.
                Err(e) if is_404(&e) => continue,
                Err(e) => return Err(Error::docker(format!("inspect shared container {}", record.name), e)),
            }
        }
        Err(Error::Timeout {
            what: format!(
                "keep the shared container {key:?} in existence ({MAX_GENERATIONS} were created and vanished)"
            ),
            after: Duration::ZERO,
        })
    })
    .await
}

fn valid_key(key: &str) -> bool {
    (1..=64).contains(&key.len()) && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

async fn create(docker: &Docker, key: &str, spec: &ContainerSpec, image: String, session_id: &str) -> Result<Record> {
    let ttl = config::settings()?.ttl;
    let task = uuid::Uuid::new_v4().to_string();
    let name = naming::resource_name(&naming::prefix(&format!("shared-{key}"), &task), spec.logical_name());
    let labels = shared_labels(key, session_id, &task, ttl, &runner());
    let body = crate::container::create_body(spec, image, labels);
    let opts = CreateContainerOptions { name: Some(name.clone()), platform: String::new() };
    let created = docker
        .create_container(Some(opts), body)
        .await
        .map_err(|e| Error::docker(format!("create shared container {name}"), e))?;
    let ready = async {
        files::upload_all(docker, &created.id, &name, &spec.files).await?;
        docker
            .start_container(&created.id, None::<StartContainerOptions>)
            .await
            .map_err(|e| Error::docker(format!("start shared container {name}"), e))?;
        wait::apply(docker, &created.id, &name, &spec.waits).await
    };
    if let Err(e) = ready.await {
        // A half-made shared container would be attached to by every other test.
        if let Err(rm) = resource::remove(docker, Kind::Container, &created.id, &name).await {
            eprintln!("docker-harness: could not remove the failed shared container {name}: {rm}");
        }
        return Err(e);
    }
    Ok(Record { id: created.id, name })
}

pub(crate) fn shared_labels(
    key: &str,
    session_id: &str,
    task: &str,
    ttl: Duration,
    runner: &Owner,
) -> HashMap<String, String> {
    let mut l = labels::for_test(session_id, &format!("shared:{key}"), task, ttl);
    l.insert(labels::SHARED.to_string(), key.to_string());
    l.insert(labels::RUNNER.to_string(), runner.to_string());
    l
}

/// The process whose life is the session's: under nextest (one process per test) the
/// nextest process above this one; under `cargo test` this test binary itself.
pub(crate) fn runner() -> Owner {
    let me = Owner::current().clone();
    if std::env::var_os("NEXTEST_RUN_ID").is_none() {
        return me;
    }
    let found = nextest_ancestor(me.pid).or_else(|| labels::parent_of(me.pid));
    match found.and_then(|pid| Some(Owner { host: me.host.clone(), pid, start: labels::process_start(pid)? })) {
        Some(o) => o,
        None => me,
    }
}

/// The nearest ancestor named like nextest. A process a test spawned (which inherits
/// NEXTEST_RUN_ID) then still finds the run's nextest rather than its own parent test.
fn nextest_ancestor(mut pid: u32) -> Option<u32> {
    for _ in 0..16 {
        pid = labels::parent_of(pid).filter(|p| *p > 1)?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.contains("nextest") {
            return Some(pid);
        }
    }
    None
}

impl SharedContainer {
    /// The key it is shared under (its `docker-harness.shared` label).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The Docker ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The Docker name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a command in it, as [`crate::ContainerGuard::exec`].
    ///
    /// # Errors
    /// As [`crate::ContainerGuard::exec`].
    pub async fn exec<I, S>(&self, cmd: I) -> Result<ExecOutput>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let cmd: Vec<String> = cmd.into_iter().map(Into::into).collect();
        let (id, name) = (self.id.clone(), self.name.clone());
        blocking::run(async move { crate::container::exec(&id, &name, cmd).await }).await
    }

    /// Everything it has logged so far (every test's use of it included).
    ///
    /// # Errors
    /// [`Error::Docker`] when Docker refuses.
    pub async fn logs(&self) -> Result<Logs> {
        let (id, name) = (self.id.clone(), self.name.clone());
        blocking::run(async move { wait::read_logs(&docker::client().await?, &id, &name).await }).await
    }

    /// Docker's full description of it.
    ///
    /// # Errors
    /// [`Error::Docker`] when Docker refuses.
    pub async fn inspect(&self) -> Result<ContainerInspectResponse> {
        let (id, name) = (self.id.clone(), self.name.clone());
        blocking::run(async move {
            docker::client()
                .await?
                .inspect_container(&id, None::<InspectContainerOptions>)
                .await
                .map_err(|e| Error::docker(format!("inspect shared container {name}"), e))
        })
        .await
    }

    /// The host port of a published container port, as [`crate::ContainerGuard::host_port`].
    ///
    /// # Errors
    /// As [`crate::ContainerGuard::host_port`].
    pub async fn host_port(&self, container_port: u16) -> Result<u16> {
        ports::host_port_of(&self.id, &self.name, container_port).await
    }

    /// Waits for a condition, as [`crate::ContainerGuard::wait_for`].
    ///
    /// # Errors
    /// As [`crate::ContainerGuard::wait_for`].
    pub async fn wait_for(&self, wait: WaitFor) -> Result<()> {
        wait::wait_for_id(&self.id, &self.name, wait).await
    }

    /// Copies bytes or a host path in, as [`crate::ContainerGuard::copy_in`].
    ///
    /// # Errors
    /// As [`crate::ContainerGuard::copy_in`].
    pub async fn copy_in(
        &self,
        source: impl Into<FileSource>,
        target: impl Into<String>,
        mode: Option<u32>,
    ) -> Result<()> {
        files::copy_in_id(&self.id, &self.name, files::FileSpec::new(source.into(), target.into(), mode)).await
    }

    /// One file's contents, as [`crate::ContainerGuard::copy_out_bytes`].
    ///
    /// # Errors
    /// As [`crate::ContainerGuard::copy_out_bytes`].
    pub async fn copy_out_bytes(&self, path: impl Into<String>) -> Result<Vec<u8>> {
        files::copy_out_bytes_id(&self.id, &self.name, path.into()).await
    }

    /// A file or directory copied out, as [`crate::ContainerGuard::copy_out_to`].
    ///
    /// # Errors
    /// As [`crate::ContainerGuard::copy_out_to`].
    pub async fn copy_out_to(&self, path: impl Into<String>, local_dir: impl Into<PathBuf>) -> Result<PathBuf> {
        files::copy_out_to_id(&self.id, &self.name, path.into(), local_dir.into()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_names_a_file_and_a_label_can_hold() {
        assert!(valid_key("postgres-16"));
        assert!(valid_key("kv.v2_a"));
        assert!(!valid_key(""));
        assert!(!valid_key("../x"));
        assert!(!valid_key("a b"));
        assert!(!valid_key(&"k".repeat(65)));
    }

    #[test]
    fn shared_labels_carry_the_session_the_key_and_the_runner() {
        let runner = Owner { host: "h".into(), pid: 3, start: 300 };
        let l = shared_labels("db", "s1", "t1", Duration::from_secs(60), &runner);
        assert_eq!(l[labels::SHARED], "db");
        assert_eq!(l[labels::RUNNER], "h/3/300");
        assert_eq!(l[labels::SESSION], "s1");
        assert_eq!(l[labels::MANAGED], "true");
        assert!(l.contains_key(labels::OWNER) && l.contains_key(labels::EXPIRES));
    }

    #[test]
    fn outside_nextest_the_runner_is_this_process() {
        if std::env::var_os("NEXTEST_RUN_ID").is_none() {
            assert_eq!(&runner(), Owner::current());
        } else {
            let r = runner();
            assert_ne!(r.pid, std::process::id());
            assert_eq!(labels::process_start(r.pid), Some(r.start));
        }
    }
}
