//! One expensive container per session, whatever the runner: sixteen tests (sixteen
//! processes under nextest) share one web server, each with state of its own inside it, and
//! no test's teardown removes it. `make e2e-shared` counts its creations from `docker events`.
//!
//! Ignored in the plain suite: a shared container outlives its nextest run by design (the
//! next session's check, or a `clean --session`, removes it), while the suite's audits
//! require that a run leaves nothing. `make e2e-shared` runs these and then cleans up.

mod common;

use docker_harness::labels::{Owner, Verdict, RUNNER, SESSION, SHARED};
use docker_harness::{ctx, shared_container, SharedContainer, TestContext, WaitFor};
use rstest::rstest;

use common::web::{get, slow_web, PORT};

/// The key scripts/shared-count.sh counts by.
const KEY: &str = "e2e-web";

async fn shared_web() -> anyhow::Result<SharedContainer> {
    let spec = slow_web("web", 1, "shared").with_exposed_port(PORT).with_wait(WaitFor::http(PORT, "/", 200));
    Ok(shared_container(KEY, spec).await?)
}

/// Tells the counting script which container this test got.
fn record(web: &SharedContainer) -> anyhow::Result<()> {
    if let Some(path) = std::env::var_os("DH_SHARED_RECORD") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        // One write per line: 17 processes append at once, and `writeln!` may split a line
        // into two writes, which another process's line can come between.
        f.write_all(format!("{}\n", web.id()).as_bytes())?;
    }
    Ok(())
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
#[case(9)]
#[case(10)]
#[case(11)]
#[case(12)]
#[case(13)]
#[case(14)]
#[case(15)]
#[case(16)]
#[tokio::test]
#[ignore = "run by make e2e-shared (scripts/shared-count.sh), which removes the session-long container"]
async fn every_test_uses_the_one_shared_server_with_a_directory_of_its_own(
    ctx: TestContext,
    #[case] n: u32,
) -> anyhow::Result<()> {
    let web = shared_web().await?;
    record(&web)?;
    // Per-test state inside a shared container lives under the test's own prefix.
    let dir = ctx.prefix().to_string();
    web.copy_in(format!("test {n}").into_bytes(), format!("/www/{dir}/index.html"), Some(0o644)).await?;
    let (status, body) = get(web.host_port(PORT).await?, &format!("/{dir}/")).await?;
    assert_eq!((status, body), (200, format!("test {n}")));
    let labels = web.inspect().await?.config.and_then(|c| c.labels).unwrap_or_default();
    assert_eq!(labels.get(SHARED).map(String::as_str), Some(KEY));
    assert_eq!(labels.get(SESSION).map(String::as_str), Some(docker_harness::session::current()?.id()));
    Ok(())
}

#[rstest]
#[tokio::test]
#[ignore = "run by make e2e-shared (scripts/shared-count.sh), which removes the session-long container"]
async fn the_sweep_spares_the_shared_container_while_its_session_runs(ctx: TestContext) -> anyhow::Result<()> {
    let web = shared_web().await?;
    record(&web)?;
    let labels = web.inspect().await?.config.and_then(|c| c.labels).unwrap_or_default();
    let runner = labels.get(RUNNER).and_then(|r| Owner::parse(r)).expect("a runner label");
    if std::env::var_os("NEXTEST_RUN_ID").is_some() {
        // The runner is nextest, not this test process nor the one that created it.
        assert_ne!(runner.pid, std::process::id());
    }
    let survey = docker_harness::sweep::survey().await?;
    let seen = survey.iter().find(|l| l.resource.id == web.id()).expect("the survey lists it");
    assert_eq!(seen.verdict, Verdict::Owned, "{:?}", seen.resource.labels);
    drop(ctx);
    assert!(common::container_exists(&common::raw().await, web.id()).await);
    Ok(())
}

#[rstest]
#[tokio::test]
#[ignore = "run by make e2e-shared (scripts/shared-count.sh), which removes the session-long container"]
async fn a_shared_container_that_vanished_is_created_again(_ctx: TestContext) -> anyhow::Result<()> {
    let key = "e2e-vanishing";
    let spec = || docker_harness::ContainerSpec::new("v").with_cmd(["sleep", "3600"]);
    let first = shared_container(key, spec()).await?;
    let d = common::raw().await;
    let force = bollard::query_parameters::RemoveContainerOptions { force: true, ..Default::default() };
    d.remove_container(first.id(), Some(force)).await?;
    let second = shared_container(key, spec()).await?;
    assert_ne!(first.id(), second.id());
    assert!(common::container_exists(&d, second.id()).await);
    assert_eq!(shared_container(key, spec()).await?.id(), second.id());
    Ok(())
}
