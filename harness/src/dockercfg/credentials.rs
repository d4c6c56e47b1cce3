//! Registry credentials for a pull, looked up as the docker CLI looks them up
//! (`configfile.GetAuthConfig`): `DOCKER_AUTH_CONFIG` first (a config's JSON, as CI systems
//! set it), then the configuration file; in each, a `credHelpers` entry for the registry,
//! else the `credsStore`, else the `auths` entry. A helper is run as the CLI runs it:
//! `docker-credential-<name> get`, the server address on stdin, JSON on stdout.
//!
//! What is found is handed to the daemon and never printed: every description says where
//! credentials were looked for, not what they are.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use bollard::auth::DockerCredentials;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::{AuthEntry, DockerConfig};
use crate::config::{Env, ProcessEnv};

/// The address the CLI files Docker Hub's credentials under.
const HUB_SERVER: &str = "https://index.docker.io/v1/";
/// A credential helper that has not answered by then is stuck (waiting on a keychain
/// prompt, say): the pull fails with that said, rather than hanging.
const HELPER_LIMIT: Duration = Duration::from_secs(30);

/// The outcome of a lookup.
#[derive(Debug)]
pub(crate) struct Lookup {
    /// What to send the daemon; `None` pulls anonymously.
    pub(crate) credentials: Option<DockerCredentials>,
    /// Where the lookup went, for messages, e.g. `DOCKER_AUTH_CONFIG (unset),
    /// /cfg/config.json (credHelpers: docker-credential-x had none for r:5000)`.
    pub(crate) looked: String,
}

/// Where one configuration sends a registry's lookup.
enum Source {
    Entry(AuthEntry),
    /// A helper's answer, over the file's entry (the CLI's native store keeps the entry's
    /// other fields and takes the secret from the helper).
    Helper {
        name: String,
        via: &'static str,
        entry: Option<AuthEntry>,
    },
}

/// The first configuration that has something for the registry, and what was passed over.
struct Plan {
    source: Option<(Source, String)>,
    looked: Vec<String>,
}

/// Credentials for `registry` (a host name, `host:port`, or `docker.io` for Docker Hub).
///
/// # Errors
/// A message (never holding the secret) when a helper cannot be run or fails otherwise
/// than with "credentials not found", together with where the lookup went.
pub(crate) async fn for_registry(registry: &str) -> Result<Lookup, (String, String)> {
    // Planned before any await: the environment is read in one go.
    let plan = plan(&ProcessEnv, registry);
    let mut looked = plan.looked;
    let Some((source, origin)) = plan.source else {
        return Ok(Lookup { credentials: None, looked: looked.join(", ") });
    };
    let server = server_address(registry);
    let credentials = match source {
        Source::Entry(entry) => {
            looked.push(format!("{origin} (auths entry for {registry})"));
            Some(from_entry(&entry, &server))
        }
        Source::Helper { name, via, entry } => {
            let program = format!("docker-credential-{name}");
            match run_helper(&program, &server).await {
                Ok(Some(answer)) => {
                    looked.push(format!("{origin} ({via}: {program})"));
                    let mut c = entry.map(|e| from_entry(&e, &server)).unwrap_or_default();
                    apply(&mut c, answer, &server);
                    Some(c)
                }
                Ok(None) => {
                    looked.push(format!("{origin} ({via}: {program} had none for {server})"));
                    entry.map(|e| from_entry(&e, &server)).filter(has_secret)
                }
                Err(e) => {
                    looked.push(format!("{origin} ({via}: {program})"));
                    return Err((e, looked.join(", ")));
                }
            }
        }
    };
    Ok(Lookup { credentials, looked: looked.join(", ") })
}

