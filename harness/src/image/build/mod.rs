//! Images that tests build: a spec (context, Dockerfile, arguments, target), its content
//! hash, and the build for one test, whose image and every intermediate image and container
//! go at its teardown. The once-per-session build and its façade live above, in `shared`.

mod context;
mod dockerfile;
mod output;
mod run;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::Docker;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use self::context::DockerfileSource;
use crate::engine::is_404;
use crate::error::{Error, Result};
use crate::guard::{guard_methods, Armed};
use crate::resource::{Kind, Resource};
use crate::scope::Scope;
use crate::{blocking, docker, labels, session};

/// The label that carries a built image's content hash.
pub const CONTENT_HASH: &str = "docker-harness.content-hash";

/// What image to build.
///
/// ```
/// use docker_harness::BuildSpec;
/// let spec = BuildSpec::new("app", "fixtures/build")
///     .with_dockerfile("Dockerfile")
///     .with_arg("BASE", "alpine:3.19.1")
///     .with_target("runtime");
/// assert_eq!(spec.logical_name(), "app");
/// ```
#[must_use]
#[derive(Debug, Clone)]
pub struct BuildSpec {
    logical: String,
    context: PathBuf,
    dockerfile: DockerfileSource,
    args: BTreeMap<String, String>,
    target: Option<String>,
    labels: HashMap<String, String>,
    cache_for: Option<Duration>,
}

impl BuildSpec {
    /// Builds the directory `context` (its `Dockerfile` unless told otherwise), leaving out
    /// what its `.dockerignore` excludes.
    pub fn new(logical: impl Into<String>, context: impl Into<PathBuf>) -> Self {
        BuildSpec {
            logical: logical.into(),
            context: context.into(),
            dockerfile: DockerfileSource::Path("Dockerfile".into()),
            args: BTreeMap::new(),
            target: None,
            labels: HashMap::new(),
            cache_for: None,
        }
    }

    /// The logical name.
    pub fn logical_name(&self) -> &str {
        &self.logical
    }

    /// The Dockerfile's path inside the context.
    pub fn with_dockerfile(mut self, path: impl Into<String>) -> Self {
        self.dockerfile = DockerfileSource::Path(path.into());
        self
    }

    /// The Dockerfile as text (the context still supplies the files it copies).
    pub fn with_dockerfile_text(mut self, text: impl Into<String>) -> Self {
        self.dockerfile = DockerfileSource::Text(text.into());
        self
    }

    /// A build argument (`--build-arg key=value`).
    pub fn with_arg(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.args.insert(key.into(), value.into());
        self
    }

    /// The stage to build (`--target`).
    pub fn with_target(mut self, stage: impl Into<String>) -> Self {
        self.target = Some(stage.into());
        self
    }

    /// An extra label on the built image (the harness's own are always added).
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Opt-in build cache for a fast local loop: the built image is kept for `ttl` (a
    /// `docker-harness.keep-until` label) and any later build of the same content hash, in
    /// this session or the next, reuses it instead of building. The sweep removes it, and
    /// what its build made, once `ttl` has passed. Off by default: CI builds afresh.
    pub fn cache_for(mut self, ttl: Duration) -> Self {
        self.cache_for = Some(ttl);
        self
    }

    pub(crate) fn cached(&self) -> Option<Duration> {
        self.cache_for
    }
}

/// A built image: the reference to run it by (a tag unique to the test or the session) and
/// what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BuiltImage {
    /// The tag to use in [`crate::ContainerSpec::with_image`].
    pub reference: String,
    /// The image ID (`sha256:…`).
    pub id: String,
    /// The content hash of what was built (context, Dockerfile, arguments, target and the
    /// IDs of the base images), also its `docker-harness.content-hash` label.
    pub content_hash: String,
    /// Every other image the build made (intermediate images of every stage), removed with
    /// it. Empty when the image was reused from the build cache.
    pub intermediates: Vec<String>,
}

/// One real build, as recorded in the session's `builds.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BuildRecord {
    /// The logical name.
    pub logical: String,
    /// The tag it got.
    pub reference: String,
    /// Its content hash.
    pub content_hash: String,
    /// `test`, `session` or `cache`.
    pub scope: String,
    /// How long it took, in milliseconds.
    pub duration_ms: u128,
    /// The process that built it.
    pub pid: u32,
}

