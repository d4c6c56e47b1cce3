//! The one error type of the crate. Every variant says what was being done and to what,
//! because bollard's errors alone ("status code 404") do not tell a test author which
//! resource or which setting was wrong.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The crate's `Result`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in docker-harness.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Docker daemon did not answer.
    #[error(
        "cannot reach the Docker daemon at {host} ({reason}).\n  \
         tried: a ping (answered within 5 s by a running daemon), then negotiating the API version.\n  \
         help: start the daemon (`sudo systemctl start docker`), point DOCKER_HOST at a running one \
         (e.g. unix:///var/run/docker.sock or tcp://127.0.0.1:2375), and check that this user may \
         open the socket (`docker info` must work)"
    )]
    DaemonUnreachable {
        /// What was tried: DOCKER_HOST, or the default socket.
        host: String,
        /// The underlying failure, as text.
        reason: String,
    },

    /// The image is not present and the pull policy forbids pulling it.
    #[error(
        "image {image} is not present on the daemon and DOCKER_HARNESS_PULL=never forbids pulling it.\n  \
         help: pull it first (`docker pull {image}`), set DOCKER_HARNESS_PULL=missing, or name a \
         present image in DOCKER_HARNESS_IMAGE"
    )]
    ImageMissing {
        /// The image reference.
        image: String,
    },

    /// Pulling an image failed.
    #[error(
        "pulling {image} (from {source_ref}) failed after {attempts} attempt(s): {message}\n  \
         help: if no registry is reachable, serve the image from a mirror \
         (DOCKER_HARNESS_REGISTRY_MIRROR=host:port), name a present image in DOCKER_HARNESS_IMAGE, \
         or run `make e2e`, which switches to the offline stand-in image"
    )]
    ImagePull {
        /// The reference the tests use.
        image: String,
        /// The reference actually pulled (differs when a mirror is used).
        source_ref: String,
        /// The registry's or daemon's answer.
        message: String,
        /// How many pulls were tried (transient failures are retried).
        attempts: u32,
        /// Whether the image is known not to exist (no retry was made).
        not_found: bool,
    },

    /// The pinned reference no longer points at the image the session resolved.
    #[error(
        "image {image} changed during the session: it was {expected} when the session resolved it \
         and is now {found}.\n  help: something re-tagged or removed it while tests were running; \
         do not re-tag the session image mid-run (tag a private copy instead)"
    )]
    ImageChanged {
        /// The image reference.
        image: String,
        /// The image ID recorded when the session resolved it.
        expected: String,
        /// What it resolves to now (`<absent>` when removed).
        found: String,
    },

    /// A Docker API call failed.
    #[error("failed to {action}: {source}")]
    Docker {
        /// What was being done, e.g. "remove container dh-x-1234-web".
        action: String,
        /// The bollard error.
        #[source]
        source: bollard::errors::Error,
    },

    /// An environment variable holds a value the harness does not understand.
    #[error("{var}={value:?} is not valid: expected {expected}.\n  help: fix or unset {var}")]
    InvalidEnv {
        /// The variable's name.
        var: &'static str,
        /// The value found.
        value: String,
        /// What would have been accepted.
        expected: &'static str,
    },

    /// A name given to the harness cannot be made into a Docker name.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        /// What the name is for.
        what: &'static str,
        /// The name given.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// Waiting for something took longer than allowed.
    #[error("timed out after {after:?} while waiting to {what}")]
    Timeout {
        /// What was being waited for.
        what: String,
        /// How long was waited.
        after: Duration,
    },

    /// A wait strategy did not succeed within its timeout.
    #[error(
        "timed out after {:?} waiting for container {} to {}; it is {}{}; last attempt: {}.\n  \
         last {} log line(s):\n{}\n  \
         help: raise the timeout with `.with_timeout(..)` or DOCKER_HARNESS_WAIT_TIMEOUT (seconds), \
         or check the logs above for why it never got ready",
        .0.after, .0.container, .0.strategy, .0.state,
        .0.exit_code.map(|c| format!(", exit code {c}")).unwrap_or_default(),
        .0.last_attempt, .0.logs.len(), crate::wait::indent(&.0.logs)
    )]
    WaitTimeout(Box<WaitFailure>),

    /// The container exited while a wait strategy was still waiting for it.
    #[error(
        "container {} exited with code {} while waiting for it to {}.\n  \
         last {} log line(s):\n{}\n  help: the logs above usually say why it stopped",
        .0.container, .0.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "?".into()), .0.strategy,
        .0.logs.len(), crate::wait::indent(&.0.logs)
    )]
    ExitedWhileWaiting(Box<WaitFailure>),

    /// A wait strategy cannot succeed as the container is set up.
    #[error("cannot wait for container {container} to {strategy}: {reason}.\n  help: {help}")]
    WaitImpossible {
        /// The container's name.
        container: String,
        /// What was to be waited for.
        strategy: String,
        /// Why it cannot succeed.
        reason: String,
        /// The fix.
        help: String,
    },

    /// A container port has no host port.
    #[error(
        "container {container} has no host port for its port {port}/tcp: {reason}.\n  \
         help: publish it with `ContainerSpec::with_exposed_port({port})`, and look it up once the \
         container is running"
    )]
    PortNotPublished {
        /// The container's name.
        container: String,
        /// The container port.
        port: u16,
        /// What was found instead.
        reason: String,
    },

    /// Copying files into or out of a container failed.
    #[error("failed to {action} ({path}) for container {container}: {reason}")]
    Copy {
        /// What was being done, e.g. "copy /etc/app.conf out".
        action: String,
        /// The container's name.
        container: String,
        /// The path concerned (in the container or on the host).
        path: String,
        /// Why.
        reason: String,
    },

    /// A file of the session state could not be used.
    #[error("failed to {action} {path}: {source}")]
    State {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// Teardown could not remove everything.
    #[error("cleanup left {} resource(s) behind: {}", .0.len(), CleanupList(.0))]
    Cleanup(Vec<CleanupFailure>),

    /// The pre-test check found orphans and `DOCKER_HARNESS_PREFLIGHT=fail` asked to stop.
    #[error(
        "the pre-test check found {} orphaned resource(s) left by dead test processes:\n{}\n  \
         help: remove them with `cargo run -p docker-harness -- reap` (only resources labelled \
         docker-harness.managed are ever touched), or set DOCKER_HARNESS_PREFLIGHT=clean",
        .0.len(), .0.join("\n")
    )]
    Orphans(Vec<String>),

    /// More Docker resources were created under a test's identity than its budget allows.
    #[error(
        "resource budget exceeded: {}; created {} against a budget of {}",
        .over.join(", "), .report.created,
        .report.budget.map(|b| b.to_string()).unwrap_or_default()
    )]
    BudgetExceeded {
        /// One line per kind over budget.
        over: Vec<String>,
        /// The whole teardown report (everything was still removed).
        report: Box<crate::budget::TeardownReport>,
    },
}

