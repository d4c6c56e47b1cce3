//! The session image: resolved (and pulled if need be) once per session across every test
//! process, through a mirror when one is set, and checked unchanged by every context.

pub(crate) mod build;
mod reference;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bollard::query_parameters::{CreateImageOptions, RemoveImageOptions, TagImageOptions};
use bollard::Docker;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use self::reference::{mirrored, split_tag};
use crate::config::{settings, PullPolicy};
use crate::engine::{self, is_404};
use crate::error::{Error, Result};
use crate::{blocking, docker, labels, naming, session};

/// The session image as resolved: the reference containers use and the image ID it
/// pointed at when the session resolved it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionImage {
    /// The reference to use (`alpine:3.19.1` unless `DOCKER_HARNESS_IMAGE` says otherwise).
    pub reference: String,
    /// The image ID (`sha256:…`).
    pub id: String,
}

/// One real pull, as recorded in the session's `pulls.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PullRecord {
    /// The reference the tests use.
    pub image: String,
    /// The reference pulled (through the mirror, when one is set).
    pub source: String,
    /// The repository digest, when the registry gave one.
    pub digest: Option<String>,
    /// The resulting image ID.
    pub id: String,
    /// How long the pull took, in milliseconds.
    pub duration_ms: u128,
    /// The process that pulled.
    pub pid: u32,
}

/// The session image's reference (no Docker call).
///
/// # Errors
/// [`Error::InvalidEnv`] for a bad `DOCKER_HARNESS_*` value.
pub fn reference() -> Result<String> {
    Ok(settings()?.image.clone())
}

/// Resolves the session image, pulling it at most once per session across processes.
///
/// # Errors
/// [`Error::ImageMissing`] under `DOCKER_HARNESS_PULL=never`, [`Error::ImagePull`] when the
/// pull fails, [`Error::DaemonUnreachable`].
///
/// # Example
/// ```no_run
/// # async fn f() -> docker_harness::Result<()> {
/// let image = docker_harness::session_image().await?;
/// println!("tests run {} ({})", image.reference, image.id);
/// # Ok(()) }
/// ```
pub async fn session_image() -> Result<SessionImage> {
    blocking::run(resolve_once()).await
}

/// Resolves the session image and checks it still is what the session resolved.
pub(crate) async fn session_image_checked() -> Result<SessionImage> {
    blocking::run(async {
        let img = resolve_once().await?;
        verify(&docker::client().await?, &img).await?;
        Ok(img)
    })
    .await
}

async fn resolve_once() -> Result<SessionImage> {
    let s = settings()?;
    let sess = session::current()?;
    let key = format!("image-{}", naming::sanitize(&s.image));
    let failed = sess.state_dir().join(format!("{key}.failed.json"));
    if let Some(e) = recent_failure(&failed, &s.image) {
        return Err(e);
    }
    // A pull can take minutes on a slow link; the others wait for it rather than pull too.
    let result = session::once(sess.state_dir(), &key, Duration::from_secs(900), || async {
        let r = resolve(&docker::client().await?, &s.image, s.pull, s.mirror.as_deref()).await;
        if let Err(Error::ImagePull { source_ref, message, .. }) = &r {
            // Said once for every process waiting behind this one: they fail at once with the
            // same answer instead of each repeating the retries.
            let record =
                FailedPull { source_ref: source_ref.clone(), message: message.clone(), at: labels::unix_now() };
            let _ = session::write_json(&failed, &record);
        }
        r
    })
    .await;
    if result.is_ok() {
        let _ = std::fs::remove_file(&failed);
    }
    result
}

/// How long a failed pull stands for the whole session before a process tries again.
const FAILURE_MEMORY_SECS: u64 = 30;

#[derive(Serialize, Deserialize)]
struct FailedPull {
    source_ref: String,
    message: String,
    at: u64,
}

fn recent_failure(path: &std::path::Path, image: &str) -> Option<Error> {
    let f: FailedPull = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let age = labels::unix_now().saturating_sub(f.at);
    (age < FAILURE_MEMORY_SECS).then(|| Error::ImagePull {
        image: image.to_string(),
        source_ref: f.source_ref,
        message: format!("{} (as another process of this session found {age} s ago)", f.message),
        attempts: 0,
        not_found: classify_pull_error(&f.message) == PullFailure::NotFound,
    })
}

/// Checks that `img.reference` still resolves to `img.id`.
pub(crate) async fn verify(docker: &Docker, img: &SessionImage) -> Result<()> {
    let found = match docker.inspect_image(&img.reference).await {
        Ok(i) => i.id.unwrap_or_default(),
        Err(e) if is_404(&e) => "<absent>".to_string(),
        Err(e) => return Err(Error::docker(format!("inspect image {}", img.reference), e)),
    };
    if found == img.id {
        Ok(())
    } else {
        Err(Error::ImageChanged { image: img.reference.clone(), expected: img.id.clone(), found })
    }
}

