//! Running a command in a container and capturing what it printed and how it ended.

use std::time::{Duration, Instant};

use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::Docker;

use super::logs::{self, Logs};
use crate::error::{Error, Result};

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

pub(crate) async fn exec(docker: &Docker, id: &str, name: &str, cmd: Vec<String>) -> Result<ExecOutput> {
    let what = || format!("exec {cmd:?} in container {name}");
    let config = ExecConfig {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(cmd.clone()),
        ..Default::default()
    };
    let created = docker.create_exec(id, config).await.map_err(|e| Error::docker(what(), e))?;
    // Attached, never detached: a detached exec's exit code is not reliably reported.
    let opts = StartExecOptions { detach: false, tty: false, output_capacity: None };
    let printed = match docker.start_exec(&created.id, Some(opts)).await.map_err(|e| Error::docker(what(), e))? {
        StartExecResults::Attached { output, .. } => logs::collect(output, what).await?,
        StartExecResults::Detached => Logs::default(),
    };
    // The stream ends when the process's output closes; its exit code may land a moment later.
    let started = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        let info = docker.inspect_exec(&created.id).await.map_err(|e| Error::docker(what(), e))?;
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
