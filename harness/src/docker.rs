//! The process's one Docker client: connected from the defaults (which honour
//! `DOCKER_HOST`), its API version negotiated once, bounded to 5 s when the daemon is down.

use std::time::Duration;

use bollard::Docker;
use tokio::sync::OnceCell;

use crate::error::{Error, Result};

const CONNECT_LIMIT: Duration = Duration::from_secs(5);
/// A daemon that answered its ping is up; its version answer may still be slow (Podman
/// runs `conmon --version` and the OCI runtime for it, seconds under a parallel suite).
const NEGOTIATE_LIMIT: Duration = Duration::from_secs(60);

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
    match tokio::time::timeout(CONNECT_LIMIT, docker.ping()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(unreachable(e.to_string())),
        Err(_) => return Err(unreachable(format!("no answer within {}s", CONNECT_LIMIT.as_secs()))),
    }
    match tokio::time::timeout(NEGOTIATE_LIMIT, docker.negotiate_version()).await {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(_) => Err(unreachable(format!("no version answer within {}s", NEGOTIATE_LIMIT.as_secs()))),
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

/// The address published ports are reached at when the daemon runs on this machine.
pub(crate) const LOOPBACK: &str = "127.0.0.1";

/// Where this host reaches what the daemon publishes: the host of a `tcp://`, `http://` or
/// `https://` `DOCKER_HOST` on another machine, else `127.0.0.1` (a local socket, or a TCP
/// endpoint on this machine's loopback).
///
/// Published ports are bound on the daemon's machine, so a test against a remote daemon
/// has to connect there rather than to its own loopback.
///
/// # Example
/// ```no_run
/// # use docker_harness::ContainerGuard;
/// # async fn f(web: ContainerGuard) -> docker_harness::Result<()> {
/// let port = web.host_port(8080).await?;
/// let url = format!("http://{}/", docker_harness::endpoint(&docker_harness::host_address(), port));
/// # Ok(()) }
/// ```
pub fn host_address() -> String {
    remote_host(std::env::var("DOCKER_HOST").ok().as_deref()).unwrap_or_else(|| LOOPBACK.to_string())
}

/// `host:port`, with an IPv6 host in brackets, for URLs, `Host` headers and messages.
pub fn endpoint(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// True when `DOCKER_HOST` names a daemon on another machine.
pub(crate) fn is_remote() -> bool {
    remote_host(std::env::var("DOCKER_HOST").ok().as_deref()).is_some()
}

/// The host of a `tcp://`, `http://` or `https://` daemon URL, unless it is this machine's
/// loopback (or the unspecified address, which connects to this machine too). Sockets,
/// named pipes and anything unreadable are local: `None`.
pub(crate) fn remote_host(docker_host: Option<&str>) -> Option<String> {
    let (scheme, rest) = docker_host?.trim().split_once("://")?;
    if !["tcp", "http", "https"].iter().any(|s| scheme.eq_ignore_ascii_case(s)) {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split_once(']')?.0,
        None => host_port.split(':').next().unwrap_or_default(),
    };
    let local = host.trim_end_matches('.').eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
    (!host.is_empty() && !local).then(|| host.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tcp_or_http_daemon_on_another_machine_is_reached_at_its_host() {
        let cases = [
            ("tcp://10.0.0.7:2375", "10.0.0.7"),
            ("tcp://docker.example:2376", "docker.example"),
            ("TCP://Docker.Example", "Docker.Example"),
            ("http://build-box:2375/", "build-box"),
            ("https://user@build-box:2376/v1.41?x=1", "build-box"),
            ("tcp://[fd00::5]:2375", "fd00::5"),
            (" tcp://10.0.0.7:2375 ", "10.0.0.7"),
        ];
        for (url, host) in cases {
            assert_eq!(remote_host(Some(url)).as_deref(), Some(host), "{url}");
        }
    }

    #[test]
    fn sockets_pipes_and_this_machines_loopback_are_local() {
        for url in [
            "unix:///var/run/docker.sock",
            "npipe:////./pipe/docker_engine",
            "tcp://127.0.0.1:23750",
            "tcp://127.1.2.3:2375",
            "tcp://localhost:2375",
            "http://LOCALHOST.:2375",
            "tcp://[::1]:2375",
            "tcp://0.0.0.0:2375",
            "tcp://:2375",
            "tcp://[fd00::5",
            "",
            "not a url",
        ] {
            assert_eq!(remote_host(Some(url)), None, "{url}");
        }
        assert_eq!(remote_host(None), None);
    }

    #[test]
    fn an_ipv6_endpoint_is_bracketed() {
        assert_eq!(endpoint("10.0.0.7", 80), "10.0.0.7:80");
        assert_eq!(endpoint("fd00::5", 80), "[fd00::5]:80");
    }
}
