//! The session image: one pull per session, policy `never`, unknown tags, and integrity: a
//! re-tag during the run changes nothing, a removed image is a clear error. Each check runs in a child process with its
//! own session and a private image reference, so the session image other tests use is
//! never touched.

mod common;

use bollard::query_parameters::RemoveImageOptions;
use docker_harness::{ContainerSpec, Counts, Error, TestContext};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn one_line(e: &Error) -> String {
    e.to_string().replace('\n', " ")
}

#[test]
#[ignore = "run as a child"]
fn child_resolves_the_image_twice_with_a_retag_between() {
    if !common::is_child() {
        return;
    }
    rt().block_on(async {
        let first = TestContext::named("integrity-first").unwrap();
        let c = first.container(ContainerSpec::new("base").with_cmd(["sleep", "3600"])).await.unwrap();
        // A different image under the session's reference: the base container's
        // filesystem with one more file.
        c.exec(["touch", "/changed"]).await.unwrap();
        let docker = common::raw().await;
        let private = std::env::var("DOCKER_HARNESS_IMAGE").unwrap();
        let (repo, tag) = private.split_once(':').unwrap();
        let opts = bollard::query_parameters::CommitContainerOptions {
            container: Some(c.id().to_string()),
            repo: Some(repo.to_string()),
            tag: Some(tag.to_string()),
            ..Default::default()
        };
        docker.commit_container(opts, bollard::models::ContainerConfig::default()).await.unwrap();
        let second = TestContext::named("integrity-second").unwrap();
        let after = second.container(ContainerSpec::new("after").with_cmd(["sleep", "3600"])).await.unwrap();
        let changed = after.exec(["test", "-e", "/changed"]).await.unwrap().exit_code;
        println!("REPORT changed_exit={changed}");
        // And an image that is gone by the time a later context needs it is a clear error.
        first.cleanup().await.unwrap();
        second.cleanup().await.unwrap();
        // The committed image, and with it its untagged parent: the one the session resolved.
        let force = || Some(RemoveImageOptions { force: true, ..Default::default() });
        docker.remove_image(&private, force(), None).await.unwrap();
        let session_id = docker_harness::session_image().await.unwrap().id;
        let _ = docker.remove_image(&session_id, force(), None).await;
        assert!(docker.inspect_image(&session_id).await.is_err(), "the session's image is still there");
        let third = TestContext::named("integrity-third").unwrap();
        match third.container(ContainerSpec::new("gone").with_cmd(["true"])).await {
            Err(e @ Error::ImageChanged { .. }) => println!("REPORT result={}", one_line(&e)),
            other => println!("REPORT result=unexpected {other:?}"),
        }
    });
}

#[tokio::test]
async fn a_retag_during_the_session_changes_nothing_and_a_removed_image_is_a_clear_error() -> anyhow::Result<()> {
    let docker = common::raw().await;
    let base = docker_harness::session_image().await?;
    // A private image of its own ID (the session image plus a file), which the child may
    // remove without touching what the other tests use.
    let seed = TestContext::named("integrity-seed")?;
    // What the events ledger of `make audit` sees of this test: the seed container, and the
    // committed image, which inherits the container's labels and so its session's.
    seed.set_budget(Counts::new(1, 0, 0).with_images(1));
    let c = seed.container(ContainerSpec::new("seed").with_cmd(["sleep", "3600"])).await?;
    c.exec(["touch", "/private"]).await?;
    let private = format!("dh-e2e-private-{}:integrity", uuid::Uuid::new_v4().simple());
    let (repo, tag) = private.split_once(':').unwrap();
    let opts = bollard::query_parameters::CommitContainerOptions {
        container: Some(c.id().to_string()),
        repo: Some(repo.to_string()),
        tag: Some(tag.to_string()),
        ..Default::default()
    };
    docker.commit_container(opts, bollard::models::ContainerConfig::default()).await?;
    seed.cleanup().await?;
    let mut cmd =
        common::child("child_resolves_the_image_twice_with_a_retag_between", &[("DOCKER_HARNESS_IMAGE", &private)]);
    common::own_session(&mut cmd, "integrity");
    let out = cmd.output()?;
    // The private tag now names the committed image; removing it removes that image.
    let _ = docker.remove_image(&private, Some(RemoveImageOptions { force: true, ..Default::default() }), None).await;
    let r = common::reported(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        r.get("changed_exit").map(String::as_str),
        Some("1"),
        "a later context ran the re-tagged image\n{stderr}"
    );
    let msg = r.get("result").map(String::as_str).unwrap_or_default();
    assert!(msg.starts_with(&format!("image {private} changed during the session")), "{msg}\n{stderr}");
    assert!(msg.contains("<absent>"), "{msg}");
    // The pinned tag the other tests use still points where it did.
    assert_eq!(docker.inspect_image(&base.reference).await?.id.as_deref(), Some(base.id.as_str()));
    Ok(())
}

