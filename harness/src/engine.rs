//! Which engine answers the Docker API: Docker itself, or Podman's Docker-compatible
//! service. Podman answers a few things differently (status codes, states bollard cannot
//! read, races in network creation, tags, copies into volumes), and every one of those
//! differences is absorbed here, so the rest of the crate is written against Docker's API.

use std::future::Future;
use std::time::Duration;

use bollard::models::SystemVersion;
use tokio::sync::OnceCell;

use crate::error::{request_timeout, DaemonError, Error, Result};
use crate::{blocking, docker};

type ApiResult<T> = std::result::Result<T, bollard::errors::Error>;

/// The engine behind the Docker API the harness talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Engine {
    /// Docker's own daemon (dockerd).
    Docker,
    /// Podman's Docker-compatible API (`podman system service`).
    Podman,
}

impl Engine {
    /// `docker` or `podman`.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Podman => "podman",
        }
    }

    /// Tells the engine from its version answer: Podman names itself in its components
    /// ("Podman Engine"); its `Platform.Name` is only the OS (e.g. `linux/amd64/debian-12`).
    pub(crate) fn from_version(v: &SystemVersion) -> Engine {
        let says_podman = |s: &str| s.to_ascii_lowercase().contains("podman");
        let in_components = v.components.iter().flatten().any(|c| says_podman(&c.name));
        let in_platform = v.platform.as_ref().is_some_and(|p| says_podman(&p.name));
        if in_components || in_platform {
            Engine::Podman
        } else {
            Engine::Docker
        }
    }
}

impl Engine {
    /// Whether Docker's copy API writes into a *created* (never started) container's volume
    /// mounts. Podman mounts a container's volumes only while it runs: a copy into a created
    /// one lands in its own filesystem, under the volume's mount point.
    pub(crate) fn copies_into_created_mounts(self) -> bool {
        self == Engine::Docker
    }

    /// The repository to tag a mirrored Hub image under. Podman takes a short repository
    /// name for one its local image already answers to (it matches the mirror's tag by its
    /// last path parts), answers 201 and tags nothing; untagging the mirror's reference
    /// would then delete the image. The fully qualified Hub name is tagged for real.
    pub(crate) fn hub_tag_repository(self, repo: &str) -> String {
        match self {
            Engine::Podman => hub_qualified(repo),
            Engine::Docker => repo.to_string(),
        }
    }
}

/// A Docker Hub repository written out in full: `alpine` is `docker.io/library/alpine`,
/// `someone/tool` is `docker.io/someone/tool`. Only called for references that are mirrored,
/// which name no registry of their own.
fn hub_qualified(repo: &str) -> String {
    let repo = repo.strip_prefix("docker.io/").or_else(|| repo.strip_prefix("index.docker.io/")).unwrap_or(repo);
    if repo.contains('/') {
        format!("docker.io/{repo}")
    } else {
        format!("docker.io/library/{repo}")
    }
}

/// The status code of a failed call, with Podman's 500s read as what Docker answers for
/// the same thing.
pub(crate) fn status_of(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code: 500, message } => Some(podman_status(message)),
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// True when the daemon answered "no such resource".
pub(crate) fn is_404(e: &bollard::errors::Error) -> bool {
    status_of(e) == Some(404)
}

/// Podman's Docker-compatible API answers 500 where Docker answers 404 (a container gone
/// mid-removal: "no such container") or 409 (a name already in use, a volume in use). Its
/// messages say which; any other 500 stays a 500.
fn podman_status(message: &str) -> u16 {
    let m = message.to_ascii_lowercase();
    // Not "no such network": "no such network interface" is another failure altogether.
    if m.contains("no such container") || m.contains("no such volume") {
        404
    } else if ["already in use", "already exists", "is being used", "in use by"].iter().any(|n| m.contains(n)) {
        409
    } else {
        500
    }
}

impl Error {
    /// A failed call, said with what it was doing. One that got no answer within the
    /// request timeout is a stalled daemon, whatever the call.
    pub(crate) fn docker(action: impl Into<String>, source: bollard::errors::Error) -> Self {
        let action = action.into();
        match source {
            bollard::errors::Error::RequestTimeoutError => {
                Error::Daemon(DaemonError::Stalled { action, after: request_timeout(), retries: 0 })
            }
            source => Error::Docker { action, source },
        }
    }

    /// The Docker status code of a failed API call, if this is one (Podman's 500s that
    /// mean 404 or 409 read as those).
    pub fn status_code(&self) -> Option<u16> {
        match self {
            Error::Docker { source, .. } => status_of(source),
            _ => None,
        }
    }

    /// True when Docker answered 404: the resource does not exist (or no longer does).
    pub fn is_not_found(&self) -> bool {
        self.status_code() == Some(404)
    }

    /// True when Docker answered 409: a name is taken or the resource is in use (Podman's
    /// 500 saying the same counts too).
    pub fn is_conflict(&self) -> bool {
        self.status_code() == Some(409)
    }
}

