//! The one launch path: create the container, then copy its files in, start it and wait
//! for it. A test's containers and session-shared ones both come this way; they differ only
//! in who owns the container between the two steps.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use once_cell::sync::Lazy;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, Mount, MountType, MountVolumeOptions, NetworkingConfig,
};
use bollard::query_parameters::{CreateContainerOptions, StartContainerOptions};
use bollard::Docker;

use super::handle::Container;
use super::wait::poll;
use super::{files, follow, ports, ContainerGuard, ContainerSpec};
use crate::error::{Error, Result};
use crate::image::SessionImage;
use crate::resource::Kind;
use crate::scope::Scope;
use crate::{blocking, docker, gate, removal};

/// A mount through the API's `Mounts`, never a bind string: a named volume Docker creates
/// for it then carries `labels` (the harness's), as every volume of the test does.
fn mount(source: &str, target: &str, labels: &HashMap<String, String>) -> Mount {
    let (target, read_only) = match target.strip_suffix(":ro") {
        Some(t) => (t, true),
        None => (target.strip_suffix(":rw").unwrap_or(target), false),
    };
    let is_path = is_host_path(source);
    let (typ, volume_options) = if is_path {
        (MountType::BIND, None)
    } else {
        (MountType::VOLUME, Some(MountVolumeOptions { labels: Some(labels.clone()), ..Default::default() }))
    };
    Mount {
        target: Some(target.to_string()),
        source: Some(source.to_string()),
        typ: Some(typ),
        read_only: Some(read_only),
        volume_options,
        ..Default::default()
    }
}

/// Absolute host paths are binds (on Windows hosts too: `C:\…`), anything else a volume.
fn is_host_path(source: &str) -> bool {
    source.starts_with('/') || source.get(1..3) == Some(":\\") || source.starts_with("\\\\")
}

/// An anonymous volume for a path the image declares (`VOLUME`), created by Docker with the
/// harness's labels instead of none: still removed with its container (`-v`), and found by
/// every sweep if the container ever goes without it.
fn anonymous(target: &str, labels: &HashMap<String, String>) -> Mount {
    Mount {
        target: Some(target.to_string()),
        typ: Some(MountType::VOLUME),
        volume_options: Some(MountVolumeOptions { labels: Some(labels.clone()), ..Default::default() }),
        ..Default::default()
    }
}

/// The paths an image declares as volumes: as the session recorded them when it resolved
/// the image, else asked once per image per process (a failed inspect is not remembered,
/// and leaves the create to say what is wrong with the image).
async fn declared_volumes(docker: &Docker, image: &SessionImage) -> Vec<String> {
    if let Some(v) = &image.volumes {
        return v.clone();
    }
    if let Some(v) = SEEN.lock().ok().and_then(|m| m.get(&image.id).cloned()) {
        return v;
    }
    crate::docker::calls::note("container", "inspect_image");
    let Ok(info) = crate::retry::bounded(docker.inspect_image(&image.id)).await else { return Vec::new() };
    let paths = crate::image::declared(&info);
    if let Ok(mut m) = SEEN.lock() {
        m.insert(image.id.clone(), paths.clone());
    }
    paths
}

static SEEN: Lazy<Mutex<HashMap<String, Vec<String>>>> = Lazy::new(Default::default);

/// What Docker is asked to create for a spec: its options, then its escape hatches, then
/// the harness's own laid over whatever those left (`seal`).
fn body(
    spec: &ContainerSpec,
    image: String,
    harness: &HashMap<String, String>,
    declared: &[String],
) -> Result<ContainerCreateBody> {
    let networking_config = spec.network.as_ref().map(|net| NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            net.clone(),
            EndpointSettings { aliases: Some(spec.aliases.clone()), ..Default::default() },
        )])),
    });
    let mut body = ContainerCreateBody {
        image: Some(image),
        cmd: spec.cmd.clone(),
        entrypoint: spec.entrypoint.clone(),
        env: (!spec.env.is_empty()).then(|| spec.env.clone()),
        labels: Some(spec.labels.clone()),
        user: spec.user.clone(),
        working_dir: spec.workdir.clone(),
        exposed_ports: ports::exposed(&spec.ports),
        healthcheck: spec.healthcheck.clone(),
        host_config: Some(HostConfig {
            network_mode: spec.network.clone(),
            port_bindings: ports::bindings(&spec.ports),
            ..Default::default()
        }),
        networking_config,
        ..Default::default()
    };
    spec.options.apply(&mut body);
    spec.options.run_hooks(&mut body);
    seal(&mut body, spec, harness, declared)?;
    Ok(body)
}

