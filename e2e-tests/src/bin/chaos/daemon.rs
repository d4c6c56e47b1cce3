//! What a trial left, read from the daemon itself (bollard, no harness code): the harness's
//! resources by their labels, unlabelled `dh-` names, and the driver's own canaries.

use std::collections::{HashMap, HashSet};

use anyhow::Context;
use bollard::models::{ContainerCreateBody, NetworkCreateRequest, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptions, ListVolumesOptions,
    RemoveContainerOptionsBuilder,
};
use bollard::Docker;

use crate::procs;

pub(crate) const MANAGED: &str = "docker-harness.managed";
const SESSION: &str = "docker-harness.session";
const TEST: &str = "docker-harness.test";
const OWNER: &str = "docker-harness.owner";
const RUNNER: &str = "docker-harness.runner";
const SHARED: &str = "docker-harness.shared";
const KEEP_UNTIL: &str = "docker-harness.keep-until";
/// The e2e suite's bait (what its tests make outside the harness on purpose).
const BAIT: &str = "docker-harness-e2e.bait";
/// The driver's own canaries: `docker-harness-chaos.canary=<place>/<pid>/<start>@<created>`,
/// the driver's owner identity and the time, as the suite's bait label writes them, so that
/// a killed run's canaries go (by the next run's driver, or by `scripts/bait.sh sweep`)
/// while a run going on at the same time keeps its own.
pub(crate) const CANARY: &str = "docker-harness-chaos.canary";
/// Canaries whose owner cannot be judged here (another place, or a value this driver cannot
/// read) go once they are this old, as the suite's bait does.
const CANARY_MAX_AGE_SECS: u64 = 600;

/// One container, network or volume, with what the verdict needs.
#[derive(Debug, Clone)]
pub(crate) struct Res {
    pub(crate) kind: &'static str,
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) labels: HashMap<String, String>,
}

impl Res {
    fn label(&self, k: &str) -> &str {
        self.labels.get(k).map_or("", String::as_str)
    }

    pub(crate) fn session(&self) -> &str {
        self.label(SESSION)
    }

    pub(crate) fn whose(&self) -> String {
        format!(
            "{} {} {} (test {:?}, owner {}, session {})",
            self.kind,
            &self.id[..self.id.len().min(12)],
            self.name,
            self.label(TEST),
            self.label(OWNER),
            self.label(SESSION)
        )
    }

    /// The owner's `(pid, start)`.
    pub(crate) fn owner(&self) -> Option<(u32, u64)> {
        let mut it = self.label(OWNER).rsplitn(3, '/');
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?)).map(|(s, p)| (p, s))
    }

    /// The owner (or a shared resource's runner) as `(place, pid, start)`.
    fn judged_by(&self) -> Option<(String, u32, u64)> {
        let v = self.label(if self.labels.contains_key(SHARED) { RUNNER } else { OWNER });
        let mut it = v.rsplitn(3, '/');
        let start = it.next()?.parse().ok()?;
        let pid = it.next()?.parse().ok()?;
        Some((it.next()?.to_string(), pid, start))
    }
}

/// Every container, network and volume on the daemon.
pub(crate) async fn all(d: &Docker) -> anyhow::Result<Vec<Res>> {
    let mut out = Vec::new();
    let opts = ListContainersOptionsBuilder::default().all(true).build();
    for c in d.list_containers(Some(opts)).await.context("list containers")? {
        let name =
            c.names.unwrap_or_default().first().map(|n| n.trim_start_matches('/').to_string()).unwrap_or_default();
        out.push(Res { kind: "container", id: c.id.unwrap_or_default(), name, labels: c.labels.unwrap_or_default() });
    }
    for n in d.list_networks(None::<ListNetworksOptions>).await.context("list networks")? {
        let name = n.name.unwrap_or_default();
        out.push(Res { kind: "network", id: n.id.unwrap_or_default(), name, labels: n.labels.unwrap_or_default() });
    }
    let vols = d.list_volumes(None::<ListVolumesOptions>).await.context("list volumes")?;
    for v in vols.volumes.unwrap_or_default() {
        out.push(Res { kind: "volume", id: v.name.clone(), name: v.name, labels: v.labels });
    }
    Ok(out)
}

