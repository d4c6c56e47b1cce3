//! Images: the session image and every image a test names (`ContainerSpec::with_image`, a
//! build's `FROM`) are resolved the same way: pulled if need be at most once per session
//! across every test process, under one pull policy (`DOCKER_HARNESS_PULL`), through the
//! mirror when one is set, with the credentials the docker CLI would send, and checked
//! unchanged by every context that uses them.
//!
//! Pulled images stay on the daemon when the session ends, as the session image does: an
//! image is the machine's cache, shared by other sessions and by its owner's own work, and
//! it carries its author's labels, not the harness's. Each pull is listed in the session's
//! `pulls.jsonl`.

pub(crate) mod build;
mod pull;
mod reference;

use std::time::{Duration, Instant};

use bollard::query_parameters::{RemoveImageOptions, TagImageOptions};
use bollard::Docker;
use serde::{Deserialize, Serialize};

use self::pull::Failure;
use self::reference::{mirrored, split_tag};
use crate::config::{settings, PullPolicy};
use crate::engine::{self, is_404};
use crate::error::{Error, Result};
use crate::retry::bounded;
use crate::{blocking, docker, labels, naming, session};

/// The session image as resolved: the reference tests name and the image ID it pointed at
/// when the session resolved it. Containers are created from the ID, so a re-tag during
/// the session never changes what a later test runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SessionImage {
    /// The reference to use (`alpine:3.19.1` unless `DOCKER_HARNESS_IMAGE` says otherwise).
    pub reference: String,
    /// The image ID (`sha256:…`).
    pub id: String,
    /// The paths the image declares as volumes, read when the session resolved it (none
    /// recorded: asked of the daemon once per process).
    #[serde(default)]
    pub(crate) volumes: Option<Vec<String>>,
}

impl SessionImage {
    pub(crate) fn new(reference: impl Into<String>, id: impl Into<String>, volumes: Option<Vec<String>>) -> Self {
        SessionImage { reference: reference.into(), id: id.into(), volumes }
    }
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
    blocking::run(async { resolve_once(&settings()?.image).await }).await
}

/// Resolves the session image, once per session (what a container is made from).
pub(crate) async fn session_image_resolved() -> Result<SessionImage> {
    blocking::run(crate::docker::calls::why("context", async { resolve_once(&settings()?.image).await })).await
}

/// Resolves any image as the session image is resolved: present, or pulled (through the
/// mirror, with the docker CLI's credentials) at most once per session across processes,
/// under `DOCKER_HARNESS_PULL`. What a container of `reference` should name is the answer's
/// `reference` (the same, unless a digest reference came through the mirror).
///
/// # Errors
/// As [`session_image`], and [`Error::RegistryAuth`] when the registry wants credentials
/// that were not found or were refused.
pub(crate) async fn ensure(reference: &str) -> Result<SessionImage> {
    let reference = reference.to_string();
    blocking::run(async move { resolve_once(&reference).await }).await
}

/// The paths an image declares as volumes (`VOLUME`), sorted.
pub(crate) fn declared(info: &bollard::models::ImageInspect) -> Vec<String> {
    let mut paths: Vec<String> =
        info.config.as_ref().and_then(|c| c.volumes.clone()).unwrap_or_default().into_iter().collect();
    paths.sort();
    paths
}

/// Records an image this session made itself (a build) as resolved, so that [`ensure`]
/// takes it as it is under every pull policy instead of asking a registry for it.
///
/// # Errors
/// [`Error::State`] when the session's state cannot be written.
#[allow(dead_code, reason = "for image builds, which name their results and FROM images through ensure")]
pub(crate) fn record_local(reference: &str, id: &str) -> Result<()> {
    let sess = session::current()?;
    std::fs::create_dir_all(sess.state_dir()).map_err(|source| Error::State {
        action: "create the state directory",
        path: sess.state_dir().into(),
        source,
    })?;
    let done = sess.state_dir().join(format!("{}.done.json", once_key(reference)));
    session::write_json(&done, &SessionImage::new(reference, id, None))
}

/// The session's once-key for a reference: readable, and exact (sanitizing alone would
/// make `a/b:1` and `a-b:1` one image).
fn once_key(reference: &str) -> String {
    // FNV-1a: stable across processes and builds, unlike std's hasher.
    let hash =
        reference.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("image-{}-{hash:016x}", naming::sanitize(reference))
}

