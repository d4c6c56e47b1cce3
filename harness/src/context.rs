//! `TestContext`: one test's Docker world. It names and labels everything the test creates,
//! remembers it, and removes whatever is left at the end, in dependency order.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::budget::{Counts, TeardownReport};
use crate::config::{self, KeepPolicy};
use crate::container::{ContainerGuard, ContainerSpec};
use crate::docker;
use crate::error::{Error, Result};
use crate::labels;
use crate::naming;
use crate::network::{NetworkGuard, NetworkSpec};
use crate::resource::{self, Resource};
use crate::session;
use crate::volume::{VolumeGuard, VolumeSpec};
use crate::{adopt, blocking, image, sweep};

/// How long `Drop` may spend removing a context's leftovers before it gives up and reports.
pub(crate) const DROP_LIMIT: Duration = Duration::from_secs(30);

/// One test's Docker world.
///
/// Every container, network and volume created through it gets a unique name
/// (`dh-<test name>-<short task id>-<logical name>`) and the harness's labels, so tests
/// running in parallel can use the same logical names without colliding. When the
/// context is dropped (or [`cleanup`](Self::cleanup) is awaited), whatever is left is
/// removed: containers, then networks, then volumes, each confirmed gone by Docker.
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
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) task_id: String,
    pub(crate) test_name: String,
    pub(crate) prefix: String,
    pub(crate) labels: HashMap<String, String>,
    pub(crate) tracked: Mutex<Vec<Resource>>,
    /// Every ID the harness created for this context, removed or not: what adoption skips.
    created_ids: Mutex<HashSet<String>>,
    created: Mutex<Counts>,
    budget: Mutex<Option<Counts>>,
    /// Set once the context's labels or prefix were handed out: a program may have used them.
    identity_shared: AtomicBool,
    keep: Mutex<KeepPolicy>,
    keep_ttl: Duration,
    prepared: tokio::sync::OnceCell<()>,
    image: tokio::sync::OnceCell<image::SessionImage>,
}

impl fmt::Debug for TestContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestContext")
            .field("test", &self.inner.test_name)
            .field("task_id", &self.inner.task_id)
            .field("prefix", &self.inner.prefix)
            .field("tracked", &self.inner.tracked.lock().map(|t| t.len()).unwrap_or(0))
            .finish()
    }
}

/// The current test's name: `NEXTEST_TEST_NAME`, else the thread's name (libtest names each
/// test's thread after it), else `None`.
fn detect_test_name() -> Option<String> {
    if let Ok(n) = std::env::var("NEXTEST_TEST_NAME") {
        if !n.is_empty() {
            return Some(n);
        }
    }
    let thread = std::thread::current();
    match thread.name() {
        Some("main") | None => None,
        Some(n) if n.starts_with("tokio-runtime-worker") || n.starts_with("docker-harness") => None,
        Some(n) => Some(n.to_string()),
    }
}

impl TestContext {
    /// A context named after the running test (`NEXTEST_TEST_NAME`, else the libtest thread
    /// name, else `unnamed-test`). Cheap: nothing is asked of Docker until the first resource.
    ///
    /// # Errors
    /// [`Error::InvalidEnv`] when a `DOCKER_HARNESS_*` variable holds a bad value.
    pub fn new() -> Result<TestContext> {
        TestContext::named(detect_test_name().as_deref().unwrap_or("unnamed-test"))
    }

    /// A context for a test of the given name (any string: it is sanitised for Docker).
    ///
    /// # Errors
    /// As [`TestContext::new`].
    pub fn named(test_name: &str) -> Result<TestContext> {
        let settings = config::settings()?;
        let session = session::current()?;
        let task_id = uuid::Uuid::new_v4().to_string();
        let prefix = naming::prefix(test_name, &task_id);
        let labels = labels::for_test(session.id(), test_name, &task_id, settings.ttl);
        crate::signals::install();
        Ok(TestContext {
            inner: Arc::new(Inner {
                task_id,
                test_name: test_name.to_string(),
                prefix,
                labels,
                tracked: Mutex::new(Vec::new()),
                created_ids: Mutex::new(HashSet::new()),
                created: Mutex::new(Counts::default()),
                budget: Mutex::new(None),
                identity_shared: AtomicBool::new(false),
                keep: Mutex::new(settings.keep),
                keep_ttl: settings.keep_ttl,
                prepared: tokio::sync::OnceCell::new(),
                image: tokio::sync::OnceCell::new(),
            }),
        })
    }

