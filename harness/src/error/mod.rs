//! The one error type of the crate. Every variant says what was being done and to what,
//! because bollard's errors alone ("status code 404") do not tell a test author which
//! resource or which setting was wrong, and ends with a "help:" line that says what to do.
//!
//! How a failed call's status code is read (Podman answers 500 where Docker answers 404 or
//! 409) is engine knowledge: [`Error::status_code`] and its friends (and `Error::docker`, which
//! reads a failed call) are implemented in `engine`, the one place every Podman difference lives.

use std::path::PathBuf;
use std::time::Duration;

mod compose;
mod daemon;
mod parts;

pub use self::compose::ComposeError;
pub use self::daemon::DaemonError;
pub(crate) use self::daemon::{request_timeout, REQUEST_TIMEOUT_SECS};
pub(crate) use self::parts::indent;
pub use self::parts::WaitFailure;
use crate::budget::TeardownReport;
use crate::resource::Kind;

/// How a user of the crate gets the `docker-harness` command that every hint names.
pub(crate) const CLI_INSTALL: &str = "cargo install docker-harness-cli";

/// The crate's `Result`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in docker-harness.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Docker daemon did not answer.
    #[error(
        "cannot reach the Docker daemon at {host} ({reason}).\n  \
         tried: {}a ping (answered within 5 s by a running daemon, 30 s over ssh), then negotiating the API version.\n  \
         help: start the daemon (`sudo systemctl start docker`), point DOCKER_HOST at a running one \
         (e.g. unix:///var/run/docker.sock, tcp://127.0.0.1:2375 or ssh://user@host), or pick a docker \
         context (`docker context use NAME`), and check that this user may reach it (`docker info` must work; \
         for ssh://, `ssh user@host docker version` must work without a prompt)",
        if .tried.is_empty() { String::new() } else { format!("{}; then ", .tried) }
    )]
    DaemonUnreachable {
        /// The daemon tried and what chose it: DOCKER_HOST, a docker context, a socket found.
        host: String,
        /// The underlying failure, as text.
        reason: String,
        /// What was looked at before it (when DOCKER_HOST is unset), e.g. "docker context (default)".
        tried: String,
    },

    /// The daemon is reached over TLS (DOCKER_TLS_VERIFY, or a context with certificates)
    /// and the TLS side failed: files missing or unreadable, or a certificate refused.
    #[error(
        "cannot reach the Docker daemon at {host} over TLS: {reason}.\n  \
         certificates from: {cert_path}\n  \
         help: that directory needs ca.pem (the CA that signed the daemon's certificate), cert.pem \
         and key.pem (this client's, signed by a CA the daemon trusts), as the docker CLI reads them; \
         check `docker --tlsverify info` with the same DOCKER_HOST and DOCKER_CERT_PATH, and that the \
         daemon's certificate names the host you connect to (an IP SAN for an address)"
    )]
    DaemonTls {
        /// The daemon tried and what chose it.
        host: String,
        /// Where the certificates were read (and what said so), e.g. "/certs (DOCKER_CERT_PATH)".
        cert_path: String,
        /// What failed: a missing file, "invalid peer certificate: UnknownIssuer", ….
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
         help: where no registry can be reached, do one of these in the environment of your tests:\n    \
         - name an image the daemon already has in DOCKER_HARNESS_IMAGE (`docker images` lists \
         them; the harness needs `sh` and `sleep` in it);\n    \
         - point DOCKER_HARNESS_REGISTRY_MIRROR=host:port at a registry that holds a copy \
         (a pull-through cache, or a registry on 127.0.0.1);\n    \
         - offline, bring the image over (`docker save {image} -o image.tar` where it can be \
         pulled, `docker load -i image.tar` here), or build a stand-in from a static busybox \
         and name it in DOCKER_HARNESS_IMAGE (the README's \"Offline machines\" shows how)"
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

    /// A registry refused a pull for want of valid credentials, or they could not be found.
    #[error(
        "pulling {image} from {registry} needs credentials the registry accepts: {message}\n  \
         credentials looked for in: {looked}\n  \
         help: log in as the docker CLI does (`docker login {registry}`, with the DOCKER_CONFIG the \
         tests see), set DOCKER_AUTH_CONFIG to a config's JSON with an `auths` entry for {registry}, \
         or fix the credential helper named there"
    )]
    RegistryAuth {
        /// The reference pulled.
        image: String,
        /// The registry (`docker.io` for Docker Hub).
        registry: String,
        /// Where credentials were looked for, in order, and what was found there (never
        /// the secret).
        looked: String,
        /// The registry's, the daemon's or the credential helper's answer.
        message: String,
    },

    /// The image the session resolved is gone: containers are made from its ID, so a
    /// re-tag changes nothing, but a removal does.
    #[error(
        "image {image} changed during the session: it was {expected} when the session resolved it \
         and is now {found}.\n  help: something removed it while tests were running; do not remove \
         or prune images mid-run (re-run the suite to resolve it again)"
    )]
    ImageChanged {
        /// The image reference.
        image: String,
        /// The image ID recorded when the session resolved it.
        expected: String,
        /// What it resolves to now (`<absent>` when removed).
        found: String,
    },

    /// An image build failed: the step it failed at, the daemon's answer and the build's last
    /// output lines. What the build had made by then is removed.
    #[error(
        "building image {logical} failed at {step}: {message}\n  last lines of the build:\n{}\n  \
         help: fix that step of the Dockerfile (run `docker build` on the context to iterate faster)",
        indent(tail)
    )]
    BuildFailed {
        /// The build's logical name.
        logical: String,
        /// The step it failed at, as the builder printed it (e.g. `Step 3/5 : RUN make`).
        step: String,
        /// The builder's error.
        message: String,
        /// The build's last output lines.
        tail: Vec<String>,
    },

    /// A build's context or Dockerfile cannot be read or used.
    #[error("cannot build image {logical} from {}: {reason}.\n  help: {help}", path.display())]
    BuildContext {
        /// The build's logical name.
        logical: String,
        /// The file or directory at fault.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
        /// What to do.
        help: &'static str,
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

    /// A container option that Docker would refuse, or that would silently mean something
    /// else (a zero memory limit is "no limit"): found before anything is created.
    #[error("container {container}: invalid {option} {value:?}: {reason}.\n  help: {help}")]
    InvalidOption {
        /// The container's logical name (a spec's) or Docker name (a running one's).
        container: String,
        /// Which option, e.g. "memory limit" or "ulimit".
        option: &'static str,
        /// The value given.
        value: String,
        /// Why it was refused.
        reason: String,
        /// What to give instead.
        help: String,
    },

    /// A command run with an exec timeout did not end within it. The command may still be
    /// running in the container: Docker has no call that ends an exec.
    #[error(
        "exec {cmd:?} in container {container} did not end within {after:?}; it may still be running there.\n  \
         help: raise the timeout with `ExecSpec::with_timeout(..)`, or look at why the command hangs \
         (one that reads stdin waits for it: give it with `ExecSpec::with_stdin(..)`)"
    )]
    ExecTimeout {
        /// The container's name.
        container: String,
        /// The command.
        cmd: Vec<String>,
        /// The timeout it was given.
        after: Duration,
    },

    /// Waiting for something took longer than allowed (`after` is how long was waited).
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
        .0.last_attempt, .0.logs.len(), indent(&.0.logs)
    )]
    WaitTimeout(Box<WaitFailure>),

    /// The container exited while a wait strategy was still waiting for it.
    #[error(
        "container {} exited with code {} while waiting for it to {}.\n  \
         last {} log line(s):\n{}\n  help: the logs above usually say why it stopped",
        .0.container, .0.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "?".into()), .0.strategy,
        .0.logs.len(), indent(&.0.logs)
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
    #[error(
        "failed to {action} {}: {source}.\n  help: the session's state lives under DOCKER_HARNESS_STATE_DIR \
         (default: <temp dir>/docker-harness-<uid>); point it at a writable directory with room to spare",
        .path.display()
    )]
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
    #[error("cleanup left {} resource(s) behind: {}", .0.len(),
        .0.iter().map(|c| format!("{} {} ({})", c.kind, c.name, c.error)).collect::<Vec<_>>().join("; "))]
    Cleanup(Vec<CleanupFailure>),

    /// The pre-test check found orphans and `DOCKER_HARNESS_PREFLIGHT=fail` asked to stop.
    #[error(
        "the pre-test check found {} orphaned resource(s) left by dead test processes:\n{}\n  \
         help: remove them with `docker-harness reap` (`{}`; only resources labelled \
         docker-harness.managed are ever touched), or set DOCKER_HARNESS_PREFLIGHT=clean",
        .0.len(), .0.join("\n"), CLI_INSTALL
    )]
    Orphans(Vec<String>),

    /// The process is shutting down (SIGTERM or SIGINT arrived): nothing new is created.
    #[error(
        "cannot {what}: the process is shutting down after SIGTERM or SIGINT, and creates nothing new \
         while it removes what it made.\n  \
         help: this is how a test stopped by its runner (a timeout, Ctrl-C) ends; look at why it was stopped"
    )]
    ShuttingDown {
        /// What was to be created.
        what: String,
    },

    /// A session-shared container kept vanishing: something outside the session removes it.
    #[error(
        "the shared container {key:?} was created {times} times this session and vanished each time.\n  \
         help: something outside the test session removes it (a cleanup job, `docker rm`); stop that, \
         or give this use its own key"
    )]
    SharedContainerVanished {
        /// Its key.
        key: String,
        /// How often it was created.
        times: u32,
    },

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
        report: Box<TeardownReport>,
    },

    /// Bringing up or using a compose file failed: see [`ComposeError`].
    #[error(transparent)]
    Compose(#[from] ComposeError),

    /// The daemon stopped answering: see [`DaemonError`].
    #[error(transparent)]
    Daemon(#[from] DaemonError),
}

/// One resource that teardown failed to remove.
#[derive(Debug)]
pub struct CleanupFailure {
    /// Its kind.
    pub kind: Kind,
    /// The resource's name.
    pub name: String,
    /// Why it could not be removed.
    pub error: Box<Error>,
}

#[cfg(test)]
mod tests;
