//! The process's one Docker client: connected to the daemon the docker CLI would use
//! (`host`: `DOCKER_HOST`, TLS, contexts, the usual sockets), over a socket, TCP, TLS or
//! ssh, its API version negotiated once, bounded to 5 s when the daemon is down (30 s over
//! ssh); every later call waits at most the request timeout for its answer, and the
//! idempotent ones are tried again (`retry`).

pub(crate) mod calls;
mod host;
#[cfg(feature = "ssh")]
mod ssh;

use std::time::Duration;

use bollard::{Docker, API_DEFAULT_VERSION};
use once_cell::sync::Lazy;
use tokio::sync::OnceCell;

use crate::config::ProcessEnv;
use crate::error::{Error, Result};

pub(crate) use self::host::Target;

const CONNECT_LIMIT: Duration = Duration::from_secs(5);
/// Over ssh, the first answer also waits on a key exchange, the login and the far side's
/// docker CLI starting up: seconds when a parallel suite opens many at once (the CLI's own
/// ssh ConnectTimeout is 30 s).
const SSH_CONNECT_LIMIT: Duration = Duration::from_secs(30);
/// A daemon that answered its ping is up; its version answer may still be slow (Podman
/// runs `conmon --version` and the OCI runtime for it, seconds under a parallel suite).
const NEGOTIATE_LIMIT: Duration = Duration::from_secs(60);
/// bollard's request timeout until the settings set it (see `connect`), in seconds.
const REQUEST_TIMEOUT: u64 = 120;

static CLIENT: OnceCell<Docker> = OnceCell::const_new();

/// The daemon this process talks to, found once.
static TARGET: Lazy<std::result::Result<Target, String>> =
    Lazy::new(|| host::locate(&ProcessEnv, cfg!(target_os = "macos"), &|p| p.exists()));

/// The daemon this process talks to, and what chose it.
pub(crate) fn target() -> Result<&'static Target> {
    TARGET.as_ref().map_err(|reason| Error::DaemonUnreachable {
        host: "the current docker context".into(),
        reason: reason.clone(),
        tried: String::new(),
    })
}

fn tried(t: &Target) -> String {
    t.tried.join(", ")
}

/// Why a failed call did not reach the daemon: the error and every cause under it, since
/// bollard's own text stops at "client error (Connect)".
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    text
}

/// A client for the target, not yet asked anything; and, over ssh, where ssh's complaints go.
fn client_for(t: &Target) -> Result<(Docker, SshSaid)> {
    let unreachable = |reason: String| Error::DaemonUnreachable { host: t.source.clone(), reason, tried: tried(t) };
    let scheme = t.host.split_once("://").map(|(s, _)| s.to_ascii_lowercase()).unwrap_or_default();
    if let Some(tls) = &t.tls {
        return tls_client(t, tls).map(|d| (d, None));
    }
    match scheme.as_str() {
        "ssh" => return ssh_client(t),
        "https" => {
            return Err(Error::DaemonTls {
                host: t.source.clone(),
                cert_path: String::new(),
                reason: "an https:// daemon needs DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH (or use tcp://)".into(),
            })
        }
        // Not `connect_with_host`: it would turn to TLS on DOCKER_TLS_VERIFY by itself, for a
        // context's plain tcp:// endpoint too.
        "tcp" | "http" => Docker::connect_with_http(&t.host, REQUEST_TIMEOUT, API_DEFAULT_VERSION),
        _ => Docker::connect_with_host(&t.host),
    }
    .map(|d| (d, None))
    .map_err(|e| unreachable(e.to_string()))
}

#[cfg(feature = "tls")]
fn tls_client(t: &Target, tls: &host::Tls) -> Result<Docker> {
    let files = ["key.pem", "cert.pem", "ca.pem"].map(|f| tls.dir.join(f));
    let bad = |reason: String| Error::DaemonTls {
        host: t.source.clone(),
        cert_path: format!("{} ({})", tls.dir.display(), tls.from),
        reason,
    };
    if let Some(missing) = files.iter().find(|f| !f.is_file()) {
        return Err(bad(format!("{} is missing", missing.display())));
    }
    Docker::connect_with_ssl(&t.host, &files[0], &files[1], &files[2], REQUEST_TIMEOUT, API_DEFAULT_VERSION)
        .map_err(|e| bad(chain(&e)))
}

#[cfg(not(feature = "tls"))]
fn tls_client(t: &Target, _: &host::Tls) -> Result<Docker> {
    Err(Error::DaemonTls {
        host: t.source.clone(),
        cert_path: String::new(),
        reason: "docker-harness was built without its `tls` feature; enable it to reach a daemon over TLS".into(),
    })
}

#[cfg(feature = "ssh")]
fn ssh_client(t: &Target) -> Result<(Docker, SshSaid)> {
    let (docker, said) = ssh::connect(&t.host).map_err(|reason| Error::DaemonUnreachable {
        host: t.source.clone(),
        reason,
        tried: tried(t),
    })?;
    Ok((docker, Some(Box::new(move || said.last()))))
}

