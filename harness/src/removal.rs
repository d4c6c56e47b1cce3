//! Removing what the harness manages and finding it again: a removal that counts "already
//! gone" as success and returns only once Docker confirms it with a 404, removal in
//! dependency order, and listing by exact label filters (never Docker's name filter, which
//! matches substrings).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::query_parameters::{
    InspectContainerOptions, InspectNetworkOptions, ListContainersOptions, ListImagesOptions, ListNetworksOptions,
    ListVolumesOptions, RemoveContainerOptions, RemoveImageOptions, RemoveVolumeOptions,
};
use bollard::Docker;
use futures_util::future::join_all;

use crate::built;
use crate::docker::calls::note;
use crate::engine::{self, is_404, status_of};
use crate::error::{CleanupFailure, Error, Result};
use crate::resource::{Kind, Resource};
use crate::retry::{bounded, idempotent};

/// How long a removal may wait for Docker to let go of a resource (an in-use volume or a
/// network whose containers are still going) before it reports failure.
const SETTLE: Duration = Duration::from_secs(10);

/// Removes one resource and waits until inspecting it answers 404. An image goes by its
/// tag (`name`), with what its build made on the way.
pub(crate) async fn remove(docker: &Docker, kind: Kind, id: &str, name: &str) -> Result<()> {
    if kind == Kind::Image {
        return remove_image(docker, id, name).await;
    }
    let started = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        let what = || format!("remove {kind} {name}");
        let attempt = idempotent(&what, || async {
            match kind {
                Kind::Container => {
                    // Force kills at once: a `sleep` as PID 1 ignores SIGTERM, so a graceful
                    // stop would wait out Docker's full 10 s timeout for nothing.
                    let opts = RemoveContainerOptions { force: true, v: true, link: false };
                    note("removal", "remove_container");
                    docker.remove_container(id, Some(opts)).await
                }
                Kind::Network => {
                    note("removal", "remove_network");
                    docker.remove_network(id).await
                }
                Kind::Volume => {
                    note("removal", "remove_volume");
                    docker.remove_volume(id, Some(RemoveVolumeOptions { force: false })).await
                }
                Kind::Image => unreachable!("images are removed by remove_image"),
            }
        })
        .await;
        match attempt {
            Ok(()) => {}
            // The answer already says it is gone: no inspect to confirm it.
            Err(e) if is_404(&e) => return Ok(()),
            // 409 (in use / removal in progress) and 403/500 (network with active endpoints)
            // settle once the containers that hold them are gone.
            Err(e) if matches!(status_of(&e), Some(409 | 403 | 500)) && started.elapsed() < SETTLE => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
                continue;
            }
            Err(e) => return Err(Error::docker(format!("remove {kind} {name}"), e)),
        }
        if gone(docker, kind, id).await? {
            return Ok(());
        }
        if started.elapsed() >= SETTLE {
            return Err(Error::Timeout { what: format!("see {kind} {name} gone"), after: SETTLE });
        }
        tokio::time::sleep(pause).await;
    }
}

/// True once Docker answers 404 for the resource.
pub(crate) async fn gone(docker: &Docker, kind: Kind, id: &str) -> Result<bool> {
    note("removal", "inspect_gone");
    let what = || format!("inspect {kind} {id}");
    let r = idempotent(&what, || async {
        match kind {
            Kind::Container => docker.inspect_container(id, None::<InspectContainerOptions>).await.map(drop),
            Kind::Network => docker.inspect_network(id, None::<InspectNetworkOptions>).await.map(drop),
            Kind::Volume => docker.inspect_volume(id).await.map(drop),
            Kind::Image => docker.inspect_image(id).await.map(drop),
        }
    })
    .await;
    match r {
        Ok(()) => Ok(false),
        Err(e) if is_404(&e) => Ok(true),
        Err(e) => Err(Error::docker(format!("inspect {kind} {id}"), e)),
    }
}