/// What a failed wait saw: [`Error::WaitTimeout`] and [`Error::ExitedWhileWaiting`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WaitFailure {
    /// The container's name.
    pub container: String,
    /// What was waited for, e.g. "print a line matching /ready/ on stdout".
    pub strategy: String,
    /// How long was waited.
    pub after: Duration,
    /// The container's state at the end, e.g. "running (health: starting)" or "exited".
    pub state: String,
    /// Its exit code, once it has exited.
    pub exit_code: Option<i64>,
    /// What the last check saw, e.g. "connection refused".
    pub last_attempt: String,
    /// The last lines of its logs (stdout and stderr, in order, each marked with its stream).
    pub logs: Vec<String>,
}

/// One resource that teardown failed to remove.
#[derive(Debug)]
pub struct CleanupFailure {
    /// `container`, `network` or `volume`.
    pub kind: &'static str,
    /// The resource's name.
    pub name: String,
    /// Why it could not be removed.
    pub error: Box<Error>,
}

struct CleanupList<'a>(&'a [CleanupFailure]);

impl fmt::Display for CleanupList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{} {} ({})", c.kind, c.name, c.error)?;
        }
        Ok(())
    }
}

impl Error {
    pub(crate) fn docker(action: impl Into<String>, source: bollard::errors::Error) -> Self {
        Error::Docker { action: action.into(), source }
    }

    /// The Docker status code of a failed API call, if this is one.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            Error::Docker { source, .. } => status_of(source),
            _ => None,
        }
    }

    /// True when Docker answered 404: the resource does not exist (or no longer does).
    pub fn is_not_found(&self) -> bool {
        self.status_code() == Some(404)
    }

    /// True when Docker answered 409: a name is taken or the resource is in use (Podman's
    /// 500 saying the same counts too).
    pub fn is_conflict(&self) -> bool {
        self.status_code() == Some(409)
    }
}

/// The status code, with Podman's 500s read as what Docker answers for the same thing.
pub(crate) fn status_of(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code: 500, message } => Some(podman_status(message)),
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// Podman's Docker-compatible API answers 500 where Docker answers 404 (a container gone
/// mid-removal: "no such container") or 409 (a name already in use, a volume in use). Its
/// messages say which; any other 500 stays a 500.
fn podman_status(message: &str) -> u16 {
    let m = message.to_ascii_lowercase();
    // Not "no such network": "no such network interface" is another failure altogether.
    if m.contains("no such container") || m.contains("no such volume") {
        404
    } else if ["already in use", "already exists", "is being used", "in use by"].iter().any(|n| m.contains(n)) {
        409
    } else {
        500
    }
}

pub(crate) fn is_404(e: &bollard::errors::Error) -> bool {
    status_of(e) == Some(404)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(status_code: u16, message: &str) -> bollard::errors::Error {
        bollard::errors::Error::DockerResponseServerError { status_code, message: message.into() }
    }

    #[test]
    fn podmans_500s_read_as_dockers_conflicts_and_absences() {
        // Podman 4.3's answers, verbatim.
        let taken = "container create: creating container storage: the container name \"x\" is already in \
                     use by ffe3. You have to remove that container to be able to reuse that name: that name \
                     is already in use";
        assert_eq!(status_of(&server(500, taken)), Some(409));
        assert_eq!(
            status_of(&server(500, "\"n\" has associated containers with it: network is being used")),
            Some(409)
        );
        assert_eq!(status_of(&server(500, "network name n already used: network already exists")), Some(409));
        assert_eq!(status_of(&server(500, "container abc does not exist in database: no such container")), Some(404));
        assert!(Error::docker("create container x", server(500, taken)).is_conflict());
    }

    #[test]
    fn other_500s_and_other_codes_are_left_alone() {
        assert_eq!(status_of(&server(500, "route ip+net: no such network interface")), Some(500));
        assert_eq!(status_of(&server(409, "Conflict. The container name is already in use")), Some(409));
        assert_eq!(status_of(&server(404, "No such container: x")), Some(404));
    }
}
