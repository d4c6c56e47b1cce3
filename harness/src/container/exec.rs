//! Running a command in a container (with its environment, user, directory, stdin and a
//! timeout, as an `ExecSpec` says) and capturing what it printed and how it ended.

use std::time::{Duration, Instant};

use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::Docker;
use tokio::io::AsyncWriteExt;

use super::logs::{self, Logs};
use crate::error::{Error, Result};
use crate::retry;

/// How long the exit code of a finished command may take to be reported.
const EXIT_CODE_LIMIT: Duration = Duration::from_secs(1);

/// What a command run with [`Container::exec`](super::Container::exec) printed and how it
/// ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExecOutput {
    /// Standard output, lossily decoded as UTF-8.
    pub stdout: String,
    /// Standard error, lossily decoded as UTF-8.
    pub stderr: String,
    /// The exit code.
    pub exit_code: i64,
}

impl ExecOutput {
    /// What a command printed and its exit code.
    pub fn new(stdout: impl Into<String>, stderr: impl Into<String>, exit_code: i64) -> ExecOutput {
        ExecOutput { stdout: stdout.into(), stderr: stderr.into(), exit_code }
    }

    /// True when the command exited with 0.
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }
}

/// A command to run in a container with [`Container::exec_with`](super::Container::exec_with):
/// what [`Container::exec`](super::Container::exec) runs, plus its environment, user,
/// working directory, standard input and a timeout.
///
/// ```
/// use std::time::Duration;
/// use docker_harness::ExecSpec;
/// let spec = ExecSpec::new(["sh", "-c", "cat > /tmp/in && echo $MODE"])
///     .with_env("MODE", "test")
///     .with_user("1000:1000")
///     .with_workdir("/tmp")
///     .with_stdin(b"payload".to_vec())
///     .with_timeout(Duration::from_secs(10));
/// # let _ = spec;
/// ```
#[must_use]
#[derive(Debug, Clone)]
pub struct ExecSpec {
    cmd: Vec<String>,
    env: Vec<String>,
    user: Option<String>,
    workdir: Option<String>,
    stdin: Option<Vec<u8>>,
    timeout: Option<Duration>,
}

impl ExecSpec {
    /// The command, run as the container's user in its working directory, with no stdin
    /// (it reads end of file) and no timeout.
    pub fn new(cmd: impl IntoIterator<Item = impl Into<String>>) -> ExecSpec {
        ExecSpec {
            cmd: cmd.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            user: None,
            workdir: None,
            stdin: None,
            timeout: None,
        }
    }

    /// An environment variable, over the container's own.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> ExecSpec {
        self.env.push(format!("{}={}", key.into(), value.into()));
        self
    }

    /// The user to run as: a name the image knows, or `uid[:gid]`.
    pub fn with_user(mut self, user: impl Into<String>) -> ExecSpec {
        self.user = Some(user.into());
        self
    }

    /// The working directory (absolute).
    pub fn with_workdir(mut self, dir: impl Into<String>) -> ExecSpec {
        self.workdir = Some(dir.into());
        self
    }

    /// Bytes written to the command's standard input, which is then closed, so the command
    /// reads them and then end of file. A command that exits without reading them all is
    /// not an error.
    pub fn with_stdin(mut self, bytes: impl Into<Vec<u8>>) -> ExecSpec {
        self.stdin = Some(bytes.into());
        self
    }

    /// The longest the command may take, from the exec's creation to its exit code; past it
    /// the call fails with [`Error::ExecTimeout`].
    pub fn with_timeout(mut self, timeout: Duration) -> ExecSpec {
        self.timeout = Some(timeout);
        self
    }

    /// The command.
    pub fn cmd(&self) -> &[String] {
        &self.cmd
    }
}

pub(crate) async fn exec(docker: &Docker, id: &str, name: &str, spec: ExecSpec) -> Result<ExecOutput> {
    let Some(limit) = spec.timeout else { return run(docker, id, name, &spec).await };
    match tokio::time::timeout(limit, run(docker, id, name, &spec)).await {
        Ok(done) => done,
        Err(_) => Err(Error::ExecTimeout { container: name.to_string(), cmd: spec.cmd, after: limit }),
    }
}

async fn run(docker: &Docker, id: &str, name: &str, spec: &ExecSpec) -> Result<ExecOutput> {
    let cmd = &spec.cmd;
    let what = || format!("exec {cmd:?} in container {name}");
    let config = ExecConfig {
        attach_stdin: Some(spec.stdin.is_some()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(cmd.clone()),
        env: (!spec.env.is_empty()).then(|| spec.env.clone()),
        user: spec.user.clone(),
        working_dir: spec.workdir.clone(),
        ..Default::default()
    };
    crate::docker::calls::note("exec", "create_exec");
    let created = retry::bounded(docker.create_exec(id, config)).await.map_err(|e| Error::docker(what(), e))?;
    // Attached, never detached: a detached exec's exit code is not reliably reported.
    let opts = StartExecOptions { detach: false, tty: false, output_capacity: None };
    crate::docker::calls::note("exec", "start_exec");
    let printed = match docker.start_exec(&created.id, Some(opts)).await.map_err(|e| Error::docker(what(), e))? {
        StartExecResults::Attached { output, mut input } => {
            // Written while the output is read, so a command that prints before it reads
            // cannot stall on a full pipe; closing our half is what gives it end of file.
            let feed = async {
                if let Some(bytes) = &spec.stdin {
                    // A command that exits without reading closes the pipe: not an error.
                    if input.write_all(bytes).await.is_ok() {
                        input.shutdown().await.ok();
                    }
                }
            };
            let ((), printed) = tokio::join!(feed, logs::collect(output, what));
            printed?
        }
        StartExecResults::Detached => Logs::default(),
    };
    // The stream ends when the process's output closes; its exit code may land a moment later.
    let started = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        crate::docker::calls::note("exec", "inspect_exec");
        let info = retry::bounded(docker.inspect_exec(&created.id)).await.map_err(|e| Error::docker(what(), e))?;
        if info.running != Some(true) {
            return Ok(ExecOutput::new(printed.stdout, printed.stderr, info.exit_code.unwrap_or(-1)));
        }
        if started.elapsed() >= EXIT_CODE_LIMIT {
            return Err(Error::Timeout {
                what: format!("see the exit code of exec {cmd:?} in container {name} once its output closed"),
                after: started.elapsed(),
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}