/// The harness's part of the body, laid on last so no escape hatch can take it away: its
/// labels over any others on the container; the spec's mounts, with the harness's labels on
/// any volume Docker creates for them, winning at their targets; a labelled anonymous
/// volume for each path the image (or a hatch's `Volumes`) declares that nothing mounts;
/// the harness's labels on any volume mount a hatch added. A `Binds` string naming a volume
/// is refused: Docker would create that volume with no labels, and nothing would remove it.
fn seal(
    body: &mut ContainerCreateBody,
    spec: &ContainerSpec,
    harness: &HashMap<String, String>,
    declared: &[String],
) -> Result<()> {
    body.labels.get_or_insert_with(HashMap::new).extend(harness.clone());
    let host = body.host_config.get_or_insert_with(HostConfig::default);
    if let Some(bind) = host.binds.iter().flatten().find(|b| !is_host_path(b)) {
        return Err(Error::InvalidOption {
            container: spec.logical.clone(),
            option: "bind (from with_create_body)",
            value: bind.clone(),
            reason: "a bind string naming a volume makes Docker create that volume without the test's labels".into(),
            help: "mount it with ContainerSpec::with_mount(name, target), or push a bollard Mount of type volume \
                   onto host_config.mounts (it gets the labels)"
                .into(),
        });
    }
    let mut mounts: Vec<Mount> = spec.mounts.iter().map(|(s, t)| mount(s, t, harness)).collect();
    let theirs = host.mounts.take().unwrap_or_default();
    for mut m in theirs {
        if mounts.iter().any(|h| h.target == m.target) {
            continue;
        }
        if m.typ == Some(MountType::VOLUME) {
            let opts = m.volume_options.get_or_insert_with(Default::default);
            opts.labels.get_or_insert_with(HashMap::new).extend(harness.clone());
        }
        mounts.push(m);
    }
    let mut anonymous_paths: Vec<String> = declared.to_vec();
    anonymous_paths.extend(body.volumes.take().unwrap_or_default());
    for path in anonymous_paths {
        if !mounts.iter().any(|m| m.target.as_deref() == Some(path.as_str())) {
            mounts.push(anonymous(&path, harness));
        }
    }
    host.mounts = (!mounts.is_empty()).then_some(mounts);
    Ok(())
}

/// Creates the container (not started). `labels` are the harness's, laid over the spec's.
pub(crate) async fn create(
    docker: &Docker,
    spec: &ContainerSpec,
    image: &SessionImage,
    name: String,
    mut labels: HashMap<String, String>,
) -> Result<Container> {
    spec.options.check(&spec.logical)?;
    let declared = declared_volumes(docker, image).await;
    labels.insert(crate::labels::IMAGE.to_string(), image.reference.clone());
    // The ID, not the reference: what the session resolved is what every test runs, a
    // re-tag meanwhile notwithstanding, without an inspect per test to check it.
    let body = body(spec, image.id.clone(), &labels, &declared)?;
    let _pass = gate::enter(&format!("create container {name}"))?;
    let opts = CreateContainerOptions { name: Some(name.clone()), platform: spec.options.platform() };
    crate::docker::calls::note("container", "create_container");
    let id = match crate::retry::bounded(docker.create_container(Some(opts), body)).await {
        Ok(created) => created.id,
        Err(e) if is_missing_image(&e, &image.id) => {
            return Err(Error::ImageChanged {
                image: image.reference.clone(),
                expected: image.id.clone(),
                found: "<absent>".into(),
            })
        }
        Err(e) => match removal::found_again(docker, Kind::Container, &name, &labels, &e).await {
            Some(r) => r.id,
            None => return Err(Error::docker(format!("create container {name}"), e)),
        },
    };
    Ok(Container::new(id, name))
}