/// Names `dh-*` that carry neither the harness's label nor the suite's bait label nor a
/// canary's: what a test (or a program under it) made outside the harness by mistake.
pub(crate) fn unlabelled(all: &[Res]) -> HashSet<String> {
    all.iter()
        .filter(|r| r.name.starts_with("dh-"))
        .filter(|r| ![MANAGED, BAIT, CANARY].iter().any(|k| r.labels.contains_key(*k)))
        .map(|r| format!("{} {}", r.kind, r.name))
        .collect()
}

/// How a harness resource left after a trial counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Left {
    /// Its owner is dead: the harness should have removed it.
    Dead,
    /// Kept for debugging (a keep window not yet over).
    Kept,
    /// Session-shared: removed once the session's runner and every owner are gone.
    Shared,
    /// Owned by another place (the suite's other-host bait): goes by expiry.
    OtherHost,
    /// Its owner still runs.
    Live,
}

/// The verdict on a harness resource, by the same rules as the harness's, computed here.
pub(crate) fn verdict(r: &Res, now: u64, place: &str) -> Left {
    if r.labels.get(KEEP_UNTIL).and_then(|v| v.parse::<u64>().ok()).is_some_and(|until| now < until) {
        return Left::Kept;
    }
    let shared = r.labels.contains_key(SHARED);
    match r.judged_by() {
        Some((p, _, _)) if p != place => Left::OtherHost,
        Some((_, pid, start)) if procs::alive(pid, start) => Left::Live,
        Some(_) if shared => Left::Shared,
        Some(_) => Left::Dead,
        None => Left::OtherHost,
    }
}

/// This machine's place as the harness writes it: `<host>~<boot>~<PID namespace>`.
pub(crate) fn place() -> anyhow::Result<String> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").context("read the host name")?;
    let boot: String = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .context("read the boot id")?
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(12)
        .collect();
    let ns = std::fs::read_link("/proc/self/ns/pid").context("read the PID namespace")?;
    let ns = ns.to_string_lossy();
    let inode = ns.trim_start_matches("pid:[").trim_end_matches(']');
    Ok(format!("{}~{boot}~{inode}", host.trim()))
}

/// The driver's canaries: a running container, a network and a volume named `dh-` like the
/// harness's own, without its label, which every trial must leave untouched.
#[derive(Debug)]
pub(crate) struct Canaries {
    pub(crate) container: String,
    pub(crate) network: String,
    pub(crate) volume: String,
}

impl Canaries {
    pub(crate) async fn create(d: &Docker, token: &str, image: &str, place: &str) -> anyhow::Result<Canaries> {
        let name = format!("dh-chaos-canary-{token}");
        let me = std::process::id();
        let start = procs::stat(me).map_or(0, |(_, start)| start);
        let value = format!("{place}/{me}/{start}@{}", now_secs());
        let labels = HashMap::from([(CANARY.to_string(), value)]);
        let net = NetworkCreateRequest { name: name.clone(), labels: Some(labels.clone()), ..Default::default() };
        let network = d.create_network(net).await.context("create the canary network")?.id;
        let vol = VolumeCreateRequest { name: Some(name.clone()), labels: Some(labels.clone()), ..Default::default() };
        let volume = d.create_volume(vol).await.context("create the canary volume")?.name;
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            cmd: Some(vec!["sleep".into(), "86400".into()]),
            labels: Some(labels),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::default().name(&name).build();
        let container = d.create_container(Some(opts), body).await.context("create the canary container")?.id;
        d.start_container(&container, None::<bollard::query_parameters::StartContainerOptions>)
            .await
            .context("start the canary container")?;
        Ok(Canaries { container, network, volume })
    }

