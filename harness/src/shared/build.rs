//! Images built once per session: the first process to ask builds under the session's
//! cross-process lock (as the session image is pulled), the others wait for it and reuse
//! it. The build's key is its content hash, so a changed context, Dockerfile, argument or
//! base image is a new build and an unchanged one is not. The image is labelled as the
//! session's shared containers are, with the session's runner as its life, so it goes by
//! the same rules once the session is over, with everything its build made.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::image::build::{self, BuildSpec, BuiltImage};
use crate::{blocking, config, docker, labels, naming, owner, session, sweep, watcher};

/// How long a process waits for another one's build of the same content.
const BUILD_LIMIT: Duration = Duration::from_secs(1800);

/// Builds `spec` once for the whole session, across every test process; later callers
/// with the same content get the same image without building. It is removed when the
/// session is over (by the session's watcher once its runner is gone, else by the next
/// session's check or `docker-harness reap`), with every image its build made.
///
/// The build cache ([`BuildSpec::cache_for`]) does not apply here: a session build lives
/// exactly as long as its session.
///
/// # Errors
/// As [`crate::TestContext::build`].
///
/// # Example
/// ```no_run
/// use docker_harness::{session_build, session_image, BuildSpec, ContainerSpec, TestContext};
///
/// # async fn f() -> anyhow::Result<()> {
/// let base = session_image().await?.reference;
/// let image = session_build(BuildSpec::new("tools", "fixtures/tools").with_arg("BASE", base)).await?;
/// let ctx = TestContext::new()?;
/// let tools = ctx.container(ContainerSpec::new("tools").with_image(&image.reference)).await?;
/// # Ok(()) }
/// ```
pub async fn session_build(spec: BuildSpec) -> Result<BuiltImage> {
    blocking::run(async move {
        let sess = session::current()?;
        watcher::ensure();
        sweep::preflight().await?;
        let docker = docker::client().await?;
        let prep = build::prepare(&spec).await?;
        let stem = naming::prefix("build", sess.id());
        let tag = build::tag_for(&stem, spec.logical_name(), &prep.hash);
        let key = format!("build-{}", &prep.hash[..32]);
        let image: BuiltImage = session::once(sess.state_dir(), &key, BUILD_LIMIT, || async {
            let task = uuid::Uuid::new_v4().to_string();
            let shared_key = format!("build-{}", &prep.hash[..16]);
            let labels = labels::for_shared(&shared_key, sess.id(), &task, config::settings()?.ttl, &owner::runner());
            build::build(&docker, &spec, prep, &tag, labels, "session").await
        })
        .await?;
        match crate::retry::bounded(docker.inspect_image(&image.reference)).await {
            Ok(i) if i.id.as_deref() == Some(image.id.as_str()) => Ok(image),
            Ok(i) => Err(Error::ImageChanged {
                image: image.reference.clone(),
                expected: image.id.clone(),
                found: i.id.unwrap_or_default(),
            }),
            Err(e) if crate::engine::is_404(&e) => Err(Error::ImageChanged {
                image: image.reference.clone(),
                expected: image.id.clone(),
                found: "<absent>".to_string(),
            }),
            Err(e) => Err(Error::docker(format!("inspect image {}", image.reference), e)),
        }
    })
    .await
}