async fn resolve_once(image: &str) -> Result<SessionImage> {
    let s = settings()?;
    let sess = session::current()?;
    let key = once_key(image);
    let failed = sess.state_dir().join(format!("{key}.failed.json"));
    if let Some(e) = recent_failure(&failed, image) {
        return Err(e);
    }
    // A pull can take minutes on a slow link; the others wait for it rather than pull too.
    let result = session::once(sess.state_dir(), &key, Duration::from_secs(900), || async {
        let r = resolve(&docker::client().await?, image, s.pull, s.mirror.as_deref()).await;
        // Said once for every process waiting behind this one: they fail at once with the
        // same answer instead of each repeating the retries.
        if let Some(record) = r.as_ref().err().and_then(FailedPull::of) {
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
    /// Set for refused credentials: the registry and where they were looked for.
    #[serde(default)]
    auth: Option<(String, String)>,
}

impl FailedPull {
    fn of(e: &Error) -> Option<FailedPull> {
        let at = labels::unix_now();
        match e {
            Error::ImagePull { source_ref, message, .. } => {
                Some(FailedPull { source_ref: source_ref.clone(), message: message.clone(), at, auth: None })
            }
            Error::RegistryAuth { image, registry, looked, message } => Some(FailedPull {
                source_ref: image.clone(),
                message: message.clone(),
                at,
                auth: Some((registry.clone(), looked.clone())),
            }),
            _ => None,
        }
    }
}

fn recent_failure(path: &std::path::Path, image: &str) -> Option<Error> {
    let f: FailedPull = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let age = labels::unix_now().saturating_sub(f.at);
    if age >= FAILURE_MEMORY_SECS {
        return None;
    }
    let message = format!("{} (as another process of this session found {age} s ago)", f.message);
    Some(match f.auth {
        Some((registry, looked)) => Error::RegistryAuth { image: f.source_ref, registry, looked, message },
        None => Error::ImagePull {
            image: image.to_string(),
            source_ref: f.source_ref,
            not_found: pull::classify(&f.message) == Failure::NotFound,
            message,
            attempts: 0,
        },
    })
}

async fn resolve(docker: &Docker, image: &str, policy: PullPolicy, mirror: Option<&str>) -> Result<SessionImage> {
    // An image ID names what is here; no registry has it under that name.
    let policy =
        if image.starts_with("sha256:") && policy == PullPolicy::Always { PullPolicy::Missing } else { policy };
    crate::docker::calls::note("image", "inspect_image");
    let present = match bounded(docker.inspect_image(image)).await {
        Ok(i) => i.id.clone().map(|id| (id, declared(&i))),
        Err(e) if is_404(&e) => None,
        Err(e) => return Err(Error::docker(format!("inspect image {image}"), e)),
    };
    match (present, policy) {
        (Some((id, volumes)), PullPolicy::Missing | PullPolicy::Never) => {
            return Ok(SessionImage::new(image, id, Some(volumes)))
        }
        (None, PullPolicy::Never) => return Err(Error::ImageMissing { image: image.to_string() }),
        _ => {}
    }
    let source = mirror.and_then(|m| mirrored(image, m)).unwrap_or_else(|| image.to_string());
    let started = Instant::now();
    pull::with_retries(docker, image, &source).await?;
    // Read before the mirror's tag goes: the repository digest is recorded under it.
    let digest = bounded(docker.inspect_image(&source))
        .await
        .ok()
        .and_then(|i| i.repo_digests)
        .and_then(|d| d.into_iter().next());
    // A digest reference cannot be tagged; containers then use the mirror's reference.
    let reference = if source != image && !image.contains('@') {
        let (repo, tag) = split_tag(image);
        let repo = engine::current().await?.hub_tag_repository(repo);
        bounded(docker.tag_image(&source, Some(TagImageOptions { repo: Some(repo), tag: Some(tag.to_string()) })))
            .await
            .map_err(|e| Error::docker(format!("tag {source} as {image}"), e))?;
        // Only the mirror's tag goes; the image stays under the reference the tests use.
        let untag = RemoveImageOptions { force: false, noprune: true, ..Default::default() };
        let _ = bounded(docker.remove_image(&source, Some(untag), None)).await;
        image.to_string()
    } else {
        source.clone()
    };
    let info = bounded(docker.inspect_image(&reference))
        .await
        .map_err(|e| Error::docker(format!("inspect image {reference} after pulling it"), e))?;
    let volumes = declared(&info);
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
    Ok(SessionImage::new(reference, id, Some(volumes)))
}

/// Reads every pull recorded for a session.
pub fn pull_records(session_state_dir: &std::path::Path) -> Vec<PullRecord> {
    std::fs::read_to_string(session_state_dir.join("pulls.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