/// Removes a built image by its tag, then every image and container its build recorded as
/// its own, newest first (a child before its parent), never pruning: what the daemon's
/// cache lent the build from another build stays. A removal answered 409 (another image
/// was built on it, or a container the harness does not own uses it) is left alone: it is
/// not the harness's to force; the label keeps the tagged image findable for a later sweep.
async fn remove_image(docker: &Docker, id: &str, tag: &str) -> Result<()> {
    // By tag: another build may have produced the same image ID and tagged it too; its tag
    // is not this one's to take. The image itself goes with its last tag.
    let reference = if tag.is_empty() { id } else { tag };
    let untag = RemoveImageOptions { force: false, noprune: true, ..Default::default() };
    note("removal", "remove_image");
    let what = || format!("remove image {reference}");
    match idempotent(&what, || docker.remove_image(reference, Some(untag.clone()), None)).await {
        Ok(_) => {}
        Err(e) if is_404(&e) => {}
        Err(e) if status_of(&e) == Some(409) => {
            eprintln!("docker-harness: left image {reference} in place: {e}");
            return Ok(());
        }
        Err(e) => return Err(Error::docker(format!("remove image {reference}"), e)),
    }
    let started = Instant::now();
    while !gone(docker, Kind::Image, reference).await? {
        if started.elapsed() >= SETTLE {
            return Err(Error::Timeout { what: format!("see image {reference} gone"), after: SETTLE });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Untagging leaves the image itself when another image was built on it (a soft
    // conflict): then it waits, as an intermediate that is still used does.
    if !id.is_empty() && id != reference {
        if let Err(e) = remove_untagged(docker, id).await {
            eprintln!("docker-harness: could not remove image {id} (was {tag}): {e}");
        }
    }
    let Some(made) = built::read(tag) else {
        retry_pending(docker).await;
        return Ok(());
    };
    for c in &made.containers {
        let opts = RemoveContainerOptions { force: true, v: true, link: false };
        note("removal", "remove_container");
        match docker.remove_container(c, Some(opts)).await {
            Ok(()) => {}
            Err(e) if is_404(&e) => {}
            Err(e) => eprintln!("docker-harness: could not remove build container {c} of {tag}: {e}"),
        }
    }
    for image in made.images.iter().rev() {
        if let Err(e) = remove_untagged(docker, image).await {
            eprintln!("docker-harness: could not remove image {image} that building {tag} made: {e}");
        }
    }
    built::forget(tag);
    retry_pending(docker).await;
    Ok(())
}

/// Removes an untagged image a build made, never pruning. A 409 (a child image, or a
/// container using it: the cache lent it to another build) leaves it on the pending list,
/// tried again whenever a later removal goes.
async fn remove_untagged(docker: &Docker, image: &str) -> std::result::Result<(), bollard::errors::Error> {
    let untag = RemoveImageOptions { force: false, noprune: true, ..Default::default() };
    note("removal", "remove_image");
    match bounded(docker.remove_image(image, Some(untag), None)).await {
        Ok(_) => Ok(()),
        Err(e) if is_404(&e) => Ok(()),
        Err(e) if status_of(&e) == Some(409) => {
            built::leave_pending(image);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Tries again the images of earlier builds that were still used when their build went:
/// the build just removed may have been what stood on them. Newest first is unknown here,
/// so it goes round while each round removes something.
async fn retry_pending(docker: &Docker) {
    let untag = RemoveImageOptions { force: false, noprune: true, ..Default::default() };
    let mut left = built::pending();
    while !left.is_empty() {
        let before = left.len();
        let mut still = Vec::new();
        for image in left {
            note("removal", "remove_image");
            match bounded(docker.remove_image(&image, Some(untag.clone()), None)).await {
                Ok(_) => built::done_pending(&image),
                Err(e) if is_404(&e) => built::done_pending(&image),
                Err(_) => still.push(image),
            }
        }
        if still.len() == before {
            break;
        }
        left = still;
    }
}

async fn remove_one(docker: &Docker, r: &Resource) -> Option<CleanupFailure> {
    remove(docker, r.kind, &r.id, &r.name).await.err().map(|e| CleanupFailure {
        kind: r.kind,
        name: r.name.clone(),
        error: Box::new(e),
    })
}

/// Removes resources in dependency order: all containers in parallel, then the networks
/// and volumes in parallel, alongside the built images one after the other (one may be
/// built on another). Returns what could not be removed.
pub(crate) async fn remove_in_order(docker: &Docker, items: &[Resource]) -> Vec<CleanupFailure> {
    let of = |kind: Kind| items.iter().filter(move |r| r.kind == kind);
    // Containers first, in parallel: they hold the rest. Then networks, volumes and images
    // at once, since none of them holds another (a network's removal takes the daemon
    // hundreds of milliseconds, a volume's a few).
    let mut failures: Vec<CleanupFailure> =
        join_all(of(Kind::Container).map(|r| remove_one(docker, r))).await.into_iter().flatten().collect();
    let images = async {
        let mut failed = Vec::new();
        // Newest first: the later of two builds may stand on the earlier one's images.
        for r in of(Kind::Image).collect::<Vec<_>>().into_iter().rev() {
            failed.extend(remove_one(docker, r).await);
        }
        failed
    };
    let rest = join_all(of(Kind::Network).chain(of(Kind::Volume)).map(|r| remove_one(docker, r)));
    let (rest, images) = tokio::join!(rest, images);
    failures.extend(rest.into_iter().flatten());
    failures.extend(images);
    failures
}

/// Whether `r` is among the resources that `failures` could not remove (by kind and name:
/// a container and a volume may share a name).
pub(crate) fn failed_to_remove(failures: &[CleanupFailure], r: &Resource) -> bool {
    failures.iter().any(|f| f.kind == r.kind && f.name == r.name)
}

/// Lists containers, all states (past Podman's `stopped`, see `engine`).
async fn list_containers(
    docker: &Docker,
    filters: &HashMap<String, Vec<String>>,
) -> std::result::Result<Vec<bollard::models::ContainerSummary>, bollard::errors::Error> {
    idempotent(&|| "list containers".into(), || {
        engine::past_stopped(|| {
            let opts = ListContainersOptions { all: true, filters: Some(filters.clone()), ..Default::default() };
            note("removal", "list_containers");
            docker.list_containers(Some(opts))
        })
    })
    .await
}

/// Lists every resource carrying all of `labels` (as `key` or `key=value` filters), or
/// every resource when `labels` is empty.
/// Docker's label filter is exact, unlike its name filter, which matches substrings.
pub(crate) async fn list_labelled(docker: &Docker, labels: &[String]) -> Result<Vec<Resource>> {
    list_kinds(docker, labels, &Kind::TEARDOWN_ORDER).await
}

/// As [`list_labelled`], of these kinds only: one call per kind, so a caller that cannot
/// meet an image (or a network) does not pay to list them.
pub(crate) async fn list_kinds(docker: &Docker, labels: &[String], kinds: &[Kind]) -> Result<Vec<Resource>> {
    let filters =
        if labels.is_empty() { HashMap::new() } else { HashMap::from([("label".to_string(), labels.to_vec())]) };
    let wants = |k: Kind| kinds.contains(&k);
    let (containers, networks, volumes, images) = tokio::join!(
        async {
            if wants(Kind::Container) {
                list_containers(docker, &filters).await.map(Some)
            } else {
                Ok(None)
            }
        },
        async {
            if !wants(Kind::Network) {
                return Ok(None);
            }
            note("removal", "list_networks");
            idempotent(&|| "list networks".into(), || {
                docker.list_networks(Some(ListNetworksOptions { filters: Some(filters.clone()) }))
            })
            .await
            .map(Some)
        },
        async {
            if !wants(Kind::Volume) {
                return Ok(None);
            }
            note("removal", "list_volumes");
            idempotent(&|| "list volumes".into(), || {
                docker.list_volumes(Some(ListVolumesOptions { filters: Some(filters.clone()) }))
            })
            .await
            .map(Some)
        },
        async {
            if !wants(Kind::Image) {
                return Ok(None);
            }
            note("removal", "list_images");
            let opts = ListImagesOptions { filters: Some(filters.clone()), ..Default::default() };
            idempotent(&|| "list images".into(), || docker.list_images(Some(opts.clone()))).await.map(Some)
        },
    );
    let mut out = Vec::new();
    for c in containers.map_err(|e| Error::docker("list containers", e))?.unwrap_or_default() {
        let name = c.names.and_then(|n| n.into_iter().next()).map(|n| n.trim_start_matches('/').to_string());
        out.push(
            Resource::new(Kind::Container, c.id.unwrap_or_default(), name.unwrap_or_default())
                .with_labels(c.labels.unwrap_or_default()),
        );
    }
    for n in networks.map_err(|e| Error::docker("list networks", e))?.unwrap_or_default() {
        out.push(
            Resource::new(Kind::Network, n.id.unwrap_or_default(), n.name.unwrap_or_default())
                .with_labels(n.labels.unwrap_or_default()),
        );
    }
    let volumes = volumes.map_err(|e| Error::docker("list volumes", e))?;
    for v in volumes.and_then(|v| v.volumes).unwrap_or_default() {
        out.push(Resource::new(Kind::Volume, v.name.clone(), v.name).with_labels(v.labels));
    }
    for i in images.map_err(|e| Error::docker("list images", e))?.unwrap_or_default() {
        // One resource per tag: a tag is what a build made and what a removal takes away.
        let tags: Vec<&String> = i.repo_tags.iter().filter(|t| *t != "<none>:<none>").collect();
        for tag in &tags {
            out.push(Resource::new(Kind::Image, i.id.clone(), (*tag).clone()).with_labels(i.labels.clone()));
        }
        // A build's `LABEL` steps leave images with part of its labels; one left dangling (its
        // build was cut off, or its record lost) is found by its ID, as nothing else names it.
        if tags.is_empty() && i.labels.get(crate::labels::MANAGED).is_some_and(|v| v == "true") {
            out.push(Resource::new(Kind::Image, i.id.clone(), i.id.clone()).with_labels(i.labels.clone()));
        }
    }
    // Podman 4.3 answers a volume list filtered by several labels with the volumes that
    // carry any one of them (Docker: all of them), which would hand a sweep volumes that
    // lack the managed label. The daemon's filter only narrows; this check decides.
    out.retain(|r| carries_all(&r.labels, labels));
    Ok(out)
}

/// After a create whose answer was lost on the way (a reset connection, half a response,
/// a 5xx that may have come from something between), the resource it may have made: the
/// one of `kind` carrying all of `labels` under exactly `name`. A create is never made
/// twice; what it made is found again, or it made nothing. `None` when it is not there or
/// the daemon cannot say.
pub(crate) async fn found_again(
    docker: &Docker,
    kind: Kind,
    name: &str,
    labels: &HashMap<String, String>,
    lost: &bollard::errors::Error,
) -> Option<Resource> {
    if !crate::retry::transient(lost) {
        return None;
    }
    let filters: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let found = list_labelled(docker, &filters).await.ok()?;
    let r = found.into_iter().find(|r| r.kind == kind && r.name == name)?;
    eprintln!(
        "docker-harness: the answer to create {kind} {name} was lost ({lost}); found it again by name and labels"
    );
    Some(r)
}

/// True when `labels` satisfies every `key` or `key=value` filter.
fn carries_all(labels: &HashMap<String, String>, filters: &[String]) -> bool {
    filters.iter().all(|f| match f.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
        None => labels.contains_key(f.as_str()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resource_must_carry_every_label_filter_not_just_one() {
        let labels = HashMap::from([("docker-harness.task".to_string(), "x".to_string())]);
        let managed = ["docker-harness.managed".to_string(), "docker-harness.task=x".to_string()];
        assert!(!carries_all(&labels, &managed));
        assert!(carries_all(&labels, &["docker-harness.task=x".to_string()]));
        assert!(carries_all(&labels, &["docker-harness.task".to_string()]));
        assert!(!carries_all(&labels, &["docker-harness.task=y".to_string()]));
        assert!(carries_all(&labels, &[]));
    }
}
