//! The compose program, and running it: the command `DOCKER_HARNESS_COMPOSE` names, else the
//! `docker compose` plugin, else the standalone `docker-compose` (Debian's 1.29 is the one
//! tested; the plugin is written for and untested). Every run carries the test's process
//! marker, so a killed test's `up` is ended by the harness's process rules, and is bounded:
//! a compose that hangs is killed and reported, never waited on for ever.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::config::{Env, ProcessEnv};
use crate::error::{ComposeError, Error, Result};
use crate::session;

/// Names the compose command, as it is typed (`docker-compose`, `docker compose`).
pub(super) const COMPOSE_ENV: &str = "DOCKER_HARNESS_COMPOSE";

/// How long asking a candidate for its version may take.
const VERSION_LIMIT: Duration = Duration::from_secs(30);

/// How many lines of a failed command's output its error carries.
const OUTPUT_LINES: usize = 20;

/// A compose program that answered: its command words and the version it gave.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Program {
    argv: Vec<String>,
    pub(super) version: String,
}

impl Program {
    /// The command line of a run with `args`, as it would be typed (for messages).
    pub(super) fn display(&self, args: &[String]) -> String {
        self.argv.iter().chain(args).map(String::as_str).collect::<Vec<_>>().join(" ")
    }
}

/// The candidates, in the order they are tried.
fn candidates(env: &dyn Env) -> Vec<Vec<String>> {
    match env.var(COMPOSE_ENV) {
        Some(named) => vec![named.split_whitespace().map(str::to_string).collect()],
        None => vec![vec!["docker".into(), "compose".into()], vec!["docker-compose".into()]],
    }
}

/// The compose program of this process, found once per session (asking the standalone one
/// its version costs most of a second of CPU, in every test process); one that
/// `DOCKER_HARNESS_COMPOSE` names is asked once per process.
pub(super) async fn program() -> Result<&'static Program> {
    static FOUND: OnceCell<Program> = OnceCell::const_new();
    FOUND
        .get_or_try_init(|| async {
            let named = ProcessEnv.var(COMPOSE_ENV).is_some();
            let search = find(candidates(&ProcessEnv), named);
            if named {
                return search.await;
            }
            session::once(session::current()?.state_dir(), "compose-program", VERSION_LIMIT * 3, || search).await
        })
        .await
}

/// The first candidate that says its version; `named`: the one `DOCKER_HARNESS_COMPOSE` named.
async fn find(candidates: Vec<Vec<String>>, named: bool) -> Result<Program> {
    let mut tried = Vec::new();
    for argv in candidates {
        let shown = argv.join(" ");
        match version(&argv).await {
            Ok(version) => return Ok(Program { argv, version }),
            Err(why) => tried.push(format!("`{shown}` ({why})")),
        }
    }
    if named {
        tried.push(format!("as {COMPOSE_ENV} says; nothing else"));
    }
    Err(Error::Compose(ComposeError::Unavailable { tried: tried.join(", ") }))
}

/// `<argv> version`: the version both compose generations print on their first line
/// (`docker-compose version 1.29.2, build unknown`, `Docker Compose version v2.24.6`).
async fn version(argv: &[String]) -> std::result::Result<String, String> {
    let (program, rest) = argv.split_first().ok_or("an empty command")?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(rest).arg("version").stdin(Stdio::null()).kill_on_drop(true);
    let out = match tokio::time::timeout(VERSION_LIMIT, cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err(format!("no answer within {VERSION_LIMIT:?}")),
    };
    let said = String::from_utf8_lossy(&out.stdout);
    match parse_version(&said) {
        Some(v) if out.status.success() => Ok(v),
        _ => {
            let err = String::from_utf8_lossy(&out.stderr);
            Err(err.lines().chain(said.lines()).find(|l| !l.trim().is_empty()).unwrap_or("no version").to_string())
        }
    }
}

