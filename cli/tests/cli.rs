//! The `docker-harness` CLI against the real daemon: status, audit and clean see exactly
//! the harness's labelled resources.

use std::process::Command;

use docker_harness::TestContext;

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_docker-harness")).args(args).output().expect("the CLI runs")
}

// `audit` looks at the whole session, so the tests that create resources in it take turns
// (across nextest's processes: a file lock, not an in-process one).
#[tokio::test]
#[serial_test::file_serial(cli_session)]
async fn status_and_audit_see_a_live_test_and_audit_passes_once_it_is_gone() -> anyhow::Result<()> {
    let ctx = TestContext::new()?;
    let session = docker_harness::session::current()?.id().to_string();
    let vol = ctx.volume("audited").await?;

    let status = cli(&["status"]);
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success());
    let row = table.lines().find(|l| l.contains(vol.name())).unwrap_or_else(|| panic!("{table}"));
    assert!(row.starts_with("volume") && row.contains("live"), "{row}");

    let audit = cli(&["audit", "--session", &session]);
    assert!(!audit.status.success(), "audit passed while {} remains", vol.name());
    assert!(String::from_utf8_lossy(&audit.stdout).contains(vol.name()));

    ctx.cleanup().await?;
    drop(vol);
    let audit = cli(&["audit", "--session", &session]);
    assert!(audit.status.success(), "{}", String::from_utf8_lossy(&audit.stdout));
    Ok(())
}

#[tokio::test]
#[serial_test::file_serial(cli_session)]
async fn clean_by_task_removes_that_context_only() -> anyhow::Result<()> {
    let mine = TestContext::new()?;
    let other = TestContext::new()?;
    let a = mine.network("n").await?.keep();
    let b = other.network("n").await?;
    let out = cli(&["clean", "--task", mine.task_id()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&a) && !text.contains(b.name()), "{text}");
    assert_eq!(text.lines().last(), Some("removed 1 resource(s), 0 failed"));
    b.remove().await?;
    Ok(())
}

#[test]
fn clean_without_a_scope_says_what_it_needs() {
    let out = cli(&["clean"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("give exactly one of --session ID, --task ID, --kept or --all")
    );
}
