//! A daemon that misbehaves: every test here reaches Docker through the fault proxy
//! (src/bin/fault-proxy.rs), in a child process whose `DOCKER_HOST` is the proxy, and
//! checks the outcome from the daemon itself: nothing made twice, nothing left, a stalled
//! call a clear error within its bound, a Drop that gives up in time, and what a stall
//! left behind removed by label by the next session. Each prints its measured figures
//! (`FAULTS ...` lines) for the README.

mod common;

use std::time::Instant;

use docker_harness::{ContainerSpec, DaemonError, Error, TestContext};

use common::proxy::{retries, set_rules, Proxy};
use common::{assert_all_gone, assert_all_present, child, is_child, own_session, raw, reported, Made};

/// Lost and refused answers on what may safely be asked twice: inspecting, listing and
/// removing, never one call more than twice in a row (the harness tries four times); and,
/// drawn from the seed, a few seconds' delay on anything.
const FLAKY: &str = "\
status=500 every=3 method=GET path=^/v[0-9.]+/(containers|networks|volumes)/[^/]+/json$
reset-response every=2 method=GET path=^/v[0-9.]+/(containers|networks|volumes)/
reset-request every=3 method=DELETE
status=503 every=2 method=DELETE
delay=2s p=0.05
";

/// The rules file a child rewrites, and the figures it reports.
const RULES_ENV: &str = "DH_E2E_FAULT_RULES";

