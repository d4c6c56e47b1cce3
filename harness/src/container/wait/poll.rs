//! Polling a container until every strategy holds, each with its own timeout, or one
//! cannot.

use std::time::{Duration, Instant};

use bollard::Docker;

use super::check::{check, look, Check};
use super::{Strategy, WaitFor, DEFAULT_WAIT_TIMEOUT};
use crate::config::{Env, ProcessEnv};
use crate::container::logs;
use crate::error::{Error, Result, WaitFailure};

/// How many log lines a failed wait reports.
const TAIL: usize = 20;

const FIRST_PAUSE: Duration = Duration::from_millis(50);
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Waits for every one of `waits`, in parallel, each with its own timeout.
pub(crate) async fn apply(docker: &Docker, id: &str, name: &str, waits: &[WaitFor]) -> Result<()> {
    if waits.is_empty() {
        return Ok(());
    }
    let default = default_timeout_from(&ProcessEnv)?;
    let all = futures_util::future::try_join_all(waits.iter().map(|w| run(docker, id, name, w, default)));
    all.await.map(drop)
}

/// `DOCKER_HARNESS_WAIT_TIMEOUT` (whole seconds, at least 1), else the default.
pub(crate) fn default_timeout_from(env: &dyn Env) -> Result<Duration> {
    match env.var("DOCKER_HARNESS_WAIT_TIMEOUT") {
        None => Ok(DEFAULT_WAIT_TIMEOUT),
        Some(v) => match v.trim().parse::<u64>() {
            Ok(secs) if secs > 0 => Ok(Duration::from_secs(secs)),
            _ => Err(Error::InvalidEnv {
                var: "DOCKER_HARNESS_WAIT_TIMEOUT",
                value: v,
                expected: "a whole number of seconds, at least 1",
            }),
        },
    }
}

fn run<'a>(
    docker: &'a Docker,
    id: &'a str,
    name: &'a str,
    wait: &'a WaitFor,
    inherited: Duration,
) -> futures_util::future::BoxFuture<'a, Result<()>> {
    Box::pin(async move {
        let limit = wait.timeout.unwrap_or(inherited);
        match &wait.strategy {
            Strategy::All(list) => {
                let each = list.iter().map(|w| run(docker, id, name, w, limit));
                futures_util::future::try_join_all(each).await.map(drop)
            }
            _ => poll(docker, id, name, wait, limit).await,
        }
    })
}

async fn poll(docker: &Docker, id: &str, name: &str, wait: &WaitFor, limit: Duration) -> Result<()> {
    let started = Instant::now();
    let mut pause = FIRST_PAUSE;
    loop {
        let seen = look(docker, id, name).await?;
        let left = limit.saturating_sub(started.elapsed());
        // One check may not outlive the strategy's timeout (an exec probe can hang).
        let bound = left.max(Duration::from_millis(200));
        let last = match tokio::time::timeout(bound, check(docker, id, name, wait, &seen)).await {
            Ok(Ok(Check::Ready)) => return Ok(()),
            Ok(Ok(Check::NotYet(note))) => note,
            Ok(Err(e)) => return Err(e),
            Err(_) => format!("the check itself took over {bound:?}"),
        };
        // State was read before the check, so a container that printed its line and then
        // exited still counts as ready above.
        if seen.exited() {
            return Err(Error::ExitedWhileWaiting(Box::new(WaitFailure {
                container: name.to_string(),
                strategy: wait.to_string(),
                after: started.elapsed(),
                state: seen.describe(),
                exit_code: seen.exit_code,
                last_attempt: last,
                logs: tail(docker, id).await,
            })));
        }
        if started.elapsed() >= limit {
            return Err(Error::WaitTimeout(Box::new(WaitFailure {
                container: name.to_string(),
                strategy: wait.to_string(),
                after: started.elapsed(),
                state: seen.describe(),
                exit_code: seen.exit_code.filter(|_| seen.exited()),
                last_attempt: last,
                logs: tail(docker, id).await,
            })));
        }
        tokio::time::sleep(pause.min(limit.saturating_sub(started.elapsed()))).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// The last lines of the logs for an error message; a failure to read them is said inline,
/// since the wait's own error matters more.
async fn tail(docker: &Docker, id: &str) -> Vec<String> {
    match logs::read_lines(docker, id, id, Some(TAIL)).await {
        Ok(lines) => lines.iter().map(logs::LogLine::marked).collect(),
        Err(e) => vec![format!("(the logs could not be read: {e})")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_default_timeout_is_generous_and_overridable() {
        let none: HashMap<&str, &str> = HashMap::new();
        assert_eq!(default_timeout_from(&none).unwrap(), Duration::from_secs(60));
        let set: HashMap<&str, &str> = [("DOCKER_HARNESS_WAIT_TIMEOUT", "120")].into();
        assert_eq!(default_timeout_from(&set).unwrap(), Duration::from_secs(120));
        let bad: HashMap<&str, &str> = [("DOCKER_HARNESS_WAIT_TIMEOUT", "0")].into();
        let err = default_timeout_from(&bad).unwrap_err().to_string();
        assert!(err.contains("DOCKER_HARNESS_WAIT_TIMEOUT"), "{err}");
    }
}