    /// The unique ID of this context (a UUID), also its `docker-harness.task` label.
    pub fn task_id(&self) -> &str {
        &self.inner.task_id
    }

    /// The test's name as given.
    pub fn test_name(&self) -> &str {
        &self.inner.test_name
    }

    /// The prefix of every Docker name this context makes: `dh-<test>-<short task id>`.
    /// Resources whose names start with it are removed at teardown, whoever created them.
    pub fn prefix(&self) -> &str {
        self.inner.identity_shared.store(true, Ordering::Relaxed);
        &self.inner.prefix
    }

    /// The Docker name this context gives to a resource with this logical name.
    pub fn name_for(&self, logical: &str) -> String {
        naming::resource_name(&self.inner.prefix, logical)
    }

    /// The labels every resource of this context carries. Hand them to a program under test
    /// so that what it creates is found and removed with the test's own resources.
    pub fn labels(&self) -> &HashMap<String, String> {
        self.inner.identity_shared.store(true, Ordering::Relaxed);
        &self.inner.labels
    }

    /// The labels as `--label key=value` arguments for a `docker` command line, sorted.
    pub fn label_args(&self) -> Vec<String> {
        let mut pairs: Vec<_> = self.labels().iter().collect();
        pairs.sort();
        pairs.into_iter().flat_map(|(k, v)| ["--label".to_string(), format!("{k}={v}")]).collect()
    }

    /// Sets whether this context's resources are left behind for debugging (overriding
    /// `DOCKER_HARNESS_KEEP`). Resources created after a policy other than `Never` is set
    /// carry a keep label, so other sessions' sweeps spare them until it expires.
    pub fn set_keep(&self, policy: KeepPolicy) {
        if let Ok(mut k) = self.inner.keep.lock() {
            *k = policy;
        }
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
        crate::network::create(self.inner.clone(), spec).await
    }

    /// Creates a volume named from `logical`.
    ///
    /// # Errors
    /// As [`TestContext::network`].
    pub async fn volume(&self, logical: &str) -> Result<VolumeGuard> {
        self.create_volume(VolumeSpec::new(logical)).await
    }

    /// Creates a volume from a spec.
    ///
    /// # Errors
    /// As [`TestContext::network`].
    pub async fn create_volume(&self, spec: VolumeSpec) -> Result<VolumeGuard> {
        self.prepare().await?;
        let seed = spec.seed.clone();
        let volume = crate::volume::create(self.inner.clone(), spec).await?;
        if let Some(dir) = seed {
            let seeder = ContainerSpec::new(format!("{}-seed", volume.logical_name())).with_volume(&volume, "/seed");
            if crate::blocking::run(crate::engine::current()).await? == crate::engine::Engine::Podman {
                // Podman mounts a container's volumes only while it runs: a copy into a
                // created one lands in its own filesystem, under the volume's mount point.
                let seeder = self.container(seeder.with_cmd(["sleep", "3600"])).await?;
                seeder.copy_in(dir, "/seed", None).await?;
                seeder.remove().await?;
            } else {
                // Docker's copy API writes into a created container's volume mounts, so the
                // seeding container never has to run.
                let seeder = self.container(seeder.with_cmd(["true"]).with_copy(dir, "/seed").created_only()).await?;
                seeder.remove().await?;
            }
        }
        Ok(volume)
    }

