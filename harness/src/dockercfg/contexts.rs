//! Docker contexts: the daemon a `docker context use NAME` points the CLI at. The context is
//! `DOCKER_CONTEXT`, else the config's `currentContext`; `default` (or none) means
//! `DOCKER_HOST` or the default socket. Each context's endpoint is in
//! `<config dir>/contexts/meta/<id>/meta.json`, and its TLS files, if any, in
//! `<config dir>/contexts/tls/<id>/docker/`. The CLI names `<id>` by the SHA-256 of the
//! context's name; the harness finds the same directory by the `Name` each `meta.json`
//! holds, which needs no hash.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::Env;

/// A context's Docker endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// The context's name.
    pub(crate) name: String,
    /// Where the daemon is, e.g. `unix:///Users/me/.colima/default/docker.sock`.
    pub(crate) host: String,
    /// The context's `ca.pem`, `cert.pem` and `key.pem`, when it has any.
    pub(crate) tls_dir: Option<PathBuf>,
    /// The context says not to verify the daemon's certificate.
    pub(crate) skip_tls_verify: bool,
    /// Where it was read, for messages.
    pub(crate) meta: PathBuf,
    /// What chose it: `DOCKER_CONTEXT` or the config file's `currentContext`.
    pub(crate) chosen_by: String,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Endpoints", default)]
    endpoints: std::collections::HashMap<String, MetaEndpoint>,
}

#[derive(Deserialize)]
struct MetaEndpoint {
    #[serde(rename = "Host", default)]
    host: Option<String>,
    #[serde(rename = "SkipTLSVerify", default)]
    skip_tls_verify: bool,
}

/// The endpoint of the context the CLI would use; `Ok(None)` for the default context.
///
/// # Errors
/// A message when a context is named but cannot be found or read, as the CLI then refuses
/// to run too.
pub(crate) fn current(env: &dyn Env) -> Result<Option<Endpoint>, String> {
    let (name, chosen_by) = match env.var("DOCKER_CONTEXT") {
        Some(n) => (n, "DOCKER_CONTEXT".to_string()),
        None => {
            let (path, cfg) = super::load_or_warn(env);
            match cfg.current_context {
                Some(n) => {
                    (n, format!("currentContext in {}", path.map(|p| p.display().to_string()).unwrap_or_default()))
                }
                None => return Ok(None),
            }
        }
    };
    if name.is_empty() || name == "default" {
        return Ok(None);
    }
    let Some(dir) = super::dir(env) else {
        return Err(format!(
            "context {name:?} ({chosen_by}) cannot be looked up: neither DOCKER_CONFIG nor HOME is set"
        ));
    };
    find(&dir, &name, chosen_by)
}

fn find(config_dir: &Path, name: &str, chosen_by: String) -> Result<Option<Endpoint>, String> {
    let metas = config_dir.join("contexts").join("meta");
    let entries = std::fs::read_dir(&metas).into_iter().flatten().flatten();
    for entry in entries {
        let path = entry.path().join("meta.json");
        let Ok(bytes) = std::fs::read(&path) else { continue };
        let Ok(meta) = serde_json::from_slice::<Meta>(&bytes) else { continue };
        if meta.name != name {
            continue;
        }
        let Some(docker) = meta.endpoints.get("docker") else {
            return Err(format!("context {name:?} ({chosen_by}) has no docker endpoint in {}", path.display()));
        };
        let Some(host) = docker.host.clone().filter(|h| !h.is_empty()) else {
            return Err(format!("context {name:?} ({chosen_by}) has no Host in {}", path.display()));
        };
        let tls = config_dir.join("contexts").join("tls").join(entry.file_name()).join("docker");
        let tls_dir = tls.join("ca.pem").exists().then_some(tls);
        return Ok(Some(Endpoint {
            name: name.to_string(),
            host,
            tls_dir,
            skip_tls_verify: docker.skip_tls_verify,
            meta: path,
            chosen_by,
        }));
    }
    Err(format!("context {name:?} ({chosen_by}) does not exist under {}", metas.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The directory the CLI makes for a context named `colima` (sha256 of the name).
    const COLIMA_ID: &str = "f24fd3749c1368328e2b149bec149cb6795619f244c5b584e844961215dadd16";

    fn config_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dh-unit-ctx-{tag}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn add_context(dir: &Path, id: &str, name: &str, host: &str) {
        let meta = dir.join("contexts/meta").join(id);
        std::fs::create_dir_all(&meta).unwrap();
        let json = format!(
            r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":false}}}}}}"#
        );
        std::fs::write(meta.join("meta.json"), json).unwrap();
    }

    #[test]
    fn the_current_context_of_the_config_file_gives_its_endpoint() {
        let dir = config_dir("current");
        std::fs::write(dir.join("config.json"), r#"{"currentContext": "colima"}"#).unwrap();
        add_context(&dir, "0000", "other", "tcp://10.0.0.9:2375");
        add_context(&dir, COLIMA_ID, "colima", "unix:///Users/me/.colima/default/docker.sock");
        let env: HashMap<&str, &str> = [("DOCKER_CONFIG", dir.to_str().unwrap())].into();
        let e = current(&env).unwrap().unwrap();
        assert_eq!(e.name, "colima");
        assert_eq!(e.host, "unix:///Users/me/.colima/default/docker.sock");
        assert_eq!(e.tls_dir, None);
        assert!(e.chosen_by.starts_with("currentContext in "), "{}", e.chosen_by);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn docker_context_wins_and_its_tls_files_are_found() {
        let dir = config_dir("env");
        std::fs::write(dir.join("config.json"), r#"{"currentContext": "colima"}"#).unwrap();
        add_context(&dir, COLIMA_ID, "colima", "unix:///x.sock");
        add_context(&dir, "1111", "remote", "tcp://build-box:2376");
        let tls = dir.join("contexts/tls/1111/docker");
        std::fs::create_dir_all(&tls).unwrap();
        std::fs::write(tls.join("ca.pem"), "").unwrap();
        let env: HashMap<&str, &str> = [("DOCKER_CONFIG", dir.to_str().unwrap()), ("DOCKER_CONTEXT", "remote")].into();
        let e = current(&env).unwrap().unwrap();
        assert_eq!((e.host.as_str(), e.chosen_by.as_str()), ("tcp://build-box:2376", "DOCKER_CONTEXT"));
        assert_eq!(e.tls_dir, Some(tls));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_default_context_or_none_leaves_the_choice_to_the_rest() {
        let dir = config_dir("default");
        let env: HashMap<&str, &str> = [("DOCKER_CONFIG", dir.to_str().unwrap())].into();
        assert_eq!(current(&env).unwrap(), None);
        std::fs::write(dir.join("config.json"), r#"{"currentContext": "default"}"#).unwrap();
        assert_eq!(current(&env).unwrap(), None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_named_context_that_is_missing_is_an_error_naming_it() {
        let dir = config_dir("missing");
        let env: HashMap<&str, &str> = [("DOCKER_CONFIG", dir.to_str().unwrap()), ("DOCKER_CONTEXT", "gone")].into();
        let e = current(&env).unwrap_err();
        assert!(e.contains("context \"gone\" (DOCKER_CONTEXT) does not exist"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
