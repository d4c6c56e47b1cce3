//! One round of a wait: what the container looks like now, and whether the strategy holds.

use bollard::models::{ContainerStateStatusEnum, HealthStatusEnum};
use bollard::query_parameters::InspectContainerOptions;
use bollard::Docker;

use super::{probe, Strategy, WaitFor};
use crate::container::exec::{self, ExecSpec};
use crate::container::logs::{self, LogStream};
use crate::container::ports;
use crate::engine;
use crate::error::{Error, Result};

/// The container's state as one round of polling saw it.
pub(super) struct Seen {
    status: Option<ContainerStateStatusEnum>,
    pub(super) exit_code: Option<i64>,
    health: Option<HealthStatusEnum>,
    has_healthcheck: bool,
    ports: Option<bollard::models::PortMap>,
    published: Vec<u16>,
}

impl Seen {
    pub(super) fn exited(&self) -> bool {
        matches!(self.status, Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD))
    }

    pub(super) fn describe(&self) -> String {
        let status = self.status.map(|s| s.to_string()).unwrap_or_else(|| "in an unknown state".into());
        match self.health {
            Some(h) if self.has_healthcheck => format!("{status} (health: {h})"),
            _ => status,
        }
    }
}

pub(super) async fn look(docker: &Docker, id: &str, name: &str) -> Result<Seen> {
    crate::docker::calls::note("wait", "inspect_container");
    let info =
        engine::past_stopped(|| crate::retry::bounded(docker.inspect_container(id, None::<InspectContainerOptions>)))
            .await
            .map_err(|e| Error::docker(format!("inspect container {name} while waiting for it"), e))?;
    let state = info.state.unwrap_or_default();
    let config_check = info.config.as_ref().and_then(|c| c.healthcheck.as_ref()).and_then(|h| h.test.clone());
    let published = info
        .host_config
        .as_ref()
        .and_then(|h| h.port_bindings.as_ref())
        .map(|b| b.keys().filter_map(|k| k.split('/').next()?.parse().ok()).collect())
        .unwrap_or_default();
    Ok(Seen {
        status: state.status,
        exit_code: state.exit_code,
        health: state.health.as_ref().and_then(|h| h.status),
        // Podman reports an empty health status for a container with no healthcheck at all.
        has_healthcheck: config_check.is_some_and(|t| !t.is_empty() && t[0] != "NONE")
            || state.health.as_ref().and_then(|h| h.status).is_some_and(|s| s != HealthStatusEnum::EMPTY),
        ports: info.network_settings.and_then(|n| n.ports),
        published,
    })
}

pub(super) enum Check {
    Ready,
    NotYet(String),
}

impl From<std::result::Result<(), String>> for Check {
    fn from(r: std::result::Result<(), String>) -> Check {
        r.map_or_else(Check::NotYet, |()| Check::Ready)
    }
}

pub(super) async fn check(docker: &Docker, id: &str, name: &str, wait: &WaitFor, seen: &Seen) -> Result<Check> {
    let impossible = |reason: &str, help: &str| Error::WaitImpossible {
        container: name.to_string(),
        strategy: wait.to_string(),
        reason: reason.to_string(),
        help: help.to_string(),
    };
    match &wait.strategy {
        Strategy::Log { pattern, stream, times, .. } => {
            let re = pattern
                .as_ref()
                .map_err(|e| impossible(&format!("the pattern does not compile: {e}"), "fix the regular expression"))?;
            let lines = logs::read_lines(docker, id, name, None).await?;
            let n = lines
                .iter()
                .filter(|l| *stream == LogStream::Either || l.stream == *stream)
                .filter(|l| re.is_match(&l.text))
                .count();
            Ok(if n >= *times { Check::Ready } else { Check::NotYet(format!("{n} of {times} matching line(s)")) })
        }
        Strategy::Healthy => {
            if !seen.has_healthcheck {
                return Err(impossible(
                    "it has no healthcheck",
                    "add one with ContainerSpec::with_healthcheck(cmd, interval, retries), or wait for \
                     something else (a log line, a port)",
                ));
            }
            Ok(match seen.health {
                Some(HealthStatusEnum::HEALTHY) => Check::Ready,
                h => {
                    Check::NotYet(format!("health is {}", h.map(|h| h.to_string()).unwrap_or_else(|| "unknown".into())))
                }
            })
        }
        Strategy::Exit { code } => {
            if !seen.exited() {
                return Ok(Check::NotYet(format!("still {}", seen.describe())));
            }
            match seen.exit_code {
                Some(c) if c == *code => Ok(Check::Ready),
                // Anything else is an exit while waiting, reported by the caller at once.
                other => Ok(Check::NotYet(format!("exited with {other:?}"))),
            }
        }
        Strategy::Exec { cmd } => {
            if seen.exited() {
                return Ok(Check::NotYet("the container has exited".into()));
            }
            match exec::exec(docker, id, name, ExecSpec::new(cmd.clone())).await {
                Ok(out) if out.success() => Ok(Check::Ready),
                Ok(out) => Ok(Check::NotYet(format!(
                    "exit code {}{}",
                    out.exit_code,
                    last_line(&out.stderr).map(|l| format!(", stderr: {l}")).unwrap_or_default()
                ))),
                // The container may be between start and running; the next round sees it.
                Err(e) => Ok(Check::NotYet(e.to_string())),
            }
        }
        Strategy::Port { port, inside: true } => {
            if seen.exited() {
                return Ok(Check::NotYet("the container has exited".into()));
            }
            // busybox's nc lacks -z in some builds; connecting with stdin closed does the same.
            let probe = format!(
                "nc -z -w 2 127.0.0.1 {port} 2>/dev/null || nc -w 2 127.0.0.1 {port} </dev/null >/dev/null 2>&1"
            );
            match exec::exec(docker, id, name, ExecSpec::new(["sh".to_string(), "-c".to_string(), probe])).await {
                Ok(out) if out.success() => Ok(Check::Ready),
                Ok(out) => Ok(Check::NotYet(format!("nc in the container exited with {}", out.exit_code))),
                Err(e) => Ok(Check::NotYet(e.to_string())),
            }
        }
        Strategy::Port { port, inside: false } | Strategy::Http { port, .. } => {
            if !seen.published.contains(port) {
                return Err(impossible(
                    &format!("port {port} is not published"),
                    &format!(
                        "publish it with ContainerSpec::with_exposed_port({port}), or use WaitFor::port_inside({port})"
                    ),
                ));
            }
            let Some(host_port) = seen.ports.as_ref().and_then(|p| ports::host_port_in(p, *port)) else {
                return Ok(Check::NotYet("its host port is not assigned yet".into()));
            };
            match &wait.strategy {
                Strategy::Http { path, status, .. } => Ok(probe::http_check(host_port, path, *status).await.into()),
                _ => Ok(probe::tcp_check(host_port).await.into()),
            }
        }
        Strategy::All(_) => unreachable!("wait::run splits composite strategies before they reach a check"),
    }
}

fn last_line(s: &str) -> Option<&str> {
    s.lines().rev().find(|l| !l.trim().is_empty())
}