    /// Creates (and, unless the spec says otherwise, starts) a container.
    ///
    /// # Errors
    /// [`Error::ImagePull`], [`Error::ImageMissing`] or [`Error::ImageChanged`] for the
    /// session image; otherwise as [`TestContext::network`].
    pub async fn container(&self, spec: ContainerSpec) -> Result<ContainerGuard> {
        self.prepare().await?;
        let image = match spec.image() {
            Some(i) => i.to_string(),
            // Checked once per context: every test sees whether the image changed under it,
            // without an inspect for each of its containers.
            None => self.inner.image.get_or_try_init(image::session_image_checked).await?.reference.clone(),
        };
        crate::container::create(self.inner.clone(), spec, image).await
    }

    /// Declares how many containers, networks and volumes at most may be created under this
    /// test's identity (by the harness, or adopted from a program under test). Teardown
    /// reports the numbers and fails when one is exceeded: [`finish`](Self::finish) returns
    /// [`Error::BudgetExceeded`]; Drop panics (unless the thread is already panicking), the
    /// one place where Drop panics, so that a test relying on Drop still fails.
    /// The budget is also recorded in the session's `declared.jsonl` for audits.
    pub fn set_budget(&self, budget: Counts) {
        if let Ok(mut b) = self.inner.budget.lock() {
            *b = Some(budget);
        }
        self.record_counts("budget", budget);
    }

    /// States how many containers, networks and volumes this test creates under its
    /// identity, for an audit that compares it with what Docker saw (the e2e suite's ledger,
    /// `make audit`). Unlike [`set_budget`](Self::set_budget) nothing fails here; an audit
    /// uses the budget when a test declares nothing else.
    pub fn declare(&self, counts: Counts) {
        self.record_counts("declared", counts);
    }

    fn record_counts(&self, what: &str, c: Counts) {
        if let Ok(sess) = session::current() {
            let record = serde_json::json!({
                "what": what, "task": self.inner.task_id, "test": self.inner.test_name,
                "containers": c.containers, "networks": c.networks, "volumes": c.volumes,
            });
            if let Err(e) = session::append_record(&sess.state_dir().join("declared.jsonl"), &record) {
                eprintln!("docker-harness: could not record the {what} counts of {}: {e}", self.inner.test_name);
            }
        }
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
        let (inner, keep) = (self.inner.clone(), self.inner.keeping_now());
        let report = blocking::run(async move { inner.teardown(keep).await }).await?;
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
        self.inner.tracked.lock().map(|mut t| std::mem::take(&mut *t)).unwrap_or_default()
    }

    /// Per context, before it creates anything: the session's pre-test check (once per
    /// session) and leftovers of earlier runs of this same test.
    async fn prepare(&self) -> Result<()> {
        let inner = self.inner.clone();
        blocking::run(async move {
            inner
                .prepared
                .get_or_try_init(|| async {
                    crate::watcher::ensure();
                    sweep::preflight().await?;
                    sweep::same_test(&inner.test_name).await
                })
                .await
                .map(drop)
        })
        .await
    }
}

impl Inner {
    pub(crate) fn track(&self, r: Resource) {
        if let Ok(mut c) = self.created.lock() {
            c.add(r.kind);
        }
        if let Ok(mut ids) = self.created_ids.lock() {
            ids.insert(r.id.clone());
        }
        if let Ok(mut t) = self.tracked.lock() {
            t.push(r);
        }
    }

    /// Whether teardown must look for adoptees: something was created, or the identity was
    /// handed to a program that may have created something.
    fn used(&self) -> bool {
        self.prepared.initialized() || self.identity_shared.load(Ordering::Relaxed)
    }

    pub(crate) fn untrack(&self, id: &str) {
        if let Ok(mut t) = self.tracked.lock() {
            t.retain(|r| r.id != id);
        }
    }

    /// The labels for a new resource: the context's, plus a keep label when keeping is on.
    pub(crate) fn labels_for_new(&self, extra: &HashMap<String, String>) -> HashMap<String, String> {
        let mut l = extra.clone();
        l.extend(self.labels.clone());
        if self.keep_policy() != KeepPolicy::Never {
            let until = labels::unix_now() + self.keep_ttl.as_secs();
            l.insert(labels::KEEP_UNTIL.to_string(), until.to_string());
        }
        l
    }