#[cfg(not(feature = "ssh"))]
fn ssh_client(t: &Target) -> Result<(Docker, SshSaid)> {
    Err(Error::DaemonUnreachable {
        host: t.source.clone(),
        reason: "docker-harness was built without its `ssh` feature; enable it to reach a daemon over ssh".into(),
        tried: tried(t),
    })
}

/// A TLS failure says so, with where the certificates came from; anything else is a daemon
/// that did not answer.
fn failed(t: &Target, reason: String) -> Error {
    let lower = reason.to_ascii_lowercase();
    // Under TLS 1.3 the server checks the client's certificate after the client's side of
    // the handshake is done: a refusal then reads as a connection closed before it was ready.
    let closed = ["canceled", "not ready", "connection closed", "reset by peer"].iter().any(|w| lower.contains(w));
    match &t.tls {
        Some(tls)
            if ["certificate", "tls", "handshake", "alert", "unknownissuer"].iter().any(|w| lower.contains(w)) =>
        {
            Error::DaemonTls {
                host: t.source.clone(),
                cert_path: format!("{} ({})", tls.dir.display(), tls.from),
                reason,
            }
        }
        Some(tls) if closed => Error::DaemonTls {
            host: t.source.clone(),
            cert_path: format!("{} ({})", tls.dir.display(), tls.from),
            reason: format!(
                "{reason} (the daemon closed the connection just after the TLS handshake: it most likely refused \
                 this client's certificate)"
            ),
        },
        _ => Error::DaemonUnreachable { host: t.source.clone(), reason, tried: tried(t) },
    }
}

/// ssh's complaint, when there is one, after the failure it explains: ssh exits after
/// saying it, and its stderr may be read a moment after the connection is seen closed.
type SshSaid = Option<Box<dyn Fn() -> Option<String> + Send + Sync>>;

async fn with_said(base: String, said: &SshSaid) -> String {
    let Some(f) = said else { return base };
    for _ in 0..20 {
        if let Some(s) = f() {
            return format!("{base}; ssh said: {s}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    base
}

async fn connect() -> Result<Docker> {
    let t = target()?;
    let timeout = crate::config::settings()?.request_timeout;
    crate::error::REQUEST_TIMEOUT_SECS.store(timeout.as_secs(), std::sync::atomic::Ordering::Relaxed);
    let (docker, said) = client_for(t)?;
    let docker = docker.with_timeout(timeout);
    let limit = if said.is_some() { SSH_CONNECT_LIMIT } else { CONNECT_LIMIT };
    // Bollard asks for a newer API than Docker 20.10 speaks (1.41); negotiate down once.
    // Clones share the negotiated version, so every later clone speaks it too.
    calls::note_as("docker", "ping", "start");
    match tokio::time::timeout(limit, docker.ping()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(failed(t, with_said(chain(&e), &said).await)),
        Err(_) => {
            let base = format!("no answer within {}s", limit.as_secs());
            return Err(failed(t, with_said(base, &said).await));
        }
    }
    calls::note_as("docker", "version", "start");
    match tokio::time::timeout(NEGOTIATE_LIMIT, docker.negotiate_version()).await {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(e)) => Err(failed(t, with_said(chain(&e), &said).await)),
        Err(_) => Err(failed(t, format!("no version answer within {}s", NEGOTIATE_LIMIT.as_secs()))),
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
        calls::note("docker", "version");
        // The whole answer within the request timeout, body included (bollard bounds its head).
        let v = tokio::time::timeout(crate::error::request_timeout(), d.version())
            .await
            .unwrap_or(Err(bollard::errors::Error::RequestTimeoutError))
            .map_err(|e| Error::docker("read the daemon's version", e))?;
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
    remote_host(target().ok().map(|t| t.host.as_str())).unwrap_or_else(|| LOOPBACK.to_string())
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
    remote_host(target().ok().map(|t| t.host.as_str())).is_some()
}

/// The host of a `tcp://`, `http://`, `https://` or `ssh://` daemon URL, unless it is this machine's
/// loopback (or the unspecified address, which connects to this machine too). Sockets,
/// named pipes and anything unreadable are local: `None`.
pub(crate) fn remote_host(docker_host: Option<&str>) -> Option<String> {
    let (scheme, rest) = docker_host?.trim().split_once("://")?;
    if !["tcp", "http", "https", "ssh"].iter().any(|s| scheme.eq_ignore_ascii_case(s)) {
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
    fn a_tcp_http_or_ssh_daemon_on_another_machine_is_reached_at_its_host() {
        let cases = [
            ("tcp://10.0.0.7:2375", "10.0.0.7"),
            ("tcp://docker.example:2376", "docker.example"),
            ("TCP://Docker.Example", "Docker.Example"),
            ("http://build-box:2375/", "build-box"),
            ("https://user@build-box:2376/v1.41?x=1", "build-box"),
            ("tcp://[fd00::5]:2375", "fd00::5"),
            (" tcp://10.0.0.7:2375 ", "10.0.0.7"),
            ("ssh://ci@build-box", "build-box"),
            ("ssh://ci@build-box:2222", "build-box"),
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
            "ssh://root@127.0.0.1:23850",
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
