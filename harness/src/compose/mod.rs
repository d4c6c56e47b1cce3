//! Compose files as part of a test's world: a spec (the file, the variables it is given,
//! the waits of its services), the guard of the project it brought up, and bringing it up.
//!
//! The harness runs one file of its own making (`render`: the test's labels on everything
//! compose creates, ephemeral loopback ports, no pull), under a project name of the test's
//! own, through the compose program (`cli`: the plugin or the standalone v1) started with
//! the test's process marker. What compose created is found again by label and removed as
//! every resource is (`guard`), never with `compose down`. `up` puts it together.

mod cli;
mod guard;
mod render;
pub(crate) mod up;

use std::path::PathBuf;
use std::time::Duration;

pub use guard::ComposeGuard;

use crate::container::WaitFor;

/// What compose file to bring up, under which logical name.
///
/// The project name is the test's (`dh-<test>-<task>-<logical>`), so parallel tests run the
/// same file with the same service names without meeting. A file that names a fixed
/// `container_name` or gives a network or volume a fixed `name:` is refused, since those
/// would be shared between tests; fixed host ports become ephemeral ones on the loopback
/// (find them with [`Container::host_port`](crate::Container::host_port)).
///
/// The compose process gets this process's environment, the variables given with
/// [`with_env`](Self::with_env), and `DOCKER_HARNESS_IMAGE` set to the session image's
/// reference, so a file can run the session image with `image: ${DOCKER_HARNESS_IMAGE}`.
///
/// ```
/// use docker_harness::{ComposeSpec, WaitFor};
/// let spec = ComposeSpec::new("app", "fixtures/compose/web-and-client.yml")
///     .with_env("GREETING", "hello")
///     .with_wait("web", WaitFor::http(8080, "/", 200))
///     .with_wait("client", WaitFor::log_line("^fetched"));
/// assert_eq!(spec.logical_name(), "app");
/// ```
#[must_use]
#[derive(Debug, Clone)]
pub struct ComposeSpec {
    logical: String,
    file: PathBuf,
    env: Vec<(String, String)>,
    waits: Vec<(String, WaitFor)>,
    timeout: Duration,
}

/// How long `up` may take unless the spec says otherwise: it creates and starts every
/// service, and eight parallel tests on one daemon are slow.
const DEFAULT_UP_TIMEOUT: Duration = Duration::from_secs(300);

impl ComposeSpec {
    /// The compose file at `file` (relative to the test's working directory, which cargo
    /// sets to the package's directory), under this logical name.
    pub fn new(logical: impl Into<String>, file: impl Into<PathBuf>) -> Self {
        ComposeSpec {
            logical: logical.into(),
            file: file.into(),
            env: Vec::new(),
            waits: Vec::new(),
            timeout: DEFAULT_UP_TIMEOUT,
        }
    }

    /// The logical name.
    pub fn logical_name(&self) -> &str {
        &self.logical
    }

    /// A variable in the compose process's environment, for the file's `${NAME}`s.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Waits for this on a service's container once the project is up;
    /// `ctx.compose(..)` returns only when every service's waits hold (several for one
    /// service add up, as [`WaitFor::all`] does). When one fails, the error is returned and
    /// the whole project is removed.
    pub fn with_wait(mut self, service: impl Into<String>, wait: WaitFor) -> Self {
        self.waits.push((service.into(), wait));
        self
    }

    /// How long `up` may take (5 minutes unless set); past it, compose is killed and the
    /// project removed.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}
