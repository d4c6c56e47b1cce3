//! The docker CLI's own configuration, read the way the CLI reads it, so that a test finds
//! the daemon and the registry credentials its author's `docker` command would use:
//! `$DOCKER_CONFIG/config.json` (else `~/.docker/config.json`), `DOCKER_AUTH_CONFIG`, and
//! the contexts under `$DOCKER_CONFIG/contexts/`. Read only: the harness never writes it.

pub(crate) mod contexts;
pub(crate) mod credentials;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::Env;

/// The parts of `config.json` the harness uses (the CLI's `configfile.ConfigFile`).
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct DockerConfig {
    #[serde(default)]
    pub(crate) auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    pub(crate) creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    pub(crate) cred_helpers: HashMap<String, String>,
    #[serde(default, rename = "currentContext")]
    pub(crate) current_context: Option<String>,
}

/// One entry of `auths`: `auth` is base64 of `user:password`; tokens stand on their own.
#[derive(Default, Clone, Deserialize)]
pub(crate) struct AuthEntry {
    #[serde(default)]
    pub(crate) auth: Option<String>,
    #[serde(default)]
    pub(crate) username: Option<String>,
    #[serde(default)]
    pub(crate) password: Option<String>,
    #[serde(default)]
    pub(crate) identitytoken: Option<String>,
    #[serde(default)]
    pub(crate) registrytoken: Option<String>,
}

// Never the secret, not even in a debug print of a config.
impl std::fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthEntry")
            .field("auth", &self.auth.as_ref().map(|_| "<redacted>"))
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The CLI's configuration directory: `DOCKER_CONFIG`, else `~/.docker`. `None` when
/// neither that variable nor `HOME` is set.
pub(crate) fn dir(env: &dyn Env) -> Option<PathBuf> {
    env.var("DOCKER_CONFIG").map(PathBuf::from).or_else(|| env.var("HOME").map(|h| Path::new(&h).join(".docker")))
}

/// The configuration file, `<dir>/config.json`.
pub(crate) fn file(env: &dyn Env) -> Option<PathBuf> {
    dir(env).map(|d| d.join("config.json"))
}

/// What a configuration file holds: absent (`Ok(None)`), read, or unreadable (the reason).
pub(crate) fn load(path: &Path) -> Result<Option<DockerConfig>, String> {
    match std::fs::read(path) {
        Ok(bytes) => parse(&bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Parses the text of a configuration (a file's or `DOCKER_AUTH_CONFIG`'s).
pub(crate) fn parse(bytes: &[u8]) -> Result<DockerConfig, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(DockerConfig::default());
    }
    serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON for a docker config: {e}"))
}

/// The configuration file, read; a file that cannot be read is said once on stderr and
/// taken as empty, as the CLI does ("WARNING: Error loading config file").
pub(crate) fn load_or_warn(env: &dyn Env) -> (Option<PathBuf>, DockerConfig) {
    let Some(path) = file(env) else { return (None, DockerConfig::default()) };
    match load(&path) {
        Ok(c) => (Some(path), c.unwrap_or_default()),
        Err(e) => {
            eprintln!("docker-harness: warning: ignoring the docker config {}: {e}", path.display());
            (Some(path), DockerConfig::default())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_wins_over_the_home_directory() {
        let env: HashMap<&str, &str> = [("DOCKER_CONFIG", "/cfg"), ("HOME", "/home/u")].into();
        assert_eq!(file(&env), Some(PathBuf::from("/cfg/config.json")));
        let env: HashMap<&str, &str> = [("HOME", "/home/u")].into();
        assert_eq!(file(&env), Some(PathBuf::from("/home/u/.docker/config.json")));
        assert_eq!(file(&HashMap::new()), None);
    }

    #[test]
    fn every_part_the_harness_uses_is_read_and_the_rest_ignored() {
        let c = parse(
            br#"{"auths": {"r:5000": {"auth": "dTpw"}}, "credsStore": "desktop",
                 "credHelpers": {"ghcr.io": "gh"}, "currentContext": "colima",
                 "psFormat": "table", "plugins": {}}"#,
        )
        .unwrap();
        assert_eq!(c.auths["r:5000"].auth.as_deref(), Some("dTpw"));
        assert_eq!(c.creds_store.as_deref(), Some("desktop"));
        assert_eq!(c.cred_helpers["ghcr.io"], "gh");
        assert_eq!(c.current_context.as_deref(), Some("colima"));
        assert!(parse(b"  \n").unwrap().auths.is_empty());
        assert!(parse(b"{not json").unwrap_err().contains("not valid JSON"));
    }

    #[test]
    fn a_debug_print_never_shows_the_secret() {
        let e = AuthEntry { auth: Some("c2VjcmV0".into()), password: Some("pw".into()), ..Default::default() };
        let text = format!("{e:?}");
        assert!(!text.contains("c2VjcmV0") && !text.contains("pw"), "{text}");
    }
}
