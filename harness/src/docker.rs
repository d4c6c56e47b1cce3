//! The process's one Docker client: connected from the defaults (which honour
//! `DOCKER_HOST`), its API version negotiated once, bounded to 5 s when the daemon is down.

use std::time::Duration;

use bollard::Docker;
use tokio::sync::OnceCell;

use crate::error::{Error, Result};

const CONNECT_LIMIT: Duration = Duration::from_secs(5);

static CLIENT: OnceCell<Docker> = OnceCell::const_new();

fn describe_host() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .map(|h| format!("DOCKER_HOST={h}"))
        .unwrap_or_else(|| "the default socket unix:///var/run/docker.sock (DOCKER_HOST is unset)".into())
}

async fn connect() -> Result<Docker> {
    let unreachable = |reason: String| Error::DaemonUnreachable { host: describe_host(), reason };
    let docker = Docker::connect_with_defaults().map_err(|e| unreachable(e.to_string()))?;
    // Bollard asks for a newer API than Docker 20.10 speaks (1.41); negotiate down once.
    // Clones share the negotiated version, so every later clone speaks it too.
    match tokio::time::timeout(CONNECT_LIMIT, docker.negotiate_version()).await {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(_) => Err(unreachable(format!("no answer within {}s", CONNECT_LIMIT.as_secs()))),
    }
}

/// The shared client. Must be called on the harness runtime (see `blocking`).
pub(crate) async fn client() -> Result<Docker> {
    CLIENT.get_or_try_init(connect).await.cloned()
}

/// Checks that the daemon answers and returns its version and API version.
///
/// # Errors
/// [`Error::DaemonUnreachable`] within about 5 s when it does not.
///
/// # Example
/// ```no_run
/// # async fn f() -> docker_harness::Result<()> {
/// let (version, api) = docker_harness::daemon_version().await?;
/// println!("Docker {version}, API {api}");
/// # Ok(()) }
/// ```
pub async fn daemon_version() -> Result<(String, String)> {
    crate::blocking::run(async {
        let d = client().await?;
        let v = d.version().await.map_err(|e| Error::docker("read the daemon's version", e))?;
        Ok((v.version.unwrap_or_default(), v.api_version.unwrap_or_default()))
    })
    .await
}
