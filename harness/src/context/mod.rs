//! `TestContext`: one test's Docker world, the façade over its scope. It names and labels
//! everything the test creates and removes whatever is left at the end, in dependency order.

mod services;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::budget::{Counts, TeardownReport};
use crate::config::{self, KeepPolicy};
use crate::container::{self, ContainerGuard, ContainerSpec};
use crate::docker::calls;
use crate::error::{Error, Result};
use crate::image::{self, SessionImage};
use crate::network::{self, NetworkGuard, NetworkSpec};
use crate::resource::Resource;
use crate::scope::{self, Scope};
use crate::volume::{self, VolumeGuard, VolumeSpec};
use crate::{blocking, farewell, seed, session, signals, sweep, watcher};

/// How long `Drop` may spend removing a context's leftovers before it gives up and reports.
const DROP_LIMIT: Duration = Duration::from_secs(30);
/// How long `Drop` waits for a pre-test check this process started, so it is recorded once
/// instead of cut off by the process's exit (it takes well under a second on a calm daemon).
const PREFLIGHT_SETTLE: Duration = Duration::from_secs(10);

/// One test's Docker world.
///
/// Every container, network and volume created through it gets a unique name
/// (`dh-<test name>-<short task id>-<logical name>`) and the harness's labels, so tests
/// running in parallel can use the same logical names without colliding. When the
/// context is dropped (or [`cleanup`](Self::cleanup) is awaited), whatever is left is
/// removed: containers, then networks and volumes, each confirmed gone by Docker.
///
/// # Example
/// ```no_run
/// use docker_harness::{ContainerSpec, TestContext};
///
/// # async fn f() -> docker_harness::Result<()> {
/// let ctx = TestContext::new()?;
/// let net = ctx.network("backend").await?;
/// let data = ctx.volume("data").await?;
/// let web = ctx
///     .container(
///         ContainerSpec::new("web")
///             .with_cmd(["sleep", "3600"])
///             .with_network(&net)
///             .with_volume(&data, "/data"),
///     )
///     .await?;
/// let out = web.exec(["sh", "-c", "echo hello > /data/greeting && cat /data/greeting"]).await?;
/// assert_eq!(out.stdout, "hello\n");
/// ctx.cleanup().await?; // or let it drop
/// # Ok(()) }
/// ```
///
/// # Resource leaking
/// Drop cannot run when the process is killed (SIGKILL, an OOM kill, a power cut). SIGTERM
/// and SIGINT are handled: the process removes its resources and exits. What a SIGKILL
/// leaves behind carries this process's owner label, and the next session's pre-test check
/// (or `docker-harness reap`) removes it once the process is gone.
pub struct TestContext {
    scope: Arc<Scope>,
    /// The session's pre-test check and this test's own leftover check, once per context.
    prepared: OnceCell<()>,
    /// The session image, checked unchanged once per context.
    image: OnceCell<SessionImage>,
}

impl fmt::Debug for TestContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestContext")
            .field("test", &self.scope.test_name)
            .field("task_id", &self.scope.task_id)
            .field("prefix", &self.scope.prefix)
            .field("tracked", &self.scope.tracked_count())
            .finish()
    }
}

impl TestContext {
    /// A context named after the running test (`NEXTEST_TEST_NAME`, else the libtest thread
    /// name, else `unnamed-test`). Cheap: nothing is asked of Docker until the first resource.
    ///
    /// # Errors
    /// [`Error::InvalidEnv`] when a `DOCKER_HARNESS_*` variable holds a bad value.
    pub fn new() -> Result<TestContext> {
        TestContext::named(scope::running_test_name().as_deref().unwrap_or("unnamed-test"))
    }

    /// A context for a test of the given name (any string: it is sanitised for Docker).
    ///
    /// # Errors
    /// As [`TestContext::new`].
    pub fn named(test_name: &str) -> Result<TestContext> {
        let scope = Scope::new(test_name, session::current()?, config::settings()?, Some(container::last_words));
        signals::install();
        sweep::start_preflight();
        Ok(TestContext { scope: Arc::new(scope), prepared: OnceCell::new(), image: OnceCell::new() })
    }

    /// The unique ID of this context (a UUID), also its `docker-harness.task` label.
    pub fn task_id(&self) -> &str {
        &self.scope.task_id
    }

    /// The test's name as given.
    pub fn test_name(&self) -> &str {
        &self.scope.test_name
    }

    /// The prefix of every Docker name this context makes: `dh-<test>-<short task id>`,
    /// without a trailing separator: the context's own names are `<prefix>-<logical>`
    /// ([`name_for`](Self::name_for) makes one). Resources whose names start with it are
    /// removed at teardown, whoever created them; a program under test that names its
    /// resources `<prefix>-<anything>` keeps the shape.
    pub fn prefix(&self) -> &str {
        self.scope.mark_used();
        &self.scope.prefix
    }

    /// The Docker name this context gives to a resource with this logical name:
    /// `<prefix>-<logical>`, the logical name cleaned and cut to fit when it has to be.
    pub fn name_for(&self, logical: &str) -> String {
        self.scope.mark_used();
        self.scope.name_for(logical)
    }