fn plan(env: &dyn Env, registry: &str) -> Plan {
    let mut looked = Vec::new();
    match env.var("DOCKER_AUTH_CONFIG") {
        None => looked.push("DOCKER_AUTH_CONFIG (unset)".to_string()),
        Some(text) => match super::parse(text.as_bytes()) {
            Err(e) => {
                eprintln!("docker-harness: warning: ignoring DOCKER_AUTH_CONFIG: {e}");
                looked.push("DOCKER_AUTH_CONFIG (not valid JSON, ignored)".to_string());
            }
            Ok(cfg) => match choose(&cfg, registry) {
                Some(s) => return Plan { source: Some((s, "DOCKER_AUTH_CONFIG".into())), looked },
                None => looked.push(format!("DOCKER_AUTH_CONFIG (no entry for {registry})")),
            },
        },
    }
    let (path, cfg) = super::load_or_warn(env);
    let Some(path) = path else {
        looked.push("no docker config (neither DOCKER_CONFIG nor HOME is set)".to_string());
        return Plan { source: None, looked };
    };
    let shown = path.display().to_string();
    match choose(&cfg, registry) {
        Some(s) => Plan { source: Some((s, shown)), looked },
        None => {
            let why = if Path::new(&path).exists() { format!("no entry for {registry}") } else { "absent".into() };
            looked.push(format!("{shown} ({why})"));
            Plan { source: None, looked }
        }
    }
}

/// The CLI's order within one configuration: a helper for this registry, else the store
/// for all, else the file's own entry.
fn choose(cfg: &DockerConfig, registry: &str) -> Option<Source> {
    let entry = cfg.auths.iter().find(|(k, _)| same_registry(k, registry)).map(|(_, e)| e.clone());
    if let Some((_, name)) = cfg.cred_helpers.iter().find(|(k, _)| same_registry(k, registry)) {
        return Some(Source::Helper { name: name.clone(), via: "credHelpers", entry });
    }
    if let Some(store) = cfg.creds_store.as_ref().filter(|s| !s.is_empty()) {
        return Some(Source::Helper { name: store.clone(), via: "credsStore", entry });
    }
    entry.map(Source::Entry)
}

/// The registry a key of `auths` or `credHelpers` names: keys may carry a scheme and a path
/// (`https://index.docker.io/v1/`), and Docker Hub goes by several names.
fn hostname(key: &str) -> String {
    let key = key.split_once("://").map_or(key, |(_, rest)| rest);
    let host = key.split('/').next().unwrap_or_default().to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io".into(),
        _ => host,
    }
}

fn same_registry(key: &str, registry: &str) -> bool {
    hostname(key) == hostname(registry)
}

/// The server address the CLI hands helpers and the daemon: Hub's v1 URL, else the host.
fn server_address(registry: &str) -> String {
    if hostname(registry) == "docker.io" {
        HUB_SERVER.to_string()
    } else {
        registry.to_string()
    }
}