fn run_child(
    test: &str,
    proxy: &Proxy,
    tag: &str,
    extra: &[(&str, &str)],
) -> anyhow::Result<(String, std::collections::HashMap<String, String>)> {
    let rules = proxy.rules_file();
    let host = proxy.host();
    let mut env = vec![("DOCKER_HOST", host.as_str()), (RULES_ENV, rules.to_str().unwrap_or_default())];
    env.extend_from_slice(extra);
    let mut cmd = child(test, &env);
    let session = own_session(&mut cmd, tag);
    let (out, err) = (proxy.dir.join(format!("{tag}.out")), proxy.dir.join(format!("{tag}.err")));
    cmd.stdout(std::fs::File::create(&out)?).stderr(std::fs::File::create(&err)?);
    let mut running = cmd.spawn()?;
    // Far past every bound the children meet: only a call that waits for ever comes near it.
    let deadline = Instant::now() + std::time::Duration::from_secs(300);
    let status = loop {
        if let Some(status) = running.try_wait()? {
            break Some(status);
        }
        if Instant::now() > deadline {
            running.kill()?; // by its PID
            running.wait()?;
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let (stdout, stderr) = (std::fs::read_to_string(&out)?, std::fs::read_to_string(&err)?);
    let report = reported(stdout.as_bytes());
    let status = status.ok_or_else(|| anyhow::anyhow!("child {test} hung past 300 s:\n{stdout}\n{stderr}"))?;
    anyhow::ensure!(status.success(), "child {test} failed ({status}):\n{stdout}\n{stderr}");
    Ok((session, report))
}

fn made_from(report: &std::collections::HashMap<String, String>) -> anyhow::Result<Made> {
    let get = |k: &str| report.get(k).cloned().ok_or_else(|| anyhow::anyhow!("child did not report {k}: {report:?}"));
    Ok(Made { container: get("container")?, network: get("network")?, volume: get("volume")? })
}

async fn make_three(ctx: &TestContext) -> docker_harness::Result<Made> {
    let net = ctx.network("net").await?;
    let vol = ctx.volume("data").await?;
    let app = ctx
        .container(ContainerSpec::new("app").with_cmd(["sleep", "3600"]).with_network(&net).with_volume(&vol, "/data"))
        .await?;
    let made = Made { container: app.id().into(), network: net.id().into(), volume: vol.name().into() };
    net.into_context();
    vol.into_context();
    app.into_context();
    Ok(made)
}

#[tokio::test]
async fn a_flaky_daemon_costs_retries_and_leaves_nothing() -> anyhow::Result<()> {
    let proxy = Proxy::start("faults-flaky", "", 18);
    let (_, report) = run_child("child_works_through_a_flaky_daemon", &proxy, "flaky", &[])?;
    let made = made_from(&report)?;
    assert_eq!(report.get("exec").map(String::as_str), Some("hi"), "exec through the proxy's upgrade: {report:?}");
    assert_all_gone(&raw().await, &made).await;
    let requests = proxy.requests();
    let faults = requests.iter().filter(|r| r.2.as_deref().is_some_and(|f| !f.starts_with("delay"))).count();
    assert!(faults > 0, "the schedule injected no fault: {requests:?}");
    println!(
        "FAULTS flaky: {} requests, {faults} faults, {} retried, teardown {} ms",
        requests.len(),
        retries(&requests),
        report.get("teardown_ms").map(String::as_str).unwrap_or("?")
    );
    Ok(())
}

#[tokio::test]
#[ignore = "run by a_flaky_daemon_costs_retries_and_leaves_nothing"]
async fn child_works_through_a_flaky_daemon() -> anyhow::Result<()> {
    if !is_child() {
        return Ok(());
    }
    let ctx = TestContext::new()?;
    let made = make_three(&ctx).await?;
    set_rules(std::path::Path::new(&std::env::var(RULES_ENV)?), FLAKY);
    let app = ctx.container(ContainerSpec::new("exec").with_cmd(["sleep", "3600"])).await?;
    let out = app.exec(["echo", "hi"]).await?;
    println!("REPORT exec={}", out.stdout.trim());
    for _ in 0..20 {
        app.inspect().await?;
    }
    drop(app);
    println!("REPORT container={}\nREPORT network={}\nREPORT volume={}", made.container, made.network, made.volume);
    let started = Instant::now();
    ctx.finish().await?;
    println!("REPORT teardown_ms={}", started.elapsed().as_millis());
    Ok(())
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_found_again_not_made_twice() -> anyhow::Result<()> {
    let rules = "\
reset-response times=1 method=POST path=/containers/create$
reset-response times=1 method=POST path=/networks/create$
reset-response times=1 method=POST path=/volumes/create$
";
    let proxy = Proxy::start("faults-create", rules, 7);
    let (_, report) = run_child("child_creates_through_lost_answers", &proxy, "create", &[])?;
    let made = made_from(&report)?;
    let requests = proxy.requests();
    for what in ["containers", "networks", "volumes"] {
        let creates: Vec<_> =
            requests.iter().filter(|(m, p, _)| m == "POST" && p.ends_with(&format!("/{what}/create"))).collect();
        assert_eq!(creates.len(), 1, "one create of {what}, its answer lost, never a second: {creates:?}");
        assert_eq!(creates[0].2.as_deref(), Some("reset-response"), "{creates:?}");
    }
    assert_all_gone(&raw().await, &made).await;
    println!("FAULTS create: 3 answers lost, 3 found again by name and labels, 0 made twice");
    Ok(())
}

#[tokio::test]
#[ignore = "run by a_create_whose_answer_was_lost_is_found_again_not_made_twice"]
async fn child_creates_through_lost_answers() -> anyhow::Result<()> {
    if !is_child() {
        return Ok(());
    }
    let ctx = TestContext::new()?;
    let made = make_three(&ctx).await?;
    println!("REPORT container={}\nREPORT network={}\nREPORT volume={}", made.container, made.network, made.volume);
    let d = raw().await;
    assert_all_present(&d, &made).await;
    ctx.finish().await?;
    Ok(())
}

#[tokio::test]
async fn a_stalled_daemon_is_an_error_naming_the_call_within_its_bound() -> anyhow::Result<()> {
    let proxy = Proxy::start("faults-stall", "", 3);
    let (_, report) = run_child("child_meets_a_stall", &proxy, "stall", &[("DOCKER_HARNESS_REQUEST_TIMEOUT", "4")])?;
    let made = made_from(&report)?;
    let error = report.get("error").cloned().unwrap_or_default();
    assert!(error.contains("did not answer in time to inspect container") && error.contains("-app"), "{error}");
    assert!(error.contains("help:"), "{error}");
    let waited: u64 = report.get("waited_ms").and_then(|v| v.parse().ok()).unwrap_or(u64::MAX);
    // A request timeout of 4 s, never tried again after a stall: generous slack for a busy machine.
    assert!(waited < 20_000, "waited {waited} ms for a call bounded at 4 s");
    assert_all_gone(&raw().await, &made).await;
    println!("FAULTS stall: inspect gave up after {waited} ms (bound 4 s), error Daemon(Stalled)");
    Ok(())
}

#[tokio::test]
#[ignore = "run by a_stalled_daemon_is_an_error_naming_the_call_within_its_bound"]
async fn child_meets_a_stall() -> anyhow::Result<()> {
    if !is_child() {
        return Ok(());
    }
    let rules = std::path::PathBuf::from(std::env::var(RULES_ENV)?);
    let ctx = TestContext::new()?;
    let made = make_three(&ctx).await?;
    let app = ctx.container(ContainerSpec::new("app2").with_cmd(["sleep", "3600"])).await?;
    println!("REPORT container={}\nREPORT network={}\nREPORT volume={}", made.container, made.network, made.volume);
    set_rules(&rules, "stall method=GET path=/containers/[^/]+/json$\n");
    let started = Instant::now();
    let err = app.inspect().await.expect_err("a stalled inspect fails");
    println!("REPORT waited_ms={}", started.elapsed().as_millis());
    assert!(matches!(err, Error::Daemon(DaemonError::Stalled { .. })), "{err:?}");
    println!("REPORT error={}", err.to_string().replace('\n', " "));
    set_rules(&rules, "");
    drop(app);
    ctx.finish().await?;
    Ok(())
}

#[tokio::test]
async fn a_daemon_that_stops_answering_mid_teardown_is_left_in_time_and_swept_by_label_later() -> anyhow::Result<()> {
    let mut proxy = Proxy::start("faults-teardown", "", 5);
    let (session, report) = run_child("child_drops_while_the_daemon_stalls", &proxy, "teardown", &[])?;
    let made = made_from(&report)?;
    let dropped: u64 = report.get("drop_ms").and_then(|v| v.parse().ok()).unwrap_or(u64::MAX);
    // The context's Drop waits at most 30 s (guards 15 s); slack for a busy machine.
    assert!(dropped < 45_000, "Drop blocked {dropped} ms, past its 30 s limit");
    proxy.stop();
    let d = raw().await;
    assert_all_present(&d, &made).await;
    // The next session, talking to the daemon directly: what the stalled one left is its
    // owner's, now dead, and goes by the session's label.
    let label = format!("docker-harness.session={session}");
    let left: Vec<_> = docker_harness::sweep::survey()
        .await?
        .into_iter()
        .filter(|l| l.resource.labels.get("docker-harness.session") == Some(&session))
        .collect();
    assert!(left.len() >= 3, "the stalled session's resources are all found by label: {left:?}");
    assert!(left.iter().all(|l| matches!(l.verdict, docker_harness::labels::Verdict::Orphan)), "{left:?}");
    let (removed, failed) = docker_harness::sweep::clean(vec![label]).await?;
    assert!(failed.is_empty(), "{failed:?}");
    assert_all_gone(&d, &made).await;
    println!(
        "FAULTS teardown: Drop gave up after {dropped} ms (limit 30 s); {} left, all removed by label",
        removed.len()
    );
    Ok(())
}

#[tokio::test]
#[ignore = "run by a_daemon_that_stops_answering_mid_teardown_is_left_in_time_and_swept_by_label_later"]
async fn child_drops_while_the_daemon_stalls() -> anyhow::Result<()> {
    if !is_child() {
        return Ok(());
    }
    let ctx = TestContext::new()?;
    let made = make_three(&ctx).await?;
    println!("REPORT container={}\nREPORT network={}\nREPORT volume={}", made.container, made.network, made.volume);
    set_rules(std::path::Path::new(&std::env::var(RULES_ENV)?), "stall\n");
    let started = Instant::now();
    drop(ctx);
    println!("REPORT drop_ms={}", started.elapsed().as_millis());
    Ok(())
}

/// A daemon that sends an answer's head and then stops in the middle of its body: bollard's
/// request timeout covers only the head, so without the harness's own bound an inspect or a
/// list would wait for ever.
#[tokio::test]
async fn a_daemon_that_stalls_in_the_middle_of_a_body_is_an_error_naming_the_call() -> anyhow::Result<()> {
    let proxy = Proxy::start("faults-mid-body", "", 11);
    let (_, report) =
        run_child("child_meets_a_stall_mid_body", &proxy, "mid-body", &[("DOCKER_HARNESS_REQUEST_TIMEOUT", "4")])?;
    let container = report.get("container").cloned().unwrap_or_default();
    let stalled = |key: &str, action: &str| {
        let said = report.get(key).cloned().unwrap_or_default();
        assert!(said.starts_with("Stalled:") && said.contains(action), "{key}: {said} ({report:?})");
    };
    stalled("inspect", "inspect container dh-");
    stalled("list", "list containers");
    let requests = proxy.requests();
    assert!(requests.iter().any(|r| r.2.as_deref() == Some("stall-body")), "no body was stalled: {requests:?}");
    assert!(!common::container_exists(&raw().await, &container).await, "teardown removed {container}");
    let ms = |k: &str| report.get(&format!("{k}_ms")).cloned().unwrap_or_else(|| "?".into());
    println!("FAULTS mid-body: inspect Stalled after {} ms, list after {} ms (bound 4 s)", ms("inspect"), ms("list"));
    Ok(())
}

/// A pull whose progress stops: `Stalled`, naming the image, once, never a wait for ever.
#[tokio::test]
async fn a_pull_whose_progress_stops_is_an_error_naming_the_image() -> anyhow::Result<()> {
    let proxy = Proxy::start("faults-pull", "", 13);
    let env = [("DOCKER_HARNESS_REQUEST_TIMEOUT", "4"), ("DOCKER_HARNESS_PULL", "always"), ("DH_E2E_STAGE", "pull")];
    let (_, report) = run_child("child_meets_a_stall_mid_body", &proxy, "pull", &env)?;
    let said = report.get("pull").cloned().unwrap_or_default();
    let image = docker_harness::session_image_reference()?;
    assert!(said.starts_with("Stalled:pull image ") && said.contains(&image), "{said} ({report:?})");
    let pulls = proxy.requests().into_iter().filter(|r| r.1.ends_with("/images/create")).count();
    assert_eq!(pulls, 1, "a stalled pull is not tried again");
    println!("FAULTS pull: Stalled after {} ms (bound 4 s), 1 pull request", report.get("pull_ms").map_or("?", |v| v));
    Ok(())
}

/// What a child says of one call made while the daemon stalls mid-body: `Stalled`, or the
/// error's text, or `answered`; and how long it took.
async fn outcome<T>(key: &str, call: impl std::future::Future<Output = docker_harness::Result<T>>) {
    let started = Instant::now();
    let said = match call.await {
        Ok(_) => "answered".to_string(),
        Err(Error::Daemon(DaemonError::Stalled { action, .. })) => format!("Stalled:{action}"),
        Err(e) => format!("other:{}", e.to_string().replace('\n', " ")),
    };
    println!("REPORT {key}={said}\nREPORT {key}_ms={}", started.elapsed().as_millis());
}

#[tokio::test]
#[ignore = "run by a_daemon_that_stalls_in_the_middle_of_a_body_is_an_error_naming_the_call"]
async fn child_meets_a_stall_mid_body() -> anyhow::Result<()> {
    if !is_child() {
        return Ok(());
    }
    let rules = std::path::PathBuf::from(std::env::var(RULES_ENV)?);
    if std::env::var("DH_E2E_STAGE").as_deref() == Ok("pull") {
        set_rules(&rules, "stall-body method=POST path=/images/create$\n");
        outcome("pull", docker_harness::session_image()).await;
        return Ok(());
    }
    let ctx = TestContext::new()?;
    let app = ctx.container(ContainerSpec::new("app").with_cmd(["sleep", "3600"])).await?;
    println!("REPORT container={}", app.id());
    set_rules(&rules, "stall-body method=GET path=/containers/[^/]+/json$\n");
    outcome("inspect", app.inspect()).await;
    set_rules(&rules, "stall-body method=GET path=/containers/json$\n");
    outcome("list", docker_harness::sweep::survey()).await;
    set_rules(&rules, "");
    drop(app);
    ctx.finish().await?;
    Ok(())
}
