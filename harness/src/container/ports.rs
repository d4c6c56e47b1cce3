//! Published ports: a container port bound to an ephemeral port on the host's loopback.
//!
//! Never a fixed host port: eight parallel test processes asking for the same one would
//! collide, and Docker hands out a free port when the binding's host port is empty.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{PortBinding, PortMap};
use bollard::query_parameters::InspectContainerOptions;

use bollard::Docker;

use crate::docker;
use crate::engine;
use crate::error::{Error, Result};

/// Loopback only: a test's service has no business on the machine's other interfaces.
const HOST_IP: &str = "127.0.0.1";
/// A remote daemon's loopback is out of this host's reach, so there ports are published on
/// the daemon machine's interfaces, where [`docker::host_address`] connects.
const REMOTE_HOST_IP: &str = "0.0.0.0";

/// The host IP ports are published on: the loopback, unless the daemon is another machine.
pub(crate) fn bind_ip() -> &'static str {
    if docker::is_remote() {
        REMOTE_HOST_IP
    } else {
        HOST_IP
    }
}

fn key(port: u16) -> String {
    format!("{port}/tcp")
}

pub(crate) fn exposed(ports: &[u16]) -> Option<Vec<String>> {
    (!ports.is_empty()).then(|| ports.iter().map(|p| key(*p)).collect())
}

pub(crate) fn bindings(ports: &[u16]) -> Option<PortMap> {
    bindings_on(ports, bind_ip())
}

fn bindings_on(ports: &[u16], host_ip: &str) -> Option<PortMap> {
    (!ports.is_empty()).then(|| {
        ports
            .iter()
            .map(|p| {
                let any = PortBinding { host_ip: Some(host_ip.into()), host_port: Some(String::new()) };
                (key(*p), Some(vec![any]))
            })
            .collect::<HashMap<_, _>>()
    })
}

/// The host port bound to `container_port` in an inspected port map, if any yet.
pub(crate) fn host_port_in(ports: &PortMap, container_port: u16) -> Option<u16> {
    host_port_on(ports, container_port, bind_ip())
}

fn host_port_on(ports: &PortMap, container_port: u16, host_ip: &str) -> Option<u16> {
    let bindings = ports.get(&key(container_port))?.as_ref()?;
    let on_bind_ip = bindings.iter().find(|b| b.host_ip.as_deref() == Some(host_ip));
    on_bind_ip
        .or_else(|| bindings.first())
        .and_then(|b| b.host_port.as_deref())
        .and_then(|p| p.parse().ok())
        .filter(|p| *p != 0)
}

/// The host port bound to a published container port. The mapping is filled in as the
/// container starts, so right after a start it is asked again for a moment.
pub(crate) async fn host_port(docker: &Docker, id: &str, name: &str, container_port: u16) -> Result<u16> {
    let not_published =
        |reason: String| Error::PortNotPublished { container: name.to_string(), port: container_port, reason };
    let mut last = String::new();
    for pause in [0u64, 20, 50, 100, 200, 400, 800, 1000] {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let info = engine::past_stopped(|| {
            crate::retry::bounded(docker.inspect_container(id, None::<InspectContainerOptions>))
        })
        .await
        .map_err(|e| Error::docker(format!("inspect container {name} for its ports"), e))?;
        let requested = info
            .host_config
            .as_ref()
            .and_then(|h| h.port_bindings.as_ref())
            .is_some_and(|b| b.contains_key(&key(container_port)));
        if !requested {
            return Err(not_published("it was not published".into()));
        }
        if let Some(p) =
            info.network_settings.as_ref().and_then(|n| n.ports.as_ref()).and_then(|p| host_port_in(p, container_port))
        {
            return Ok(p);
        }
        let running = info.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        last = if running { "Docker has not assigned one yet".into() } else { "the container is not running".into() };
    }
    Err(not_published(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_port_asks_docker_for_any_loopback_port() {
        let b = bindings_on(&[8080], HOST_IP).unwrap();
        let binding = &b["8080/tcp"].as_ref().unwrap()[0];
        assert_eq!(binding.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(binding.host_port.as_deref(), Some(""));
        assert_eq!(exposed(&[8080, 53]).unwrap(), vec!["8080/tcp", "53/tcp"]);
        assert!(bindings(&[]).is_none());
    }

    #[test]
    fn a_remote_daemon_publishes_where_this_host_can_connect() {
        let b = bindings_on(&[8080], REMOTE_HOST_IP).unwrap();
        assert_eq!(b["8080/tcp"].as_ref().unwrap()[0].host_ip.as_deref(), Some("0.0.0.0"));
    }

    #[test]
    fn the_loopback_binding_is_read_back() {
        let map: PortMap = HashMap::from([(
            "8080/tcp".to_string(),
            Some(vec![
                PortBinding { host_ip: Some("0.0.0.0".into()), host_port: Some("1111".into()) },
                PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some("49153".into()) },
            ]),
        )]);
        assert_eq!(host_port_on(&map, 8080, HOST_IP), Some(49153));
        assert_eq!(host_port_on(&map, 8080, REMOTE_HOST_IP), Some(1111));
        assert_eq!(host_port_in(&map, 9090), None);
        let unassigned: PortMap = HashMap::from([("8080/tcp".to_string(), None)]);
        assert_eq!(host_port_in(&unassigned, 8080), None);
    }
}
