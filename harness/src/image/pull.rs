//! One pull from a registry: the credentials the docker CLI would send, retries for the
//! link's bad moments (never for a missing tag or refused credentials), and progress on
//! stderr for a pull that takes a while.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bollard::auth::DockerCredentials;
use bollard::query_parameters::CreateImageOptions;
use bollard::Docker;
use futures_util::StreamExt;

use super::reference::{registry, split_tag};
use crate::dockercfg::credentials;
use crate::error::{request_timeout, DaemonError, Error, Result};

const ATTEMPTS: u32 = 4;

/// Pulls `source` (what `image` is pulled as), retrying transient failures.
pub(super) async fn with_retries(docker: &Docker, image: &str, source: &str) -> Result<()> {
    let registry = registry(source);
    let lookup = credentials::for_registry(&registry).await.map_err(|(message, looked)| Error::RegistryAuth {
        image: source.to_string(),
        registry: registry.clone(),
        looked,
        message,
    })?;
    let mut backoff = Duration::from_millis(500);
    for attempt in 1..=ATTEMPTS {
        let message = match pull(docker, source, lookup.credentials.clone()).await {
            Ok(()) => return Ok(()),
            // No answer, or no progress, within the request timeout: a stalled daemon is
            // waited for once, as every other call.
            Err(None) => {
                let from = if source == image { String::new() } else { format!(" from {source}") };
                let action = format!("pull image {image}{from} (no progress)");
                let retries = attempt - 1;
                return Err(Error::Daemon(DaemonError::Stalled { action, after: request_timeout(), retries }));
            }
            Err(Some(m)) => m,
        };
        let kind = classify(&message);
        if kind == Failure::Unauthorized {
            return Err(Error::RegistryAuth {
                image: source.to_string(),
                registry,
                looked: lookup.looked,
                message: with_what_was_sent(&message, lookup.credentials.is_some()),
            });
        }
        if kind != Failure::Transient || attempt == ATTEMPTS {
            return Err(Error::ImagePull {
                image: image.to_string(),
                source_ref: source.to_string(),
                message,
                attempts: attempt,
                not_found: kind == Failure::NotFound,
            });
        }
        eprintln!("docker-harness: pulling {source} failed ({message}); retrying in {backoff:?}");
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
    unreachable!("the loop returns on its last attempt")
}

fn with_what_was_sent(message: &str, sent: bool) -> String {
    let what = if sent { "credentials were sent and refused" } else { "no credentials were found to send" };
    format!("{message} ({what})")
}

/// One pull, printing progress at most once a second once it has taken a second. `None`:
/// the daemon stalled (no answer, or no progress line, within the request timeout).
async fn pull(
    docker: &Docker,
    source: &str,
    creds: Option<DockerCredentials>,
) -> std::result::Result<(), Option<String>> {
    let (repo, tag) = split_tag(source);
    let opts =
        CreateImageOptions { from_image: Some(repo.to_string()), tag: Some(tag.to_string()), ..Default::default() };
    let mut stream = crate::retry::bounded_stream(docker.create_image(Some(opts), None, creds));
    let started = Instant::now();
    let mut last_print = started;
    let mut layers: HashMap<String, (i64, i64)> = HashMap::new();
    let mut done: HashSet<String> = HashSet::new();
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| match e {
            bollard::errors::Error::RequestTimeoutError => None,
            bollard::errors::Error::DockerStreamError { error } => Some(error),
            bollard::errors::Error::DockerResponseServerError { status_code, message } => {
                Some(format!("{message} (HTTP {status_code})"))
            }
            other => Some(other.to_string()),
        })?;
        if let Some(err) = info.error_detail.and_then(|d| d.message) {
            return Err(Some(err));
        }
        if let Some(id) = info.id {
            if matches!(info.status.as_deref(), Some("Pull complete" | "Already exists")) {
                done.insert(id.clone());
            }
            if let Some(p) = info.progress_detail {
                if let (Some(c), Some(t)) = (p.current, p.total) {
                    layers.insert(id, (c, t));
                }
            }
        }
        let now = Instant::now();
        if now.duration_since(started) >= Duration::from_secs(1)
            && now.duration_since(last_print) >= Duration::from_secs(1)
        {
            last_print = now;
            let (cur, tot) = layers.values().fold((0, 0), |(c, t), (lc, lt)| (c + lc, t + lt));
            eprintln!(
                "docker-harness: pulling {source}: {}/{} layers done, {:.1} of {:.1} MB",
                done.len(),
                layers.len().max(done.len()),
                cur as f64 / 1e6,
                tot as f64 / 1e6
            );
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// Worth another try: the link or the registry had a moment.
    Transient,
    /// The registry says the image does not exist (or is not ours to see).
    NotFound,
    /// The registry wants credentials, or refused the ones sent.
    Unauthorized,
    /// Anything else: retrying would only repeat it.
    Other,
}

pub(super) fn classify(msg: &str) -> Failure {
    let m = msg.to_ascii_lowercase();
    let any = |needles: &[&str]| needles.iter().any(|n| m.contains(n));
    // Before "not found": Hub's "pull access denied … may require 'docker login'" is also
    // its answer for a repository that does not exist, so it stays a not-found.
    if any(&["no basic auth credentials", "unauthorized", "authentication required", "incorrect username or password"])
    {
        Failure::Unauthorized
    } else if any(&["not found", "manifest unknown", "pull access denied", "repository does not exist", "http 404"]) {
        Failure::NotFound
    } else if any(&[
        "connection reset",
        "connection refused",
        "i/o timeout",
        "timeout",
        "toomanyrequests",
        "429",
        "500 internal",
        "502",
        "503",
        "504",
        "bad gateway",
        "service unavailable",
        "unexpected eof",
        "tls handshake",
    ]) {
        Failure::Transient
    } else {
        Failure::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tag_is_not_retried_but_a_rate_limit_is() {
        assert_eq!(classify("manifest for alpine:9.9 not found: manifest unknown"), Failure::NotFound);
        assert_eq!(classify("toomanyrequests: You have reached your pull rate limit"), Failure::Transient);
        assert_eq!(classify("read tcp: connection reset by peer"), Failure::Transient);
        assert_eq!(classify("received unexpected HTTP status: 503 Service Unavailable"), Failure::Transient);
        assert_eq!(classify("dial tcp: lookup registry-1.docker.io: no such host"), Failure::Other);
    }

    #[test]
    fn refused_or_missing_credentials_are_an_auth_failure() {
        let head = "Head \"http://127.0.0.1:5165/v2/x/manifests/1\": ";
        assert_eq!(classify(&format!("{head}no basic auth credentials")), Failure::Unauthorized);
        assert_eq!(classify(&format!("{head}unauthorized: authentication required")), Failure::Unauthorized);
        assert_eq!(
            classify("pull access denied for nosuch, repository does not exist or may require 'docker login'"),
            Failure::NotFound
        );
    }
}