/// Runs a container inspect or list again while Podman reports a container that has
/// exited but is not yet cleaned up as `stopped`, a state the Docker API does not have and
/// bollard cannot read: it is `exited` within moments (bounded: about 2 s).
pub(crate) async fn past_stopped<T, F, Fut>(mut call: F) -> ApiResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ApiResult<T>>,
{
    let mut pause = Duration::from_millis(20);
    loop {
        match call().await {
            Err(e) if e.to_string().contains("unknown variant `stopped`") && pause < Duration::from_secs(2) => {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            r => return r,
        }
    }
}

/// Runs a network create again (bounded: 5 attempts) when Podman failed it with "no such
/// network interface": it picks a free subnet by reading every host interface's
/// addresses, and a veth removed meanwhile (another test's teardown) fails that read.
pub(crate) async fn past_interface_race<T, F, Fut>(mut call: F) -> ApiResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ApiResult<T>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Err(e) if attempt < 5 && e.to_string().contains("no such network interface") => {
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                attempt += 1;
            }
            r => return r,
        }
    }
}

static ENGINE: OnceCell<Engine> = OnceCell::const_new();

/// The engine, asked once per process. Must be called on the harness runtime.
pub(crate) async fn current() -> Result<Engine> {
    ENGINE
        .get_or_try_init(|| async {
            let d = docker::client().await?;
            docker::calls::note_as("engine", "version", "start");
            // Bounded here, body included: the retry module, which bounds the other calls, sits above.
            let v = tokio::time::timeout(request_timeout(), d.version())
                .await
                .unwrap_or(Err(bollard::errors::Error::RequestTimeoutError))
                .map_err(|e| Error::docker("read the daemon's version", e))?;
            Ok(Engine::from_version(&v))
        })
        .await
        .copied()
}

/// The engine behind `DOCKER_HOST` (or the default socket): Docker, or Podman.
///
/// Tests that assert what only one engine does (an exit code, an event name) branch on it.
///
/// # Errors
/// [`Error::DaemonUnreachable`] when the daemon does not answer.
///
/// # Example
/// ```no_run
/// # async fn f() -> docker_harness::Result<()> {
/// use docker_harness::Engine;
/// // A command that does not exist: Docker answers 126, Podman 127.
/// let not_found = match docker_harness::engine().await? {
///     Engine::Podman => 127,
///     _ => 126,
/// };
/// # Ok(()) }
/// ```
pub async fn engine() -> Result<Engine> {
    blocking::run(current()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{SystemVersionComponents, SystemVersionPlatform};

    fn version(platform: &str, components: &[&str]) -> SystemVersion {
        SystemVersion {
            platform: Some(SystemVersionPlatform { name: platform.to_string() }),
            components: Some(
                components
                    .iter()
                    .map(|n| SystemVersionComponents { name: n.to_string(), version: "1".into(), details: None })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn podman_is_told_by_its_engine_component() {
        let v = version("linux/amd64/debian-12", &["Podman Engine", "Conmon", "OCI Runtime (runc)"]);
        assert_eq!(Engine::from_version(&v), Engine::Podman);
    }

    fn server(status_code: u16, message: &str) -> bollard::errors::Error {
        bollard::errors::Error::DockerResponseServerError { status_code, message: message.into() }
    }

    #[test]
    fn podmans_500s_read_as_dockers_conflicts_and_absences() {
        // Podman 4.3's answers, verbatim.
        let taken = "container create: creating container storage: the container name \"x\" is already in \
                     use by ffe3. You have to remove that container to be able to reuse that name: that name \
                     is already in use";
        assert_eq!(status_of(&server(500, taken)), Some(409));
        assert_eq!(
            status_of(&server(500, "\"n\" has associated containers with it: network is being used")),
            Some(409)
        );
        assert_eq!(status_of(&server(500, "network name n already used: network already exists")), Some(409));
        assert_eq!(status_of(&server(500, "container abc does not exist in database: no such container")), Some(404));
        assert!(Error::docker("create container x", server(500, taken)).is_conflict());
    }

    #[test]
    fn other_500s_and_other_codes_are_left_alone() {
        assert_eq!(status_of(&server(500, "route ip+net: no such network interface")), Some(500));
        assert_eq!(status_of(&server(409, "Conflict. The container name is already in use")), Some(409));
        assert_eq!(status_of(&server(404, "No such container: x")), Some(404));
    }

    #[test]
    fn hub_repositories_are_written_out_in_full_for_podman() {
        assert_eq!(
            Engine::Podman.hub_tag_repository("docker-harness-standin"),
            "docker.io/library/docker-harness-standin"
        );
        assert_eq!(Engine::Podman.hub_tag_repository("docker.io/library/alpine"), "docker.io/library/alpine");
        assert_eq!(Engine::Podman.hub_tag_repository("someone/tool"), "docker.io/someone/tool");
        assert_eq!(Engine::Docker.hub_tag_repository("alpine"), "alpine");
    }

    #[tokio::test]
    async fn a_stopped_state_is_asked_again_and_anything_else_returned_at_once() {
        let mut calls = 0;
        let r = past_stopped(|| {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Err(server(200, "unknown variant `stopped`, expected one of `created`, `running`"))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(r.unwrap(), 3);
        let mut calls = 0;
        let r: ApiResult<()> = past_stopped(|| {
            calls += 1;
            async { Err(server(404, "No such container: x")) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls, 1);
    }

    #[test]
    fn docker_is_everything_else() {
        let v = version("Docker Engine - Community", &["Engine", "containerd", "runc", "docker-init"]);
        assert_eq!(Engine::from_version(&v), Engine::Docker);
        assert_eq!(Engine::from_version(&SystemVersion::default()), Engine::Docker);
    }
}
