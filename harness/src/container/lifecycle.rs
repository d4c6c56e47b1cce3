//! A container's lifecycle calls (start, stop, restart, kill, pause, unpause) and its
//! network attachments, each taking a client, an ID and a name. Docker answers 304 to a
//! start of a running container or a stop of a stopped one; bollard reads that as success,
//! so both are idempotent, as a resilience test wants.

use std::time::Duration;

use bollard::models::{EndpointSettings, NetworkConnectRequest, NetworkDisconnectRequest};
use bollard::query_parameters::{
    KillContainerOptions, RestartContainerOptions, StartContainerOptions, StopContainerOptions,
};
use bollard::Docker;

use super::checks;
use crate::error::{Error, Result};

/// How much longer than a stop's grace period the call may take: after it Docker still
/// sends SIGKILL and waits for the exit.
const AFTER_GRACE: Duration = Duration::from_secs(30);

/// Docker's grace period is whole seconds: a fraction rounds up, so it is never shorter.
fn grace_seconds(timeout: Duration) -> i32 {
    let secs = timeout.as_secs().saturating_add(u64::from(timeout.subsec_nanos() > 0));
    i32::try_from(secs).unwrap_or(i32::MAX)
}

/// The client for a call that may last `timeout` and then some: bollard's own request
/// timeout (2 minutes) would otherwise cut a long grace period short.
fn lasting(docker: &Docker, timeout: Duration) -> Docker {
    let needed = timeout.saturating_add(AFTER_GRACE);
    if needed > docker.timeout() {
        docker.clone().with_timeout(needed)
    } else {
        docker.clone()
    }
}

pub(crate) async fn start(docker: &Docker, id: &str, name: &str) -> Result<()> {
    docker
        .start_container(id, None::<StartContainerOptions>)
        .await
        .map_err(|e| Error::docker(format!("start container {name}"), e))
}

pub(crate) async fn stop(docker: &Docker, id: &str, name: &str, timeout: Duration) -> Result<()> {
    let opts = StopContainerOptions { t: Some(grace_seconds(timeout)), signal: None };
    lasting(docker, timeout)
        .stop_container(id, Some(opts))
        .await
        .map_err(|e| Error::docker(format!("stop container {name}"), e))
}

pub(crate) async fn restart(docker: &Docker, id: &str, name: &str, timeout: Duration) -> Result<()> {
    let opts = RestartContainerOptions { t: Some(grace_seconds(timeout)), signal: None };
    lasting(docker, timeout)
        .restart_container(id, Some(opts))
        .await
        .map_err(|e| Error::docker(format!("restart container {name}"), e))
}

pub(crate) async fn kill(docker: &Docker, id: &str, name: &str, signal: &str) -> Result<()> {
    checks::signal("signal", signal).map_err(|i| i.into_error(name))?;
    let signal = checks::signal_name(signal);
    docker
        .kill_container(id, Some(KillContainerOptions { signal: signal.clone() }))
        .await
        .map_err(|e| Error::docker(format!("send {signal} to container {name}"), e))
}

pub(crate) async fn pause(docker: &Docker, id: &str, name: &str) -> Result<()> {
    docker.pause_container(id).await.map_err(|e| Error::docker(format!("pause container {name}"), e))
}

pub(crate) async fn unpause(docker: &Docker, id: &str, name: &str) -> Result<()> {
    docker.unpause_container(id).await.map_err(|e| Error::docker(format!("unpause container {name}"), e))
}

pub(crate) async fn connect(docker: &Docker, id: &str, name: &str, network: &str, aliases: Vec<String>) -> Result<()> {
    let endpoint = EndpointSettings { aliases: (!aliases.is_empty()).then_some(aliases), ..Default::default() };
    let req = NetworkConnectRequest { container: id.to_string(), endpoint_config: Some(endpoint) };
    docker
        .connect_network(network, req)
        .await
        .map_err(|e| Error::docker(format!("connect container {name} to network {network}"), e))
}

pub(crate) async fn disconnect(docker: &Docker, id: &str, name: &str, network: &str) -> Result<()> {
    let req = NetworkDisconnectRequest { container: id.to_string(), force: Some(false) };
    docker
        .disconnect_network(network, req)
        .await
        .map_err(|e| Error::docker(format!("disconnect container {name} from network {network}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grace_period_is_whole_seconds_rounded_up() {
        assert_eq!(grace_seconds(Duration::ZERO), 0);
        assert_eq!(grace_seconds(Duration::from_millis(1)), 1);
        assert_eq!(grace_seconds(Duration::from_secs(10)), 10);
        assert_eq!(grace_seconds(Duration::MAX), i32::MAX);
    }
}