async fn resolve(docker: &Docker, image: &str, policy: PullPolicy, mirror: Option<&str>) -> Result<SessionImage> {
    let present = match docker.inspect_image(image).await {
        Ok(i) => i.id,
        Err(e) if is_404(&e) => None,
        Err(e) => return Err(Error::docker(format!("inspect image {image}"), e)),
    };
    match (present, policy) {
        (Some(id), PullPolicy::Missing | PullPolicy::Never) => {
            return Ok(SessionImage { reference: image.to_string(), id })
        }
        (None, PullPolicy::Never) => return Err(Error::ImageMissing { image: image.to_string() }),
        _ => {}
    }
    let source = mirror.and_then(|m| mirrored(image, m)).unwrap_or_else(|| image.to_string());
    let started = Instant::now();
    pull_with_retries(docker, image, &source).await?;
    // Read before the mirror's tag goes: the repository digest is recorded under it.
    let digest =
        docker.inspect_image(&source).await.ok().and_then(|i| i.repo_digests).and_then(|d| d.into_iter().next());
    // A digest reference cannot be tagged; containers then use the mirror's reference.
    let reference = if source != image && !image.contains('@') {
        let (repo, tag) = split_tag(image);
        let repo = engine::current().await?.hub_tag_repository(repo);
        docker
            .tag_image(&source, Some(TagImageOptions { repo: Some(repo), tag: Some(tag.to_string()) }))
            .await
            .map_err(|e| Error::docker(format!("tag {source} as {image}"), e))?;
        // Only the mirror's tag goes; the image stays under the reference the tests use.
        let untag = RemoveImageOptions { force: false, noprune: true, ..Default::default() };
        let _ = docker.remove_image(&source, Some(untag), None).await;
        image.to_string()
    } else {
        source.clone()
    };
    let info = docker
        .inspect_image(&reference)
        .await
        .map_err(|e| Error::docker(format!("inspect image {reference} after pulling it"), e))?;
    let id = info.id.unwrap_or_default();
    let record = PullRecord {
        image: image.to_string(),
        source,
        digest,
        id: id.clone(),
        duration_ms: started.elapsed().as_millis(),
        pid: std::process::id(),
    };
    session::append_record(&session::current()?.state_dir().join("pulls.jsonl"), &record)?;
    Ok(SessionImage { reference, id })
}

/// Reads every pull recorded for a session.
pub fn pull_records(session_state_dir: &std::path::Path) -> Vec<PullRecord> {
    std::fs::read_to_string(session_state_dir.join("pulls.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

const ATTEMPTS: u32 = 4;

async fn pull_with_retries(docker: &Docker, image: &str, source: &str) -> Result<()> {
    let mut backoff = Duration::from_millis(500);
    for attempt in 1..=ATTEMPTS {
        let message = match pull(docker, source).await {
            Ok(()) => return Ok(()),
            Err(m) => m,
        };
        let kind = classify_pull_error(&message);
        if kind != PullFailure::Transient || attempt == ATTEMPTS {
            return Err(Error::ImagePull {
                image: image.to_string(),
                source_ref: source.to_string(),
                message,
                attempts: attempt,
                not_found: kind == PullFailure::NotFound,
            });
        }
        eprintln!("docker-harness: pulling {source} failed ({message}); retrying in {backoff:?}");
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
    unreachable!("the loop returns on its last attempt")
}

/// One pull, printing progress at most once a second once it has taken a second.
async fn pull(docker: &Docker, source: &str) -> std::result::Result<(), String> {
    let (repo, tag) = split_tag(source);
    let opts =
        CreateImageOptions { from_image: Some(repo.to_string()), tag: Some(tag.to_string()), ..Default::default() };
    let mut stream = docker.create_image(Some(opts), None, None);
    let started = Instant::now();
    let mut last_print = started;
    let mut layers: HashMap<String, (i64, i64)> = HashMap::new();
    let mut done: HashSet<String> = HashSet::new();
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| match e {
            bollard::errors::Error::DockerStreamError { error } => error,
            bollard::errors::Error::DockerResponseServerError { status_code, message } => {
                format!("{message} (HTTP {status_code})")
            }
            other => other.to_string(),
        })?;
        if let Some(err) = info.error_detail.and_then(|d| d.message) {
            return Err(err);
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
enum PullFailure {
    /// Worth another try: the link or the registry had a moment.
    Transient,
    /// The registry says the image does not exist (or is not ours to see).
    NotFound,
    /// Anything else: retrying would only repeat it.
    Other,
}

fn classify_pull_error(msg: &str) -> PullFailure {
    let m = msg.to_ascii_lowercase();
    let any = |needles: &[&str]| needles.iter().any(|n| m.contains(n));
    if any(&["not found", "manifest unknown", "pull access denied", "repository does not exist", "http 404"]) {
        PullFailure::NotFound
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
        PullFailure::Transient
    } else {
        PullFailure::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tag_is_not_retried_but_a_rate_limit_is() {
        assert_eq!(classify_pull_error("manifest for alpine:9.9 not found: manifest unknown"), PullFailure::NotFound);
        assert_eq!(
            classify_pull_error("toomanyrequests: You have reached your pull rate limit"),
            PullFailure::Transient
        );
        assert_eq!(classify_pull_error("read tcp: connection reset by peer"), PullFailure::Transient);
        assert_eq!(
            classify_pull_error("received unexpected HTTP status: 503 Service Unavailable"),
            PullFailure::Transient
        );
        assert_eq!(classify_pull_error("dial tcp: lookup registry-1.docker.io: no such host"), PullFailure::Other);
    }
}