#[test]
#[ignore = "run as a child"]
fn child_creates_a_container_from_the_session_image() {
    if !common::is_child() {
        return;
    }
    rt().block_on(async {
        let ctx = TestContext::named("image-policy").unwrap();
        match ctx.container(ContainerSpec::new("c").with_cmd(["true"])).await {
            Ok(_) => println!("REPORT result=ok"),
            Err(e @ Error::ImageMissing { .. }) => println!("REPORT result=missing: {}", one_line(&e)),
            Err(Error::ImagePull { attempts, not_found, message, .. }) => {
                println!("REPORT result=pull attempts={attempts} not_found={not_found} {}", message.replace('\n', " "));
            }
            Err(e) => println!("REPORT result=other {}", one_line(&e)),
        }
    });
}

#[test]
fn policy_never_with_the_image_absent_fails_at_once_with_the_fix() {
    let absent = format!("dh-e2e-absent-{}:never", uuid::Uuid::new_v4().simple());
    let mut cmd = common::child(
        "child_creates_a_container_from_the_session_image",
        &[("DOCKER_HARNESS_IMAGE", &absent), ("DOCKER_HARNESS_PULL", "never")],
    );
    common::own_session(&mut cmd, "never");
    let out = cmd.output().unwrap();
    let msg = common::reported(&out.stdout).remove("result").unwrap_or_default();
    assert!(msg.starts_with(&format!("missing: image {absent} is not present")), "{msg}");
    assert!(msg.contains("DOCKER_HARNESS_PULL=never"), "{msg}");
    assert!(msg.contains("help:"), "{msg}");
}

#[test]
fn an_unknown_tag_is_not_found_without_retries() {
    // Through the mirror when one is set (the offline stand-in), else from Docker Hub.
    let unknown = match std::env::var("DOCKER_HARNESS_IMAGE") {
        Ok(img) if img.starts_with("docker-harness-standin") => "docker-harness-standin:0.0.0-no-such-tag".to_string(),
        _ => "alpine:0.0.0-no-such-tag".to_string(),
    };
    let mut cmd =
        common::child("child_creates_a_container_from_the_session_image", &[("DOCKER_HARNESS_IMAGE", &unknown)]);
    common::own_session(&mut cmd, "unknown");
    let out = cmd.output().unwrap();
    let msg = common::reported(&out.stdout).remove("result").unwrap_or_default();
    assert!(msg.starts_with("pull attempts=1 not_found=true"), "{msg}");
}

#[test]
fn policy_always_pulls_once_even_when_the_image_is_present() {
    // Pulling retags what it pulls. Offline, the mirror's own reference is pulled, a tag
    // no other test uses, so a registry serving another build of the stand-in never moves
    // the pinned tag under the rest of the suite. Online, alpine:3.19.1 is pulled again:
    // the registry's 3.19.1 is the image the tag already names.
    let pinned = std::env::var("DOCKER_HARNESS_IMAGE").unwrap_or_else(|_| docker_harness::DEFAULT_IMAGE.into());
    let image = match std::env::var("DOCKER_HARNESS_REGISTRY_MIRROR") {
        Ok(mirror) if !mirror.is_empty() => format!("{mirror}/library/{pinned}"),
        _ => pinned,
    };
    let mut cmd = common::child(
        "child_creates_a_container_from_the_session_image",
        &[("DOCKER_HARNESS_IMAGE", &image), ("DOCKER_HARNESS_PULL", "always")],
    );
    cmd.env_remove("DOCKER_HARNESS_REGISTRY_MIRROR");
    let session = common::own_session(&mut cmd, "always");
    let state = common::own_session_state(&session);
    cmd.env("DOCKER_HARNESS_STATE_DIR", &state);
    let out = cmd.output().unwrap();
    let msg = common::reported(&out.stdout).remove("result").unwrap_or_default();
    assert_eq!(msg, "ok", "{}", String::from_utf8_lossy(&out.stderr));
    let pulls = docker_harness::pull_records(&state.join("sessions").join(&session));
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert_eq!(pulls[0].image, image);
    let _ = std::fs::remove_dir_all(state);
}

#[tokio::test]
async fn the_session_image_is_resolved_once_and_recorded() -> anyhow::Result<()> {
    let img = docker_harness::session_image().await?;
    assert_eq!(img.reference, docker_harness::session_image_reference()?);
    assert!(img.id.starts_with("sha256:"), "{img:?}");
    // Every process of the session agrees on what it resolved.
    let again = docker_harness::session_image().await?;
    assert_eq!(img, again);
    Ok(())
}
