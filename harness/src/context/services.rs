//! What a test brings up beyond single resources: images it builds and compose files.

use super::TestContext;
use crate::compose::{self, ComposeGuard, ComposeSpec};
use crate::error::Result;
use crate::image::build::{self as image_build, BuildSpec, ImageGuard};

impl TestContext {
    /// Builds an image for this test. Its tag is unique to the test, it carries the
    /// harness's labels and its content hash, and it goes at teardown with every image and
    /// container its build made (every step of every stage, as the build reported them;
    /// what the daemon's cache lent it stays). Use it by [`BuiltImage::reference`]; to
    /// build once for the whole session instead, see [`crate::session_build`].
    ///
    /// # Errors
    /// [`Error::BuildFailed`](crate::Error::BuildFailed) naming the step that failed, with the build's last lines
    /// (what the build made by then is removed); [`Error::BuildContext`](crate::Error::BuildContext) for a context or
    /// Dockerfile that cannot be read; otherwise as [`TestContext::network`].
    ///
    /// [`BuiltImage::reference`]: crate::BuiltImage::reference
    ///
    /// # Example
    /// ```no_run
    /// use docker_harness::{BuildSpec, ContainerSpec, TestContext};
    ///
    /// # async fn f() -> anyhow::Result<()> {
    /// let ctx = TestContext::new()?;
    /// let image = ctx.build(BuildSpec::new("app", "fixtures/app").with_target("runtime")).await?;
    /// let app = ctx.container(ContainerSpec::new("app").with_image(&image.reference)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn build(&self, spec: BuildSpec) -> Result<ImageGuard> {
        self.prepare().await?;
        image_build::for_scope(self.scope.clone(), spec).await
    }

    /// Brings a compose file up as part of this test's world: under a project name of the
    /// test's own, with the test's labels on every container, network (the default one
    /// included) and volume compose creates, fixed host ports made ephemeral ones on the
    /// loopback, and each service's waits met. The compose process carries the test's
    /// process marker. Runs the `docker compose` plugin, else the standalone
    /// `docker-compose`, or the command `DOCKER_HARNESS_COMPOSE` names.
    ///
    /// ```no_run
    /// use docker_harness::{ComposeSpec, TestContext, WaitFor};
    ///
    /// # async fn f() -> anyhow::Result<()> {
    /// let ctx = TestContext::new()?;
    /// let app = ctx
    ///     .compose(
    ///         ComposeSpec::new("app", "fixtures/compose/web-and-client.yml")
    ///             .with_wait("web", WaitFor::http(8080, "/", 200)),
    ///     )
    ///     .await?;
    /// let out = app.service("client")?.exec(["wget", "-q", "-O", "-", "http://web:8080/"]).await?;
    /// assert_eq!(out.exit_code, 0);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ComposeError::Unavailable`](crate::ComposeError::Unavailable) when no compose program runs; [`ComposeError::File`](crate::ComposeError::File)
    /// when the file cannot be read, names a `container_name` or a fixed network or volume
    /// `name:`, or an image the daemon does not have; [`ComposeError::Failed`](crate::ComposeError::Failed) when compose
    /// fails (its last lines of output); the wait errors as for
    /// [`TestContext::container`]. On any of them, what compose created is removed.
    pub async fn compose(&self, spec: ComposeSpec) -> Result<ComposeGuard> {
        self.prepare().await?;
        compose::up::up(self.scope.clone(), spec).await
    }
}