/// The word after `version` on the first line, without a leading `v` or a trailing comma.
fn parse_version(said: &str) -> Option<String> {
    let mut words = said.lines().next()?.split_whitespace();
    words.find(|w| w.eq_ignore_ascii_case("version"))?;
    let v = words.next()?.trim_start_matches('v').trim_end_matches(',');
    v.starts_with(|c: char| c.is_ascii_digit()).then(|| v.to_string())
}

/// One compose run: `args` after the program's own words, in `dir`, with `env` and the
/// test's process `marker` added to this process's environment. Returns its stdout.
pub(super) async fn run(
    program: &Program,
    args: &[String],
    dir: &Path,
    env: &[(String, String)],
    marker: (&str, &str),
    project: &str,
    limit: Duration,
) -> Result<String> {
    let failed = |status: String, output: Vec<String>| {
        Error::Compose(ComposeError::Failed {
            project: project.to_string(),
            command: program.display(args),
            status: format!("{status}; compose {}", program.version),
            output,
        })
    };
    let (first, rest) = program.argv.split_first().ok_or_else(|| failed("an empty command".into(), Vec::new()))?;
    let mut cmd = tokio::process::Command::new(first);
    cmd.args(rest)
        .args(args)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env(marker.0, marker.1)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A run given up on (timeout, a dropped future) is killed; what it left is the
        // test's, and its teardown ends whatever it started under the marker.
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| failed(format!("it could not be started: {e}"), Vec::new()))?;
    let out = match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return Err(failed(format!("its output could not be read: {e}"), Vec::new())),
        Err(_) => return Err(Error::Timeout { what: format!("`{}` to finish", program.display(args)), after: limit }),
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(failed(out.status.to_string(), last_lines(&stderr, &stdout)))
}

/// The last lines of a run's output, stderr first (where compose says what went wrong).
fn last_lines(stderr: &str, stdout: &str) -> Vec<String> {
    let lines: Vec<String> =
        stderr.lines().chain(stdout.lines()).filter(|l| !l.trim().is_empty()).map(str::to_string).collect();
    lines[lines.len().saturating_sub(OUTPUT_LINES)..].to_vec()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn the_plugin_is_tried_before_the_standalone_program_unless_one_is_named() {
        let none: HashMap<&str, &str> = HashMap::new();
        assert_eq!(candidates(&none), [vec!["docker", "compose"], vec!["docker-compose"]]);
        let named = HashMap::from([(COMPOSE_ENV, " /opt/bin/docker  compose ")]);
        assert_eq!(candidates(&named), [vec!["/opt/bin/docker", "compose"]]);
    }

    #[tokio::test]
    async fn a_named_program_that_does_not_run_is_one_clear_error() {
        let named = HashMap::from([(COMPOSE_ENV, "/nonexistent/docker-compose-dh")]);
        let text = find(candidates(&named), true).await.unwrap_err().to_string();
        assert!(
            text.starts_with("no compose program can run a compose file: tried `/nonexistent/docker-compose-dh` ("),
            "{text}"
        );
        assert!(text.contains("as DOCKER_HARNESS_COMPOSE says") && text.contains("help: install"), "{text}");
    }

    #[test]
    fn both_generations_versions_are_read() {
        assert_eq!(
            parse_version("docker-compose version 1.29.2, build unknown\ndocker-py version: 5.0.3\n").as_deref(),
            Some("1.29.2")
        );
        assert_eq!(parse_version("Docker Compose version v2.24.6\n").as_deref(), Some("2.24.6"));
        assert_eq!(parse_version("docker: unknown command: docker compose\n"), None);
    }

    #[test]
    fn a_failure_keeps_the_last_lines_stderr_first() {
        let err: String = (1..=30).map(|i| format!("e{i}\n")).collect();
        let lines = last_lines(&err, "out\n");
        assert_eq!(lines.len(), OUTPUT_LINES);
        assert_eq!((lines[0].as_str(), lines[OUTPUT_LINES - 1].as_str()), ("e12", "out"));
    }
}
