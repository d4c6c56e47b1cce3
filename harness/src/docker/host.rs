//! Which daemon to talk to, found as the docker CLI finds it: `DOCKER_HOST` (with
//! `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH` for TLS), else the current docker context
//! (`DOCKER_CONTEXT`, else `currentContext` in the CLI's config), else the first socket
//! that exists of the default one, rootless Docker's and, on macOS, those of Docker
//! Desktop, colima, OrbStack and Podman machine. Pure: the environment and "does this path
//! exist" come in as arguments, so every rule is unit-tested with fakes.

use std::path::{Path, PathBuf};

use crate::config::Env;
use crate::dockercfg::{self, contexts};

/// The socket every engine's default is.
pub(crate) const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// The daemon chosen, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// `unix:///…`, `tcp://…`, `ssh://…` and so on.
    pub(crate) host: String,
    /// What chose it, for messages: `DOCKER_HOST=…`, `docker context "colima" (…)`, ….
    pub(crate) source: String,
    /// TLS towards it, when asked for.
    pub(crate) tls: Option<Tls>,
    /// What was tried before it, for the message when it does not answer.
    pub(crate) tried: Vec<String>,
}

/// TLS files: `ca.pem` (what signs the daemon's certificate), `cert.pem` and `key.pem`
/// (this client's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tls {
    /// The directory holding the three files.
    pub(crate) dir: PathBuf,
    /// Where the directory came from: `DOCKER_CERT_PATH`, the config directory, a context.
    pub(crate) from: String,
}

/// The daemon the CLI would use. `macos` adds the sockets only macOS tools make.
///
/// # Errors
/// A message when a docker context is named but cannot be read (the CLI refuses to run
/// then too).
pub(crate) fn locate(env: &dyn Env, macos: bool, exists: &dyn Fn(&Path) -> bool) -> Result<Target, String> {
    if let Some(host) = env.var("DOCKER_HOST") {
        let host = host.trim().to_string();
        let tls = (env.var("DOCKER_TLS_VERIFY").is_some() && is_tcp(&host)).then(|| cert_dir(env));
        return Ok(Target { source: format!("DOCKER_HOST={host}"), host, tls, tried: Vec::new() });
    }
    let mut tried = vec!["DOCKER_HOST (unset)".to_string()];
    match contexts::current(env)? {
        Some(ctx) => {
            if ctx.skip_tls_verify {
                eprintln!(
                    "docker-harness: warning: docker context {:?} says SkipTLSVerify; the harness verifies the daemon's certificate all the same",
                    ctx.name
                );
            }
            let tls = ctx.tls_dir.clone().map(|dir| Tls { dir, from: format!("docker context {:?}", ctx.name) });
            let source = format!("docker context {:?} ({}, {})", ctx.name, ctx.chosen_by, ctx.meta.display());
            return Ok(Target { host: ctx.host, source, tls, tried });
        }
        None => tried.push("docker context (default)".to_string()),
    }
    for (what, path) in sockets(env, macos) {
        if exists(&path) {
            return Ok(Target {
                host: format!("unix://{}", path.display()),
                source: format!("{what} {}", path.display()),
                tls: None,
                tried,
            });
        }
        tried.push(format!("{what} {} (absent)", path.display()));
    }
    Ok(Target {
        host: format!("unix://{DEFAULT_SOCKET}"),
        source: format!("the default socket {DEFAULT_SOCKET}"),
        tls: None,
        tried,
    })
}

/// The sockets tried when neither `DOCKER_HOST` nor a context says, in order.
fn sockets(env: &dyn Env, macos: bool) -> Vec<(&'static str, PathBuf)> {
    let mut list = vec![("the default socket", PathBuf::from(DEFAULT_SOCKET))];
    if let Some(run) = env.var("XDG_RUNTIME_DIR") {
        list.push(("rootless Docker's socket", Path::new(&run).join("docker.sock")));
    }
    if macos {
        if let Some(home) = env.var("HOME").map(PathBuf::from) {
            list.push(("Docker Desktop's socket", home.join(".docker/run/docker.sock")));
            list.push(("colima's socket", home.join(".colima/default/docker.sock")));
            list.push(("OrbStack's socket", home.join(".orbstack/run/docker.sock")));
            list.push(("Podman machine's socket", home.join(".local/share/containers/podman/machine/podman.sock")));
        }
        if let Some(tmp) = env.var("TMPDIR") {
            // Podman 5 puts its machine's API socket in the per-user temporary directory.
            list.push(("Podman machine's socket", Path::new(&tmp).join("podman/podman-machine-default-api.sock")));
        }
    }
    list
}

fn is_tcp(host: &str) -> bool {
    let scheme = host.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    matches!(scheme.as_deref(), Some("tcp" | "http" | "https"))
}