    /// What of the canaries is gone or stopped.
    pub(crate) async fn touched(&self, d: &Docker) -> Vec<String> {
        let mut bad = Vec::new();
        match d.inspect_container(&self.container, None).await {
            Ok(c) if c.state.as_ref().and_then(|s| s.running) == Some(true) => {}
            Ok(_) => bad.push(format!("canary container {} stopped", self.container)),
            Err(_) => bad.push(format!("canary container {} removed", self.container)),
        }
        if d.inspect_network(&self.network, None).await.is_err() {
            bad.push(format!("canary network {} removed", self.network));
        }
        if d.inspect_volume(&self.volume).await.is_err() {
            bad.push(format!("canary volume {} removed", self.volume));
        }
        bad
    }

    /// Removes the canaries of earlier runs that were killed before they removed their own:
    /// those whose driver is seen gone on this machine, and those of another place, or
    /// unreadable, older than ten minutes; never one whose label names no owner (an older
    /// driver's, maybe of a run going on now). Returns what went, as `kind name`.
    pub(crate) async fn remove_stale(d: &Docker, place: &str) -> anyhow::Result<Vec<String>> {
        let mut gone = Vec::new();
        let opts = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        // Containers first: a canary network or volume may be in use by a canary container.
        for r in all(d)
            .await?
            .into_iter()
            .filter(|r| stale_canary(r.labels.get(CANARY).map(String::as_str), place, now_secs()))
        {
            let removed = match r.kind {
                "container" => d.remove_container(&r.id, Some(opts.clone())).await,
                "network" => d.remove_network(&r.id).await,
                _ => d.remove_volume(&r.id, None::<bollard::query_parameters::RemoveVolumeOptions>).await,
            };
            match removed {
                Ok(()) => gone.push(format!("{} {}", r.kind, r.name)),
                Err(e) => eprintln!("chaos: could not remove an earlier run's canary {} {}: {e}", r.kind, r.name),
            }
        }
        Ok(gone)
    }

    pub(crate) async fn remove(&self, d: &Docker) {
        let opts = RemoveContainerOptionsBuilder::default().force(true).build();
        let _ = d.remove_container(&self.container, Some(opts)).await;
        let _ = d.remove_network(&self.network).await;
        let _ = d.remove_volume(&self.volume, None::<bollard::query_parameters::RemoveVolumeOptions>).await;
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Whether a resource carrying the canary label `value` is an earlier run's, left behind:
/// the rule of `scripts/bait.sh`'s verdict.
fn stale_canary(value: Option<&str>, place: &str, now: u64) -> bool {
    let Some(value) = value else { return false };
    // No owner: a driver from before owners were recorded made it, maybe for a run going on
    // now; it is left to that run.
    let Some((owner, created)) = value.rsplit_once('@') else { return false };
    let mut parts = owner.rsplitn(3, '/');
    let (start, pid, host) = (parts.next(), parts.next(), parts.next());
    if let (Some(start), Some(pid), Some(host)) = (start, pid, host) {
        if let (Ok(start), Ok(pid), true) = (start.parse(), pid.parse(), host == place) {
            return !procs::alive(pid, start);
        }
    }
    created.parse::<u64>().map_or(true, |c| now.saturating_sub(c) > CANARY_MAX_AGE_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_canary_goes_when_its_driver_is_gone_or_when_it_cannot_be_judged_and_is_old() {
        let place = "host~0123456789ab~4026531836";
        let me = std::process::id();
        let start = procs::stat(me).expect("this process").1;
        let now = now_secs();
        assert!(!stale_canary(Some(format!("{place}/{me}/{start}@{now}").as_str()), place, now), "a live driver's");
        assert!(stale_canary(Some(format!("{place}/{me}/{}@{now}", start + 1).as_str()), place, now), "a reused PID");
        assert!(
            !stale_canary(Some(format!("other~place~1/{me}/{start}@{now}").as_str()), place, now),
            "another place's, young"
        );
        assert!(
            stale_canary(Some(format!("other~place~1/1/1@{}", now - 601).as_str()), place, now),
            "another place's, old"
        );
        assert!(!stale_canary(Some("5a4d7853"), place, now), "an older driver's run token, maybe live");
        assert!(stale_canary(Some(&format!("{place}/x/y@{}", now - 601)), place, now), "unreadable, old");
        assert!(!stale_canary(None, place, now), "not a canary");
    }
}