/// Reads every build recorded for a session.
pub fn build_records(session_state_dir: &std::path::Path) -> Vec<BuildRecord> {
    std::fs::read_to_string(session_state_dir.join("builds.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// An image built for one test, removed (with everything its build made) when the guard
/// drops or the test's context tears down. It dereferences to [`BuiltImage`].
///
/// # Resource leaking
/// As for [`crate::TestContext`]: a killed process cannot run Drop; the watcher and the
/// sweep find the image by its labels and remove what its build made with it (on the host
/// that built it, which recorded the intermediate images).
pub struct ImageGuard {
    armed: Armed,
    logical: String,
    image: BuiltImage,
}

impl fmt::Debug for ImageGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImageGuard").field("reference", &self.image.reference).field("id", &self.image.id).finish()
    }
}

impl std::ops::Deref for ImageGuard {
    type Target = BuiltImage;

    fn deref(&self) -> &BuiltImage {
        &self.image
    }
}

impl ImageGuard {
    guard_methods!("image", " (its tag, then every image its build made)", " (e.g. a container still uses it)");
}

/// A packed spec with its content hash.
pub(crate) struct Prepared {
    pub(crate) hash: String,
    tar: Vec<u8>,
    dockerfile: String,
}

/// Packs the context and hashes it with everything else that decides what gets built.
pub(crate) async fn prepare(spec: &BuildSpec) -> Result<Prepared> {
    let (dir, df) = (spec.context.clone(), spec.dockerfile.clone());
    let packed = tokio::task::spawn_blocking(move || context::pack(&dir, &df))
        .await
        .map_err(|e| Error::BuildContext {
            logical: spec.logical.clone(),
            path: spec.context.clone(),
            reason: format!("packing the context stopped: {e}"),
            help: "see the panic above",
        })?
        .map_err(|(path, reason)| Error::BuildContext {
            logical: spec.logical.clone(),
            path,
            reason,
            help: "give an existing, readable context directory and a Dockerfile inside it (or its text)",
        })?;
    let mut h = Sha256::new();
    h.update(&packed.tar);
    h.update(format!("\0dockerfile={}\0target={:?}\0", packed.dockerfile, spec.target));
    for (k, v) in &spec.args {
        h.update(format!("arg {k}={v}\0"));
    }
    // Each base is resolved as the session image is (once per session, pull policy, mirror,
    // credentials), so the builder never pulls on its own, and its ID goes into the hash.
    for base in dockerfile::base_images(&packed.dockerfile_text, &spec.args) {
        let id = super::ensure(&base).await?.id;
        h.update(format!("from {base}={id}\0"));
    }
    let hash: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(Prepared { hash, tar: packed.tar, dockerfile: packed.dockerfile })
}

/// Builds `prep` under `tag` with `labels` (plus the content hash) and records the build.
pub(crate) async fn build(
    docker: &Docker,
    spec: &BuildSpec,
    prep: Prepared,
    tag: &str,
    mut labels: HashMap<String, String>,
    scope_name: &str,
) -> Result<BuiltImage> {
    let started = Instant::now();
    labels.extend(spec.labels.clone());
    labels.insert(CONTENT_HASH.to_string(), prep.hash.clone());
    let req = run::Request {
        logical: &spec.logical,
        tag,
        tar: prep.tar,
        dockerfile: &prep.dockerfile,
        args: spec.args.clone().into_iter().collect(),
        target: spec.target.as_deref(),
        labels,
    };
    let (id, made) = run::build(docker, req).await?;
    let record = BuildRecord {
        logical: spec.logical.clone(),
        reference: tag.to_string(),
        content_hash: prep.hash.clone(),
        scope: scope_name.to_string(),
        duration_ms: started.elapsed().as_millis(),
        pid: std::process::id(),
    };
    session::append_record(&session::current()?.state_dir().join("builds.jsonl"), &record)?;
    // Containers of it are then never sent to a registry for it, whatever the pull policy.
    super::record_local(tag, &id)?;
    Ok(BuiltImage { reference: tag.to_string(), id, content_hash: prep.hash, intermediates: made.images })
}

/// The cached image for this hash, if one is still inside its keep window.
async fn from_cache(docker: &Docker, tag: &str, hash: &str) -> Result<Option<BuiltImage>> {
    let info = match crate::retry::bounded(docker.inspect_image(tag)).await {
        Ok(i) => i,
        Err(e) if is_404(&e) => return Ok(None),
        Err(e) => return Err(Error::docker(format!("inspect cached image {tag}"), e)),
    };
    let l = info.config.and_then(|c| c.labels).unwrap_or_default();
    let fresh = l.get(labels::KEEP_UNTIL).and_then(|v| v.parse::<u64>().ok()).is_some_and(|t| labels::unix_now() < t);
    Ok((fresh && l.get(CONTENT_HASH).map(String::as_str) == Some(hash)).then(|| BuiltImage {
        reference: tag.to_string(),
        id: info.id.unwrap_or_default(),
        content_hash: hash.to_string(),
        intermediates: Vec::new(),
    }))
}

/// `repository:tag` for a build: the repository from `stem` and the logical name, the tag
/// the first 16 hex digits of the content hash.
pub(crate) fn tag_for(stem: &str, logical: &str, hash: &str) -> String {
    format!("{}:{}", crate::naming::resource_name(stem, logical), &hash[..16])
}

/// Builds for one test: tracked by its scope, so its teardown removes it. With the build
/// cache on, the image is reused or built under the cache's tag and kept for the cache's
/// time instead: the guard then removes nothing.
pub(crate) async fn for_scope(scope: Arc<Scope>, spec: BuildSpec) -> Result<ImageGuard> {
    // The daemon builds under the scope's labels: what it leaves is adopted like a program's.
    scope.mark_used();
    blocking::run(async move {
        let docker = docker::client().await?;
        let prep = prepare(&spec).await?;
        let (image, cached) = match spec.cached() {
            Some(ttl) => {
                let tag = tag_for("dh-cache", &spec.logical, &prep.hash);
                match from_cache(&docker, &tag, &prep.hash).await? {
                    Some(hit) => {
                        super::record_local(&hit.reference, &hit.id)?;
                        (hit, true)
                    }
                    None => {
                        let mut l = scope.labels_for_new(&HashMap::new());
                        l.insert(labels::KEEP_UNTIL.to_string(), (labels::unix_now() + ttl.as_secs()).to_string());
                        (build(&docker, &spec, prep, &tag, l, "cache").await?, true)
                    }
                }
            }
            None => {
                let tag = tag_for(&scope.prefix, &spec.logical, &prep.hash);
                let labels = scope.labels_for_new(&HashMap::new());
                (build(&docker, &spec, prep, &tag, labels, "test").await?, false)
            }
        };
        let res = Resource::new(Kind::Image, image.id.clone(), image.reference.clone());
        let mut armed = Armed::new(res, scope);
        if cached {
            armed.keep();
        }
        Ok(ImageGuard { armed, logical: spec.logical, image })
    })
    .await
}