/// A create answered 404 for the image it named by ID: the image was removed during the
/// session (a spec's own `with_create_body` image is another's business, and other 404s,
/// such as a network, keep their own message).
fn is_missing_image(e: &bollard::errors::Error, id: &str) -> bool {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    // Docker: "No such image: sha256:…"; Podman: "…: image not known". Not Docker's 404 for
    // an image that is there for another platform ("was found but does not match").
    crate::engine::is_404(e)
        && (lower.contains("no such image") || lower.contains("image not known"))
        && text.contains(id.trim_start_matches("sha256:").get(..12).unwrap_or(id))
}

/// Copies the spec's files in and, unless it is created only, starts the container and
/// waits for its strategies.
pub(crate) async fn ready(docker: &Docker, c: &Container, spec: &ContainerSpec) -> Result<()> {
    files::upload_all(docker, c.id(), c.name(), &spec.files).await?;
    if !spec.start {
        return Ok(());
    }
    crate::docker::calls::note("container", "start_container");
    docker
        .start_container(c.id(), None::<StartContainerOptions>)
        .await
        .map_err(|e| Error::docker(format!("start container {}", c.name()), e))?;
    poll::apply(docker, c.id(), c.name(), &spec.waits).await
}

/// A test's container: tracked by its scope (and guarded) as soon as Docker has it, so a
/// failed copy, start or wait leaves nothing behind. Its output is followed from then on
/// when the spec asks, and its follower drained before any removal.
pub(crate) async fn for_scope(scope: Arc<Scope>, spec: ContainerSpec, image: SessionImage) -> Result<ContainerGuard> {
    blocking::run(crate::docker::calls::why("create", async move {
        let docker = docker::client().await?;
        let labels = scope.labels_for_new(&HashMap::new());
        let c = create(&docker, &spec, &image, scope.name_for(&spec.logical), labels).await?;
        scope.farewell.name(c.id(), &spec.logical);
        if !spec.consumers.is_empty() {
            let drain = follow::start(docker.clone(), c.id(), c.name(), spec.consumers.clone());
            scope.farewell.on_removal(c.id(), drain);
        }
        let guard = ContainerGuard::new(c, scope, &spec.logical);
        ready(&docker, &guard, &spec).await?;
        Ok(guard)
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_404_for_the_missing_image_itself_is_a_changed_image() {
        let id = "sha256:62304bbbf1570f31793622261486c24b019d1f3575b20afb23bd05abf823c8a7";
        let err = |status_code: u16, message: &str| bollard::errors::Error::DockerResponseServerError {
            status_code,
            message: message.to_string(),
        };
        assert!(is_missing_image(&err(404, &format!("No such image: {id}")), id));
        assert!(is_missing_image(&err(404, "62304bbbf157: image not known"), id));
        let platform = format!("image with reference {id} was found but does not match the specified platform");
        assert!(!is_missing_image(&err(404, &platform), id));
        assert!(!is_missing_image(&err(404, "network dh-x-net not found"), id));
        assert!(!is_missing_image(&err(404, "No such image: sha256:0000000000000000"), id));
        assert!(!is_missing_image(&err(500, &format!("No such image: {id}")), id));
    }

    #[test]
    fn a_named_volume_is_mounted_with_the_harness_labels_and_a_host_path_as_a_bind() {
        let labels = HashMap::from([("docker-harness.managed".to_string(), "true".to_string())]);
        let v = mount("dh-t-1-data", "/data", &labels);
        assert_eq!(v.typ, Some(MountType::VOLUME));
        assert_eq!(v.volume_options.and_then(|o| o.labels), Some(labels.clone()));
        assert_eq!(v.read_only, Some(false));
        let b = mount("/srv/fixtures", "/fixtures:ro", &labels);
        assert_eq!((b.typ, b.target.as_deref(), b.read_only), (Some(MountType::BIND), Some("/fixtures"), Some(true)));
        assert!(b.volume_options.is_none());
    }

    #[test]
    fn a_path_the_image_declares_gets_a_labelled_anonymous_volume_unless_mounted() {
        let harness = HashMap::from([("docker-harness.managed".to_string(), "true".to_string())]);
        let spec = ContainerSpec::new("db").with_mount("dh-t-1-data", "/var/lib/db");
        let declared = ["/var/lib/db".to_string(), "/cache".to_string()];
        let mounts = body(&spec, "img".into(), &harness, &declared).unwrap().host_config.unwrap().mounts.unwrap();
        assert_eq!(mounts.len(), 2, "{mounts:?}");
        let cache = mounts.iter().find(|m| m.target.as_deref() == Some("/cache")).unwrap();
        assert_eq!((cache.typ, cache.source.as_deref()), (Some(MountType::VOLUME), None));
        assert_eq!(cache.volume_options.as_ref().and_then(|o| o.labels.clone()), Some(harness));
    }

    #[test]
    fn the_container_carries_the_harness_labels_over_the_specs_own() {
        let spec = ContainerSpec::new("web").with_label("docker-harness.managed", "no").with_label("app", "x");
        let harness = HashMap::from([("docker-harness.managed".to_string(), "true".to_string())]);
        let l = body(&spec, "img".into(), &harness, &[]).unwrap().labels.unwrap();
        assert_eq!((l["docker-harness.managed"].as_str(), l["app"].as_str()), ("true", "x"));
    }

    #[test]
    fn an_escape_hatch_that_clears_labels_and_mounts_still_yields_the_harness_ones() {
        let harness = HashMap::from([("docker-harness.managed".to_string(), "true".to_string())]);
        let spec = ContainerSpec::new("app").with_mount("dh-t-1-data", "/data").with_create_body(|b| {
            b.labels = None;
            b.host_config = Some(HostConfig { oom_score_adj: Some(500), ..Default::default() });
            b.volumes = Some(vec!["/cache".into()]);
        });
        let b = body(&spec, "img".into(), &harness, &[]).unwrap();
        assert_eq!(b.labels.unwrap()["docker-harness.managed"], "true");
        let host = b.host_config.unwrap();
        assert_eq!(host.oom_score_adj, Some(500), "the hatch's own setting stays");
        let mounts = host.mounts.unwrap();
        let targets: Vec<_> = mounts.iter().filter_map(|m| m.target.as_deref()).collect();
        assert_eq!(targets, ["/data", "/cache"]);
        assert!(mounts
            .iter()
            .all(|m| m.volume_options.as_ref().and_then(|o| o.labels.clone()) == Some(harness.clone())));
    }

    #[test]
    fn a_volume_a_hatch_mounts_is_labelled_and_a_bind_naming_one_refused() {
        let harness = HashMap::from([("docker-harness.managed".to_string(), "true".to_string())]);
        let spec = ContainerSpec::new("app").with_create_body(|b| {
            let host = b.host_config.get_or_insert_with(Default::default);
            host.mounts = Some(vec![Mount {
                target: Some("/v".into()),
                source: Some("extra".into()),
                typ: Some(MountType::VOLUME),
                ..Default::default()
            }]);
            host.binds = Some(vec!["/srv:/srv:ro".into()]);
        });
        let mounts = body(&spec, "img".into(), &harness, &[]).unwrap().host_config.unwrap().mounts.unwrap();
        assert_eq!(mounts[0].volume_options.as_ref().and_then(|o| o.labels.clone()), Some(harness.clone()));
        let spec = spec.with_create_body(|b| {
            b.host_config.get_or_insert_with(Default::default).binds = Some(vec!["cache:/c".into()]);
        });
        match body(&spec, "img".into(), &harness, &[]) {
            Err(Error::InvalidOption { value, .. }) => assert_eq!(value, "cache:/c"),
            other => panic!("expected the bind to be refused, got {other:?}"),
        }
    }
}
