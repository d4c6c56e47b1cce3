//! Which engine answers the Docker API: Docker itself, or Podman's Docker-compatible
//! service. Podman answers a few things differently (status codes, event names, tags), and
//! the harness absorbs those differences where it has to know which one it talks to.

use bollard::models::SystemVersion;
use tokio::sync::OnceCell;

use crate::error::{Error, Result};
use crate::{blocking, docker};

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

static ENGINE: OnceCell<Engine> = OnceCell::const_new();

/// The engine, asked once per process. Must be called on the harness runtime.
pub(crate) async fn current() -> Result<Engine> {
    ENGINE
        .get_or_try_init(|| async {
            let d = docker::client().await?;
            let v = d.version().await.map_err(|e| Error::docker("read the daemon's version", e))?;
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

    #[test]
    fn docker_is_everything_else() {
        let v = version("Docker Engine - Community", &["Engine", "containerd", "runc", "docker-init"]);
        assert_eq!(Engine::from_version(&v), Engine::Docker);
        assert_eq!(Engine::from_version(&SystemVersion::default()), Engine::Docker);
    }
}