fn from_entry(e: &AuthEntry, server: &str) -> DockerCredentials {
    let decoded = e
        .auth
        .as_deref()
        .and_then(|a| base64::engine::general_purpose::STANDARD.decode(a.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let (user, pass) = match decoded.as_deref().and_then(|d| d.split_once(':')) {
        Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
        None => (e.username.clone(), e.password.clone()),
    };
    DockerCredentials {
        username: user.filter(|u| !u.is_empty()),
        password: pass.filter(|p| !p.is_empty()),
        identitytoken: e.identitytoken.clone().filter(|t| !t.is_empty()),
        registrytoken: e.registrytoken.clone().filter(|t| !t.is_empty()),
        serveraddress: Some(server.to_string()),
        ..Default::default()
    }
}

fn has_secret(c: &DockerCredentials) -> bool {
    c.password.is_some() || c.identitytoken.is_some() || c.registrytoken.is_some()
}

/// What a helper's `get` prints.
#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// A helper's `<token>` user means the secret is an identity token (the CLI's rule).
fn apply(c: &mut DockerCredentials, a: HelperAnswer, server: &str) {
    if a.username == "<token>" {
        c.identitytoken = Some(a.secret);
    } else {
        c.username = Some(a.username);
        c.password = Some(a.secret);
    }
    c.serveraddress = Some(server.to_string());
}

/// Runs `program get`; `Ok(None)` when it has no credentials for the server.
async fn run_helper(program: &str, server: &str) -> Result<Option<HelperAnswer>, String> {
    let mut child = tokio::process::Command::new(program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {program} (is it on PATH?): {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading its input is answered by its exit status.
        let _ = stdin.write_all(server.as_bytes()).await;
    }
    let out = match tokio::time::timeout(HELPER_LIMIT, child.wait_with_output()).await {
        Ok(r) => r.map_err(|e| format!("{program} get failed: {e}"))?,
        Err(_) => return Err(format!("{program} get gave no answer within {} s", HELPER_LIMIT.as_secs())),
    };
    let said = |bytes: &[u8]| String::from_utf8_lossy(bytes).lines().next().unwrap_or_default().trim().to_string();
    if !out.status.success() {
        let message = [said(&out.stdout), said(&out.stderr)].into_iter().find(|m| !m.is_empty()).unwrap_or_default();
        if message.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        return Err(format!("{program} get failed ({}): {message}", out.status));
    }
    serde_json::from_slice(&out.stdout)
        .map(Some)
        .map_err(|_| format!("{program} get printed something other than the JSON credentials it should"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(json: &str) -> DockerConfig {
        super::super::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn hub_goes_by_several_names_and_other_registries_by_host_and_port() {
        assert!(same_registry("https://index.docker.io/v1/", "docker.io"));
        assert!(same_registry("registry-1.docker.io", "docker.io"));
        assert!(same_registry("http://127.0.0.1:5000/v2/", "127.0.0.1:5000"));
        assert!(!same_registry("127.0.0.1:5000", "127.0.0.1:5001"));
        assert_eq!(server_address("docker.io"), HUB_SERVER);
        assert_eq!(server_address("ghcr.io"), "ghcr.io");
    }

    #[test]
    fn an_auth_entry_is_decoded_into_user_and_password() {
        let c = cfg(r#"{"auths": {"r:5000": {"auth": "dGVzdGVyOnMzY3I6ZXQ="}}}"#);
        let Some(Source::Entry(e)) = choose(&c, "r:5000") else { panic!("no entry") };
        let creds = from_entry(&e, "r:5000");
        assert_eq!(creds.username.as_deref(), Some("tester"));
        assert_eq!(creds.password.as_deref(), Some("s3cr:et"), "only the first ':' splits");
        assert_eq!(creds.serveraddress.as_deref(), Some("r:5000"));
    }

    #[test]
    fn a_helper_for_the_registry_wins_over_the_store_and_the_store_over_entries() {
        let c =
            cfg(r#"{"auths": {"r:5000": {"auth": "dTpw"}}, "credsStore": "store", "credHelpers": {"r:5000": "h"}}"#);
        assert!(matches!(choose(&c, "r:5000"), Some(Source::Helper { name, via: "credHelpers", .. }) if name == "h"));
        assert!(
            matches!(choose(&c, "other:1"), Some(Source::Helper { name, via: "credsStore", .. }) if name == "store")
        );
        let c = cfg(r#"{"auths": {"r:5000": {"auth": "dTpw"}}}"#);
        assert!(matches!(choose(&c, "r:5000"), Some(Source::Entry(_))));
        assert!(choose(&c, "other:1").is_none());
    }

    #[test]
    fn docker_auth_config_comes_first_and_the_file_after_it() {
        let dir = std::env::temp_dir().join(format!("dh-unit-creds-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), r#"{"auths": {"file:1": {"auth": "dTpw"}}}"#).unwrap();
        let d = dir.to_str().unwrap();
        let inline = r#"{"auths": {"env:1": {"auth": "dTpw"}}}"#;
        let env: HashMap<&str, &str> = [("DOCKER_CONFIG", d), ("DOCKER_AUTH_CONFIG", inline)].into();
        assert!(matches!(plan(&env, "env:1").source, Some((Source::Entry(_), o)) if o == "DOCKER_AUTH_CONFIG"));
        let p = plan(&env, "file:1");
        assert!(matches!(p.source, Some((Source::Entry(_), o)) if o.ends_with("config.json")));
        assert_eq!(p.looked, ["DOCKER_AUTH_CONFIG (no entry for file:1)"]);
        let p = plan(&env, "none:1");
        assert!(p.source.is_none());
        assert_eq!(p.looked[1], format!("{d}/config.json (no entry for none:1)"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_helpers_token_user_makes_an_identity_token() {
        let mut c = DockerCredentials::default();
        apply(&mut c, HelperAnswer { username: "<token>".into(), secret: "t".into() }, "r");
        assert_eq!((c.identitytoken.as_deref(), c.username), (Some("t"), None));
    }
}