    /// The labels every resource of this context carries. Hand them to a program under test
    /// so that what it creates is found and removed with the test's own resources.
    pub fn labels(&self) -> &HashMap<String, String> {
        self.scope.shared_labels()
    }

    /// The labels as `--label key=value` arguments for a `docker` command line, sorted.
    pub fn label_args(&self) -> Vec<String> {
        let mut pairs: Vec<_> = self.labels().iter().collect();
        pairs.sort();
        pairs.into_iter().flat_map(|(k, v)| ["--label".to_string(), format!("{k}={v}")]).collect()
    }

    /// A command that carries this test's marker in its environment
    /// (`DOCKER_HARNESS_TASK=<task id>`): every process it starts inherits it, however it
    /// detaches (`setsid`, a double fork), and the context ends them all at teardown (and
    /// every exit path does: SIGTERM, the watcher after a SIGKILL, the next session's check).
    /// A process that clears its environment (`env -i`, sudo, systemd-run) escapes it.
    /// Linux only: elsewhere no process is found.
    ///
    /// ```no_run
    /// # fn f(ctx: &docker_harness::TestContext) -> std::io::Result<()> {
    /// let status = ctx.command("sh").args(["-c", "setsid sleep 300 &"]).status()?;
    /// assert!(status.success()); // the detached sleep ends with the context
    /// # Ok(()) }
    /// ```
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        let mut cmd = std::process::Command::new(program);
        self.mark(&mut cmd);
        cmd
    }

    /// As [`command`](Self::command), for tokio.
    pub fn tokio_command(&self, program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
        let (key, value) = self.process_marker();
        let mut cmd = tokio::process::Command::new(program);
        cmd.env(key, value);
        cmd
    }

    /// Marks a command built elsewhere as [`command`](Self::command) does.
    pub fn mark<'c>(&self, cmd: &'c mut std::process::Command) -> &'c mut std::process::Command {
        let (key, value) = self.process_marker();
        cmd.env(key, value)
    }

    /// The marker as a variable and its value, for a command builder of another crate
    /// (assert_cmd's `Command::env`, say).
    pub fn process_marker(&self) -> (&'static str, &str) {
        self.scope.process_marker()
    }

    /// Sets whether this context's resources are left behind for debugging (overriding
    /// `DOCKER_HARNESS_KEEP`). Resources created after a policy other than `Never` is set
    /// carry a keep label, so other sessions' sweeps spare them until it expires.
    pub fn set_keep(&self, policy: KeepPolicy) {
        self.scope.set_keep(policy);
    }

    /// Creates a network named from `logical`.
    ///
    /// # Errors
    /// Daemon, naming and API errors as [`Error`].
    pub async fn network(&self, logical: &str) -> Result<NetworkGuard> {
        self.create_network(NetworkSpec::new(logical)).await
    }

    /// Creates a network from a spec.
    ///
    /// # Errors
    /// As [`TestContext::network`].
    pub async fn create_network(&self, spec: NetworkSpec) -> Result<NetworkGuard> {
        self.prepare().await?;
        network::create(self.scope.clone(), spec).await
    }

    /// Creates a volume named from `logical`.
    ///
    /// # Errors
    /// As [`TestContext::network`].
    pub async fn volume(&self, logical: &str) -> Result<VolumeGuard> {
        self.create_volume(VolumeSpec::new(logical)).await
    }

    /// Creates a volume from a spec (seeded from a host directory when the spec says so).
    ///
    /// # Errors
    /// As [`TestContext::network`]; [`Error::Copy`] when the seed directory cannot be read.
    pub async fn create_volume(&self, spec: VolumeSpec) -> Result<VolumeGuard> {
        self.prepare().await?;
        let seed = spec.seed().map(ToOwned::to_owned);
        let made = volume::create(self.scope.clone(), spec).await?;
        if let Some(dir) = seed {
            let image = self.session_image().await?;
            seed::seed(self.scope.clone(), &made, &dir, image).await?;
        }
        Ok(made)
    }

    /// Creates (and, unless the spec says otherwise, starts) a container.
    ///
    /// # Errors
    /// [`Error::ImagePull`], [`Error::ImageMissing`], [`Error::RegistryAuth`] or
    /// [`Error::ImageChanged`] for its image (the session image, or the one
    /// [`ContainerSpec::with_image`] names, resolved the same way); otherwise as
    /// [`TestContext::network`].
    pub async fn container(&self, spec: ContainerSpec) -> Result<ContainerGuard> {
        self.prepare().await?;
        let image = match spec.image() {
            Some(i) => image::ensure(i).await?,
            None => self.session_image().await?,
        };
        container::create::for_scope(self.scope.clone(), spec, image).await
    }

    /// The session image, resolved once per context (from the session's record: no call to
    /// the daemon once the session has it).
    async fn session_image(&self) -> Result<image::SessionImage> {
        Ok(self.image.get_or_try_init(image::session_image_resolved).await?.clone())
    }

    /// Runs the test's body and marks the test failed when it returns `Err`, which no Drop
    /// can see: a failed test's containers then show their last log lines on stderr
    /// (`DOCKER_HARNESS_LOGS`, by default `on-failure`), as they do when it panics. A
    /// container whose guard drops inside the body has its lines read before it goes, and
    /// shown only if the body fails. The result is handed back unchanged.
    ///
    /// ```no_run
    /// use docker_harness::{ctx, ContainerSpec, TestContext};
    /// use rstest::rstest;
    ///
    /// #[rstest]
    /// #[tokio::test]
    /// async fn the_worker_answers(ctx: TestContext) -> anyhow::Result<()> {
    ///     ctx.run(async {
    ///         let worker = ctx.container(ContainerSpec::new("worker").with_cmd(["sleep", "3600"])).await?;
    ///         anyhow::ensure!(worker.exec(["true"]).await?.exit_code == 0, "the worker is not well");
    ///         Ok(())
    ///     })
    ///     .await
    /// }
    /// ```
    ///
    /// # Errors
    /// The body's own.
    pub async fn run<T, E>(&self, body: impl Future<Output = std::result::Result<T, E>>) -> std::result::Result<T, E> {
        let run = self.scope.farewell.enter_run();
        let result = body.await;
        run.ended(result.is_ok());
        result
    }

    /// Declares how many containers, networks and volumes at most may be created under this
    /// test's identity (by the harness, or adopted from a program under test). Teardown
    /// reports the numbers and fails when one is exceeded: [`finish`](Self::finish) returns
    /// [`Error::BudgetExceeded`]; Drop panics (unless the thread is already panicking), the
    /// one place where Drop panics, so that a test relying on Drop still fails.
    /// The budget is also recorded in the session's `declared.jsonl` for audits.
    pub fn set_budget(&self, budget: Counts) {
        self.scope.set_budget(budget);
    }

    /// States how many containers, networks and volumes this test creates under its
    /// identity, for an audit that compares it with what Docker saw (the e2e suite's ledger).
    /// Unlike [`set_budget`](Self::set_budget) nothing fails here; an audit uses the budget
    /// when a test declares nothing else.
    pub fn declare(&self, counts: Counts) {
        self.scope.record_counts("declared", counts);
    }

    /// Removes everything this context created or can adopt (resources with its task label or
    /// a name starting with its prefix, whoever created them), in dependency order, and
    /// reports what was created, adopted and left unlabelled. Afterwards Drop has nothing
    /// left to do.
    ///
    /// # Errors
    /// [`Error::Cleanup`] listing each resource still there and why; then
    /// [`Error::BudgetExceeded`] with the report when the budget was exceeded.
    pub async fn finish(&self) -> Result<TeardownReport> {
        let show_logs = self.scope.farewell.shows_at_end();
        let teardown = blocking::run(scope::teardown(self.scope.clone(), self.scope.keeping_now(), show_logs)).await;
        let said = self.scope.farewell.take_held();
        if show_logs {
            farewell::print(&said);
        }
        let report = teardown?;
        let over = report.over_budget();
        if over.is_empty() {
            Ok(report)
        } else {
            Err(Error::BudgetExceeded { over, report: Box::new(report) })
        }
    }

    /// [`finish`](Self::finish) without the report.
    ///
    /// # Errors
    /// As [`TestContext::finish`].
    pub async fn cleanup(&self) -> Result<()> {
        self.finish().await.map(drop)
    }

    /// Stops tracking everything created so far: nothing of it is removed by this context.
    /// Returns what was released, so the caller can remove it later (or leave it for
    /// debugging; the next session's sweep removes it once this process is gone).
    pub fn release(&self) -> Vec<Resource> {
        self.scope.release()
    }

    /// Per context, before it creates anything: the session's pre-test check (once per
    /// session) and leftovers of earlier runs of this same test.
    async fn prepare(&self) -> Result<()> {
        self.scope.mark_prepared();
        let test_name = self.scope.test_name.clone();
        let checks = || {
            blocking::run(calls::why("context", async move {
                watcher::ensure();
                sweep::preflight().await?;
                sweep::same_test(&test_name).await
            }))
        };
        self.prepared.get_or_try_init(checks).await.map(drop)
    }
}

impl Drop for TestContext {
    fn drop(&mut self) {
        sweep::settle_preflight(PREFLIGHT_SETTLE);
        if !self.scope.has_tracked() && !self.scope.used() && !self.scope.prepared() {
            return;
        }
        let Some(report) = scope::teardown_bounded(&self.scope, self.scope.keeping_now(), DROP_LIMIT) else {
            return;
        };
        let over = report.over_budget();
        // The one panic in a Drop: a budget the test relies on must fail the test, and a
        // thread that is already panicking has failed anyway (a second panic would abort).
        if !over.is_empty() && !std::thread::panicking() {
            panic!("{}", Error::BudgetExceeded { over, report: Box::new(report) });
        }
    }
}