/// The CLI's certificate directory: `DOCKER_CERT_PATH`, else its config directory.
fn cert_dir(env: &dyn Env) -> Tls {
    if let Some(p) = env.var("DOCKER_CERT_PATH") {
        return Tls { dir: PathBuf::from(p), from: "DOCKER_CERT_PATH".into() };
    }
    let dir = dockercfg::dir(env).unwrap_or_else(|| PathBuf::from(".docker"));
    Tls { dir, from: "the docker config directory (DOCKER_CERT_PATH is unset)".into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn none(_: &Path) -> bool {
        false
    }

    #[test]
    fn docker_host_wins_and_tls_verify_reads_the_cert_path() {
        let env: HashMap<&str, &str> = [
            ("DOCKER_HOST", "tcp://127.0.0.1:2376"),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", "/certs"),
            ("DOCKER_CONTEXT", "ignored"),
        ]
        .into();
        let t = locate(&env, false, &none).unwrap();
        assert_eq!((t.host.as_str(), t.source.as_str()), ("tcp://127.0.0.1:2376", "DOCKER_HOST=tcp://127.0.0.1:2376"));
        assert_eq!(t.tls, Some(Tls { dir: "/certs".into(), from: "DOCKER_CERT_PATH".into() }));
        let env: HashMap<&str, &str> =
            [("DOCKER_HOST", "tcp://h:2376"), ("DOCKER_TLS_VERIFY", "1"), ("HOME", "/home/u")].into();
        assert_eq!(locate(&env, false, &none).unwrap().tls.unwrap().dir, PathBuf::from("/home/u/.docker"));
    }

    #[test]
    fn tls_verify_means_nothing_for_a_socket_or_ssh() {
        for host in ["unix:///var/run/docker.sock", "ssh://me@build-box"] {
            let env: HashMap<&str, &str> = [("DOCKER_HOST", host), ("DOCKER_TLS_VERIFY", "1")].into();
            assert_eq!(locate(&env, false, &none).unwrap().tls, None, "{host}");
        }
    }

    #[test]
    fn without_docker_host_the_first_socket_that_exists_is_used() {
        let env: HashMap<&str, &str> = [("XDG_RUNTIME_DIR", "/run/user/1000"), ("HOME", "/nowhere")].into();
        let rootless = |p: &Path| p == Path::new("/run/user/1000/docker.sock");
        let t = locate(&env, false, &rootless).unwrap();
        assert_eq!(t.host, "unix:///run/user/1000/docker.sock");
        assert_eq!(t.source, "rootless Docker's socket /run/user/1000/docker.sock");
        assert!(t.tried.contains(&"the default socket /var/run/docker.sock (absent)".to_string()), "{:?}", t.tried);
        let both = |p: &Path| p == Path::new(DEFAULT_SOCKET) || rootless(p);
        assert_eq!(locate(&env, false, &both).unwrap().host, "unix:///var/run/docker.sock");
    }

    #[test]
    fn on_macos_colima_orbstack_and_podman_machine_are_found() {
        let env: HashMap<&str, &str> = [("HOME", "/Users/me"), ("TMPDIR", "/var/folders/x/T")].into();
        let cases = [
            ("/Users/me/.colima/default/docker.sock", "colima's socket"),
            ("/Users/me/.orbstack/run/docker.sock", "OrbStack's socket"),
            ("/Users/me/.docker/run/docker.sock", "Docker Desktop's socket"),
            ("/var/folders/x/T/podman/podman-machine-default-api.sock", "Podman machine's socket"),
        ];
        for (socket, what) in cases {
            let only = |p: &Path| p == Path::new(socket);
            let t = locate(&env, true, &only).unwrap();
            assert_eq!(t.host, format!("unix://{socket}"));
            assert!(t.source.starts_with(what), "{}", t.source);
            // Elsewhere those paths are nobody's: the default socket stands.
            assert_eq!(locate(&env, false, &only).unwrap().host, "unix:///var/run/docker.sock");
        }
    }

    #[test]
    fn the_current_context_comes_before_any_socket() {
        let dir = std::env::temp_dir().join(format!("dh-unit-host-{}", uuid::Uuid::new_v4()));
        let meta = dir.join("contexts/meta/abc");
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(dir.join("config.json"), r#"{"currentContext":"remote"}"#).unwrap();
        std::fs::write(
            meta.join("meta.json"),
            r#"{"Name":"remote","Endpoints":{"docker":{"Host":"ssh://me@build-box"}}}"#,
        )
        .unwrap();
        let env: HashMap<&str, &str> = [("DOCKER_CONFIG", dir.to_str().unwrap())].into();
        let t = locate(&env, false, &|_| true).unwrap();
        assert_eq!(t.host, "ssh://me@build-box");
        assert!(t.source.starts_with("docker context \"remote\" (currentContext in "), "{}", t.source);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn nothing_found_falls_back_to_the_default_socket_and_says_what_was_tried() {
        let env: HashMap<&str, &str> = HashMap::new();
        let t = locate(&env, false, &none).unwrap();
        assert_eq!(t.host, "unix:///var/run/docker.sock");
        assert_eq!(t.tried[..2], ["DOCKER_HOST (unset)".to_string(), "docker context (default)".to_string()]);
    }
}
