//! Images that tests build: one build per session for many tests, a test's own build gone
//! with its test (with every image and container the build made), a failed build that
//! leaves nothing and names its step, rebuilds only when the content changed, the opt-in
//! build cache, and the sweep that cleans up after a killed builder. The multi-stage fixture
//! builds from the session image, passed as `BASE`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::query_parameters::ListImagesOptions;
use bollard::Docker;
use docker_harness::{build_records, session_build, BuildSpec, ContainerSpec, Counts, Error, TestContext};
use rstest::rstest;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/build/multistage")
}

/// A private copy of the fixture, so that a test may change it.
fn copy_of_fixture(tag: &str) -> PathBuf {
    let dir = common::scratch_dir(tag);
    for e in std::fs::read_dir(fixture()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    dir
}

async fn spec(logical: &str, context: &Path) -> anyhow::Result<BuildSpec> {
    let base = docker_harness::session_image().await?.reference;
    Ok(BuildSpec::new(logical, context).with_arg("BASE", base))
}

async fn image_exists(d: &Docker, reference: &str) -> bool {
    d.inspect_image(reference).await.is_ok()
}

/// What a container of the image says and which context files it saw.
async fn run_it(ctx: &TestContext, reference: &str) -> anyhow::Result<(String, String)> {
    let c = ctx.container(ContainerSpec::new("app").with_image(reference).with_cmd(["sleep", "3600"])).await?;
    let greeting = c.exec(["cat", "/app/greeting"]).await?.stdout;
    let files = c.exec(["cat", "/app/context-files"]).await?.stdout;
    Ok((greeting, files))
}

fn builds_of(hash: &str) -> usize {
    let dir = docker_harness::session::current().unwrap().state_dir().to_path_buf();
    build_records(&dir).iter().filter(|r| r.content_hash == hash).count()
}

#[rstest]
#[case(1)]
#[case(2)]
#[case(3)]
#[case(4)]
#[case(5)]
#[case(6)]
#[case(7)]
#[case(8)]
#[tokio::test]
async fn eight_parallel_tests_share_one_session_build(#[case] n: u32) -> anyhow::Result<()> {
    let image = session_build(spec("shared-app", &fixture()).await?).await?;
    assert_eq!(builds_of(&image.content_hash), 1, "test {n}: built once for the session");
    let ctx = TestContext::new()?;
    ctx.declare(Counts::new(1, 0, 0));
    let (greeting, files) = run_it(&ctx, &image.reference).await?;
    assert_eq!(greeting, "HELLO FROM THE BUILD\n");
    assert!(files.contains("./greeting.txt") && files.contains("./keep.tmp"), "{files}");
    assert!(!files.contains("secret") && !files.contains("scratch.tmp"), ".dockerignore honoured: {files}");
    ctx.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn a_tests_build_and_everything_it_made_go_with_its_test() -> anyhow::Result<()> {
    let docker = common::raw().await;
    let dir = copy_of_fixture("own-build");
    std::fs::write(dir.join("greeting.txt"), format!("own {}\n", uuid::Uuid::new_v4()))?;
    let ctx = TestContext::new()?;
    ctx.declare(Counts::new(1, 0, 0).with_images(1));
    let image = ctx.build(spec("app", &dir).await?).await?;
    assert!(image.reference.starts_with(ctx.prefix()), "{} is the test's", image.reference);
    assert!(image.intermediates.len() >= 2, "both stages made images: {:?}", image.intermediates);
    let labels = docker.inspect_image(&image.reference).await?.config.and_then(|c| c.labels).unwrap_or_default();
    assert_eq!(labels.get("docker-harness.managed").map(String::as_str), Some("true"));
    assert_eq!(labels.get(docker_harness::CONTENT_HASH), Some(&image.content_hash));
    let (greeting, _) = run_it(&ctx, &image.reference).await?;
    assert!(greeting.starts_with("OWN "), "{greeting}");
    let (reference, made) = (image.reference.clone(), image.intermediates.clone());
    image.into_context();
    let report = ctx.finish().await?;
    assert_eq!(report.created.images, 1, "{report:?}");
    assert!(!image_exists(&docker, &reference).await, "{reference} is gone");
    for id in &made {
        assert!(!image_exists(&docker, id).await, "intermediate image {id} of {reference} is gone");
    }
    Ok(())
}

#[tokio::test]
async fn a_build_lent_from_another_ones_cache_leaves_nothing_of_either() -> anyhow::Result<()> {
    let docker = common::raw().await;
    let first_dir = copy_of_fixture("lender");
    std::fs::write(first_dir.join("greeting.txt"), format!("lent {}\n", uuid::Uuid::new_v4()))?;
    let ctx = TestContext::new()?;
    ctx.declare(Counts::new(0, 0, 0).with_images(2));
    let first = ctx.build(spec("first", &first_dir).await?).await?;
    // The same builder stage, another runtime stage: the second build's first steps are
    // answered from the first one's images.
    std::fs::write(first_dir.join("app.sh"), "#!/bin/sh\necho second\n")?;
    let second = ctx.build(spec("second", &first_dir).await?).await?;
    let made: Vec<String> = first.intermediates.iter().chain(&second.intermediates).cloned().collect();
    assert!(second.intermediates.len() < first.intermediates.len(), "the cache lent the second build steps");
    let refs = [first.reference.clone(), second.reference.clone()];
    // The lender first: its builder-stage images are still used and must wait.
    first.remove().await?;
    second.remove().await?;
    for r in refs.iter().chain(&made) {
        assert!(!image_exists(&docker, r).await, "{r} is gone");
    }
    Ok(())
}

#[tokio::test]
async fn a_failed_build_leaves_nothing_and_names_the_step() -> anyhow::Result<()> {
    let docker = common::raw().await;
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let dockerfile = format!(
        "ARG BASE\nFROM ${{BASE}}\nRUN echo {marker} > /made-it\nRUN echo broken-{marker} && exit 3\nRUN true\n"
    );
    let ctx = TestContext::new()?;
    let spec = spec("broken", &common::scratch_dir("broken")).await?.with_dockerfile_text(dockerfile);
    match ctx.build(spec).await {
        Err(Error::BuildFailed { step, tail, message, .. }) => {
            assert!(step.contains(&format!("RUN echo broken-{marker}")), "{step}");
            assert!(tail.iter().any(|l| l.contains(&format!("broken-{marker}"))), "{tail:?}");
            assert!(message.contains('3'), "{message}");
        }
        other => panic!("expected BuildFailed, got {other:?}"),
    }
    // Neither the image of the step that worked nor the container of the one that failed.
    let all = docker.list_images(Some(ListImagesOptions { all: true, ..Default::default() })).await?;
    for i in all {
        let history = docker.image_history(&i.id).await.unwrap_or_default();
        assert!(
            !history.iter().take(1).any(|h| h.created_by.contains(&marker)),
            "image {} of the failed build is left",
            i.id
        );
    }
    let containers = docker
        .list_containers(Some(bollard::query_parameters::ListContainersOptions { all: true, ..Default::default() }))
        .await?;
    assert!(
        !containers.iter().any(|c| c.command.as_deref().unwrap_or("").contains(&marker)),
        "a build container is left"
    );
    ctx.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn a_changed_context_file_is_rebuilt_and_an_unchanged_one_is_not() -> anyhow::Result<()> {
    let dir = copy_of_fixture("rebuild");
    std::fs::write(dir.join("greeting.txt"), format!("first {}\n", uuid::Uuid::new_v4()))?;
    let a = session_build(spec("rebuild", &dir).await?).await?;
    let b = session_build(spec("rebuild", &dir).await?).await?;
    assert_eq!((&a.reference, &a.id), (&b.reference, &b.id));
    assert_eq!(builds_of(&a.content_hash), 1, "unchanged: not built again");
    std::fs::write(dir.join("greeting.txt"), "second\n")?;
    let c = session_build(spec("rebuild", &dir).await?).await?;
    assert_ne!(c.content_hash, a.content_hash);
    assert_ne!(c.reference, a.reference);
    assert_eq!(builds_of(&c.content_hash), 1);
    let ctx = TestContext::new()?;
    ctx.declare(Counts::new(1, 0, 0));
    assert_eq!(run_it(&ctx, &c.reference).await?.0, "SECOND\n");
    Ok(())
}

#[tokio::test]
async fn the_build_cache_reuses_an_image_by_its_content_until_it_is_removed() -> anyhow::Result<()> {
    let docker = common::raw().await;
    let dir = copy_of_fixture("cached");
    std::fs::write(dir.join("greeting.txt"), format!("cached {}\n", uuid::Uuid::new_v4()))?;
    let ctx = TestContext::new()?;
    let first = ctx.build(spec("cached", &dir).await?.cache_for(Duration::from_secs(600))).await?;
    let (reference, id, made) = (first.reference.clone(), first.id.clone(), first.intermediates.clone());
    drop(first);
    let outlived = image_exists(&docker, &reference).await;
    let again = ctx.build(spec("cached", &dir).await?.cache_for(Duration::from_secs(600))).await?;
    let (again_ref, again_id, builds) = (again.reference.clone(), again.id.clone(), builds_of(&again.content_hash));
    // Removed on purpose before anything is asserted (a kept image must not outlive a failed
    // check); it takes what its first build made with it.
    again.remove().await?;
    assert!(outlived, "a cached image outlives its guard");
    assert_eq!((again_ref.as_str(), again_id.as_str()), (reference.as_str(), id.as_str()));
    assert_eq!(builds, 1, "reused, not rebuilt");
    for r in std::iter::once(&reference).chain(&made) {
        assert!(!image_exists(&docker, r).await, "{r} is gone");
    }
    Ok(())
}

#[test]
#[ignore = "run as a child"]
fn child_builds_and_waits_to_be_killed() {
    common::as_child(|| async {
        let dir = PathBuf::from(std::env::var("DH_BUILD_CONTEXT").unwrap());
        let ctx = TestContext::named("killed-builder").unwrap();
        ctx.declare(Counts::new(0, 0, 0).with_images(1));
        let image = ctx.build(spec("app", &dir).await.unwrap()).await.unwrap();
        common::report(
            "made",
            std::iter::once(&image.reference).chain(&image.intermediates).cloned().collect::<Vec<_>>().join(","),
        );
        common::report("ready", 1);
        tokio::time::sleep(Duration::from_secs(600)).await;
    });
}

#[tokio::test]
async fn a_killed_builders_image_and_what_its_build_made_go_at_the_next_sweep() -> anyhow::Result<()> {
    let docker = common::raw().await;
    let dir = copy_of_fixture("killed");
    std::fs::write(dir.join("greeting.txt"), format!("killed {}\n", uuid::Uuid::new_v4()))?;
    let mut cmd = common::child("child_builds_and_waits_to_be_killed", &[("DH_BUILD_CONTEXT", dir.to_str().unwrap())]);
    cmd.stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn()?;
    let seen = common::until_ready(&mut child);
    child.kill()?;
    child.wait()?;
    let made: Vec<String> =
        seen.get("made").expect("the child reported its build").split(',').map(String::from).collect();
    assert!(made.len() >= 3, "{made:?}");
    // The sweep every session's check runs: the owner is dead, so its image goes. The
    // session's watcher, told of the death at once, may be removing the same build just
    // now (newest first): what it has not reached yet goes within its bound.
    docker_harness::sweep::reap().await?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    for r in &made {
        while image_exists(&docker, r).await && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        assert!(!image_exists(&docker, r).await, "{r} is still there a minute after the sweep");
    }
    Ok(())
}

#[test]
#[ignore = "run as a child"]
fn child_builds_one_for_itself_and_one_for_the_cache_and_waits() {
    common::as_child(|| async {
        let dir = PathBuf::from(std::env::var("DH_BUILD_CONTEXT").unwrap());
        let ctx = TestContext::named("terminated-builder").unwrap();
        // Its own build only: the cached one is the session's record (builds.jsonl), which
        // the ledger counts by itself.
        ctx.declare(Counts::new(0, 0, 0).with_images(1));
        let own = ctx.build(spec("own", &dir).await.unwrap()).await.unwrap();
        let cached = ctx.build(spec("cached", &dir).await.unwrap().cache_for(Duration::from_secs(600))).await.unwrap();
        common::report(
            "own",
            std::iter::once(&own.reference).chain(&own.intermediates).cloned().collect::<Vec<_>>().join(","),
        );
        common::report("cached", &cached.reference);
        common::report("task", ctx.task_id());
        common::report("ready", 1);
        tokio::time::sleep(Duration::from_secs(600)).await;
    });
}

#[tokio::test]
async fn sigterm_removes_a_tests_build_but_keeps_what_the_build_cache_holds() -> anyhow::Result<()> {
    let docker = common::raw().await;
    let dir = copy_of_fixture("terminated");
    std::fs::write(dir.join("greeting.txt"), format!("terminated {}\n", uuid::Uuid::new_v4()))?;
    let mut cmd = common::child(
        "child_builds_one_for_itself_and_one_for_the_cache_and_waits",
        &[("DH_BUILD_CONTEXT", dir.to_str().unwrap())],
    );
    cmd.stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn()?;
    let seen = common::until_ready(&mut child);
    common::signal(&child, "TERM");
    let status = child.wait()?;
    assert!(!status.success(), "the child ends on SIGTERM: {status}");
    let own: Vec<&str> = seen.get("own").expect("the child's own build").split(',').collect();
    let cached = seen.get("cached").expect("the child's cached build");
    let (own_tag_gone, cached_kept) = (!image_exists(&docker, own[0]).await, image_exists(&docker, cached).await);
    // Cleaned before anything is asserted: a kept image must not outlive a failed check.
    // The cached build was answered from the own build's images (the same steps): those wait,
    // still used, until the image standing on them goes; then they go too.
    let (removed, failed) = docker_harness::sweep::clean(vec![format!("docker-harness.task={}", seen["task"])]).await?;
    assert!(own_tag_gone, "{} went with the SIGTERM", own[0]);
    assert!(cached_kept, "the build cache's {cached} is kept through SIGTERM");
    assert!(failed.is_empty(), "{failed:?}");
    assert!(removed.iter().any(|r| &r.name == cached), "{removed:?}");
    assert!(!image_exists(&docker, cached).await, "clean --task removes the cached image");
    for r in &own {
        assert!(!image_exists(&docker, r).await, "{r}, which the cached build stood on, went after it");
    }
    Ok(())
}