    pub(crate) fn keep_policy(&self) -> KeepPolicy {
        self.keep.lock().map(|k| *k).unwrap_or(KeepPolicy::Never)
    }

    /// Whether teardown should leave things in place now.
    pub(crate) fn keeping_now(&self) -> bool {
        match self.keep_policy() {
            KeepPolicy::Never => false,
            KeepPolicy::Always => true,
            KeepPolicy::OnFailure => std::thread::panicking(),
        }
    }

    /// `keep` is decided on the caller's thread: whether a test failed is whether *its*
    /// thread is panicking, which the harness's own threads cannot see.
    pub(crate) async fn teardown(&self, keep: bool) -> Result<TeardownReport> {
        let mut report = TeardownReport {
            created: self.created.lock().map(|c| *c).unwrap_or_default(),
            budget: self.budget.lock().map(|b| *b).unwrap_or_default(),
            ..Default::default()
        };
        if !self.used() {
            return Ok(report);
        }
        let docker = docker::client().await?;
        let known = self.created_ids.lock().map(|k| k.clone()).unwrap_or_default();
        report.adopted = adopt::find(&docker, &self.task_id, &self.prefix, &known).await?;
        for r in &report.adopted {
            report.created.add(r.kind);
        }
        report.unlabelled = report.adopted.iter().filter(|r| adopt::unlabelled(r)).cloned().collect();
        let mut items = self.tracked.lock().map(|t| t.clone()).unwrap_or_default();
        items.extend(report.adopted.iter().cloned());
        if keep {
            report_kept(&self.task_id, &items);
            report.kept = true;
            return Ok(report);
        }
        let failures = resource::remove_in_order(&docker, &items).await;
        if let Ok(mut t) = self.tracked.lock() {
            t.retain(|r| failures.iter().any(|f| f.name == r.name));
        }
        if failures.is_empty() {
            Ok(report)
        } else {
            Err(Error::Cleanup(failures))
        }
    }
}

/// Prints what is being kept and the one command that removes it later.
pub(crate) fn report_kept(task_id: &str, items: &[Resource]) {
    if items.is_empty() {
        return;
    }
    let names: Vec<String> = items.iter().map(|r| r.to_string()).collect();
    eprintln!(
        "docker-harness: keeping for debugging: {}; remove with: cargo run -p docker-harness -- clean --task {task_id}",
        names.join(", ")
    );
}

impl Drop for TestContext {
    fn drop(&mut self) {
        let has_tracked = self.inner.tracked.lock().map(|t| !t.is_empty()).unwrap_or(false);
        if !has_tracked && !self.inner.used() {
            return;
        }
        let (inner, keep) = (self.inner.clone(), self.inner.keeping_now());
        let report = match blocking::wait(async move { inner.teardown(keep).await }, DROP_LIMIT) {
            Some(Ok(report)) => report,
            Some(Err(Error::Cleanup(failures))) => {
                for f in failures {
                    eprintln!("docker-harness: could not remove {} {}: {}", f.kind, f.name, f.error);
                }
                return;
            }
            Some(Err(e)) => {
                eprintln!("docker-harness: teardown of {} failed: {e}", self.inner.prefix);
                return;
            }
            None => {
                eprintln!(
                    "docker-harness: teardown of {} did not finish within {}s; the next sweep removes what is left",
                    self.inner.prefix,
                    DROP_LIMIT.as_secs()
                );
                return;
            }
        };
        for r in &report.unlabelled {
            eprintln!("docker-harness: adopted {r}, which lacks the docker-harness labels it was handed");
        }
        let over = report.over_budget();
        // The one panic in a Drop: a budget the test relies on must fail the test, and a
        // thread that is already panicking has failed anyway (a second panic would abort).
        if !over.is_empty() && !std::thread::panicking() {
            panic!("{}", Error::BudgetExceeded { over, report: Box::new(report) });
        }
    }
}

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
