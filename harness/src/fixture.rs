//! The rstest fixture, behind the default-on `rstest` feature.

use crate::context::TestContext;

/// The rstest fixture: a fresh [`TestContext`] named after the running test.
///
/// ```no_run
/// use docker_harness::{ctx, TestContext};
/// use rstest::rstest;
///
/// #[rstest]
/// #[tokio::test]
/// async fn my_test(ctx: TestContext) -> anyhow::Result<()> {
///     let _net = ctx.network("net").await?;
///     Ok(())
/// }
/// ```
///
/// # Panics
/// When the environment is invalid (e.g. `DOCKER_HARNESS_PULL=sometimes`): a fixture
/// cannot return an error, and the message says what to fix.
#[rstest::fixture]
pub fn ctx() -> TestContext {
    match TestContext::new() {
        Ok(c) => c,
        Err(e) => panic!("docker-harness: {e}"),
    }
}
