//! Compose files as part of a test's world: eight tests bring up the same file with the same
//! service names at once and each client reaches its own web server; everything compose
//! creates carries the test's labels and goes at teardown; a fixed host port becomes an
//! ephemeral one; what parallel tests cannot share is refused; and a test that panics, or
//! is SIGKILLed in the middle of `up`, leaves nothing. Its own step: `make e2e-compose`.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bollard::query_parameters::{ListContainersOptions, ListNetworksOptions, ListVolumesOptions};
use bollard::Docker;
use docker_harness::labels::{MANAGED, TASK};
use docker_harness::{ComposeError, ComposeSpec, Counts, Error, Kind, TestContext, WaitFor};
use rstest::rstest;

use common::{raw, web};

/// Two services, `web` (httpd, a named volume, a fixed host port) and `client` (wget).
const WEB_AND_CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/compose/web-and-client.yml");
/// A file whose `up` waits for ever on a health check that never passes.
const STUCK_UP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/compose/stuck-up.yml");
/// What `web-and-client.yml` creates: two containers, the default network, one volume.
fn made() -> Counts {
    Counts::new(2, 1, 1)
}

/// The web-and-client project, up once web answers and the client has fetched its page.
fn web_and_client(logical: &str) -> ComposeSpec {
    ComposeSpec::new(logical, WEB_AND_CLIENT)
        .with_wait("web", WaitFor::http(8080, "/", 200))
        .with_wait("client", WaitFor::log_line("^fetched"))
}

/// Everything on the daemon that carries the task's label, as `kind id`, seen through raw
/// bollard, not the harness.
async fn labelled(d: &Docker, task: &str) -> anyhow::Result<Vec<String>> {
    let filters = HashMap::from([("label".to_string(), vec![format!("{TASK}={task}")])]);
    let mut found = Vec::new();
    let all = ListContainersOptions { all: true, filters: Some(filters.clone()), ..Default::default() };
    for c in d.list_containers(Some(all)).await? {
        found.push(format!("container {}", c.id.unwrap_or_default()));
    }
    for n in d.list_networks(Some(ListNetworksOptions { filters: Some(filters.clone()) })).await? {
        found.push(format!("network {}", n.id.unwrap_or_default()));
    }
    for v in d.list_volumes(Some(ListVolumesOptions { filters: Some(filters) })).await?.volumes.unwrap_or_default() {
        found.push(format!("volume {}", v.name));
    }
    Ok(found)
}

/// Whether a resource the harness reported still exists, asked by ID.
async fn exists(d: &Docker, kind: Kind, id: &str) -> bool {
    match kind {
        Kind::Container => common::container_exists(d, id).await,
        Kind::Network => common::network_exists(d, id).await,
        _ => common::volume_exists(d, id).await,
    }
}

/// A compose file of the test's own, written under the suite's scratch directory.
fn compose_file(tag: &str, yaml: &str) -> PathBuf {
    let path = common::scratch_dir(tag).join("compose.yml");
    std::fs::write(&path, yaml).expect("a scratch compose file");
    path
}

#[rstest]
#[tokio::test]
async fn eight_tests_bring_up_one_file_and_each_client_reaches_its_own_web(
    #[values(1, 2, 3, 4, 5, 6, 7, 8)] run: u32,
) -> anyhow::Result<()> {
    let ctx = TestContext::named(&format!("compose-parallel-{run}"))?;
    ctx.declare(made());
    let greeting = format!("hello from run {run}");
    let app = ctx.compose(web_and_client("app").with_env("GREETING", &greeting)).await?;
    assert!(app.project().starts_with(ctx.prefix()), "{} is not the test's", app.project());
    assert_eq!(app.services().collect::<Vec<_>>(), ["client", "web"]);

    // Inside the project, by service name over its default network; and from the host.
    let page = app.service("client")?.exec(["wget", "-q", "-O", "-", "http://web:8080/"]).await?;
    assert_eq!(page.stdout, format!("{greeting} from web\n"), "the client reached another test's web");
    assert!(app.service("client")?.logs().await?.stdout.contains(&format!("fetched {greeting} from web")));
    let (status, body) = web::get(app.service("web")?.host_port(8080).await?, "/").await?;
    assert_eq!((status, body.as_str()), (200, format!("{greeting} from web\n").as_str()));

    // Everything compose made carries the test's labels, and the harness knows all of it.
    let d = raw().await;
    let mut seen = labelled(&d, ctx.task_id()).await?;
    let mut known: Vec<String> = app.resources().iter().map(|r| format!("{} {}", r.kind, r.id)).collect();
    seen.sort();
    known.sort();
    assert_eq!(seen, known, "what carries the test's label is what the guard holds");
    for kind in Kind::TEARDOWN_ORDER {
        let n = app.resources().iter().filter(|r| r.kind == kind).count();
        assert_eq!(n, made().get(kind), "{kind}s: {:?}", app.resources());
    }
    for r in app.resources() {
        assert_eq!(r.labels.get(MANAGED).map(String::as_str), Some("true"), "{r} lacks the managed label");
    }

    let made = app.resources().to_vec();
    app.remove().await?;
    for r in &made {
        assert!(!exists(&d, r.kind, &r.id).await, "{r} outlived its guard");
    }
    let report = ctx.finish().await?;
    assert_eq!(report.created.containers, 2, "{}", report.created);
    assert!(report.adopted.is_empty(), "nothing of compose's was left to adoption: {:?}", report.adopted);
    Ok(())
}

#[tokio::test]
async fn a_fixed_host_port_becomes_an_ephemeral_loopback_one() -> anyhow::Result<()> {
    let ctx = TestContext::new()?;
    ctx.declare(Counts::new(4, 2, 2));
    // The file asks for host port 8080: two projects of it at once would collide on it.
    let (one, two) = tokio::try_join!(ctx.compose(web_and_client("one")), ctx.compose(web_and_client("two")))?;
    let (p1, p2) = (one.service("web")?.host_port(8080).await?, two.service("web")?.host_port(8080).await?);
    assert_ne!(p1, p2);
    let bindings = one.service("web")?.inspect().await?.host_config.and_then(|h| h.port_bindings).unwrap_or_default();
    let asked = bindings.get("8080/tcp").cloned().flatten().unwrap_or_default();
    assert_eq!(asked.len(), 1, "{bindings:?}");
    assert_eq!(asked[0].host_ip.as_deref(), Some("127.0.0.1"), "published beyond the loopback: {asked:?}");
    assert_eq!(asked[0].host_port.as_deref(), Some(""), "a fixed host port was kept: {asked:?}");
    Ok(())
}

#[rstest]
#[case::container_name("services:\n  web:\n    image: x\n    container_name: web\n", "`container_name: web`")]
#[case::network_name(
    "services:\n  web:\n    image: x\nnetworks:\n  default:\n    name: everyones\n",
    "network default sets `name: everyones`"
)]
#[case::volume_name(
    "services:\n  web:\n    image: x\n    volumes: [\"data:/data\"]\nvolumes:\n  data:\n    name: everyones\n",
    "volume data sets `name: everyones`"
)]
#[tokio::test]
async fn a_name_parallel_tests_would_share_is_refused_with_a_clear_error(
    #[case] yaml: &str,
    #[case] said: &str,
) -> anyhow::Result<()> {
    let ctx = TestContext::new()?;
    ctx.declare(Counts::new(0, 0, 0));
    let file = compose_file("refused", yaml);
    let err = ctx.compose(ComposeSpec::new("app", &file)).await.expect_err("refused");
    let text = err.to_string();
    assert!(matches!(err, Error::Compose(ComposeError::File { .. })), "{err:?}");
    assert!(text.contains(&file.display().to_string()) && text.contains(said), "{text}");
    assert!(text.contains("help: remove") && text.contains("every test that runs the file at once"), "{text}");
    assert!(labelled(&raw().await, ctx.task_id()).await?.is_empty(), "a refused file created something");
    Ok(())
}

#[tokio::test]
async fn a_file_compose_itself_rejects_fails_with_compose_s_own_words() -> anyhow::Result<()> {
    let ctx = TestContext::new()?;
    ctx.declare(Counts::new(0, 0, 0));
    let file = compose_file("rejected", "services:\n  web:\n    imagex: x\n");
    let err = ctx.compose(ComposeSpec::new("app", &file)).await.expect_err("compose rejects it");
    let Error::Compose(ComposeError::Failed { project, command, output, .. }) = &err else { panic!("{err:?}") };
    assert!(project.starts_with(ctx.prefix()) && command.ends_with(" config"), "{err}");
    assert!(output.iter().any(|l| l.contains("imagex")), "compose's own words are missing: {err}");
    assert!(err.to_string().contains("help: "), "{err}");
    Ok(())
}

#[tokio::test]
async fn a_second_project_under_the_same_logical_name_is_a_conflict() -> anyhow::Result<()> {
    let ctx = TestContext::new()?;
    ctx.declare(made());
    let app = ctx.compose(web_and_client("app")).await?;
    let again = ctx.compose(web_and_client("app")).await.expect_err("the same project twice");
    assert!(again.is_conflict(), "{again:?}");
    let page = app.service("client")?.exec(["wget", "-q", "-O", "-", "http://web:8080/"]).await?;
    assert_eq!(page.stdout, "hello from web\n", "the first project is untouched");
    assert_eq!(labelled(&raw().await, ctx.task_id()).await?.len(), 4);
    Ok(())
}

#[tokio::test]
async fn a_wait_for_a_service_the_file_lacks_fails_and_leaves_nothing() -> anyhow::Result<()> {
    let ctx = TestContext::new()?;
    ctx.declare(made());
    let spec = web_and_client("app").with_wait("db", WaitFor::exec(["true"]));
    let err = ctx.compose(spec).await.expect_err("there is no db");
    assert!(
        matches!(&err, Error::Compose(ComposeError::NoService { service, known, .. }) if service == "db" && known.len() == 2),
        "{err:?}"
    );
    assert!(err.to_string().contains("it has client, web"), "{err}");
    assert!(labelled(&raw().await, ctx.task_id()).await?.is_empty(), "the project outlived its failed bring-up");
    Ok(())
}

#[test]
#[ignore = "run as a child"]
fn child_brings_a_project_up_and_panics() {
    common::as_child(|| async {
        let ctx = TestContext::named("compose-panics").unwrap();
        ctx.declare(made());
        common::report("task", ctx.task_id());
        let app = ctx.compose(web_and_client("app")).await.unwrap();
        let made: Vec<String> = app.resources().iter().map(|r| format!("{}:{}", r.kind, r.id)).collect();
        common::report("made", made.join(","));
        panic!("on purpose, with the project up");
    });
}

#[tokio::test]
async fn a_test_that_panics_with_a_project_up_leaves_nothing() -> anyhow::Result<()> {
    let out = common::child("child_brings_a_project_up_and_panics", &[]).output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("on purpose"), "the child did not panic: {stderr}");
    let r = common::reported(&out.stdout);
    let made: Vec<&str> = r.get("made").map(|m| m.split(',').collect()).unwrap_or_default();
    assert_eq!(made.len(), 4, "the project was up before the panic: {r:?}\n{stderr}");
    let d = raw().await;
    for m in made {
        let (kind, id) = m.split_once(':').unwrap();
        let kind = match kind {
            "container" => Kind::Container,
            "network" => Kind::Network,
            _ => Kind::Volume,
        };
        assert!(!exists(&d, kind, id).await, "{m} outlived the panicking test");
    }
    assert!(labelled(&d, &r["task"]).await?.is_empty());
    Ok(())
}

#[test]
#[ignore = "run as a child"]
fn child_is_killed_in_the_middle_of_up() {
    common::as_child(|| async {
        let ctx = TestContext::named("compose-killed").unwrap();
        // `first` and its network and volume; `after` waits for a health that never comes.
        ctx.declare(Counts::new(1, 1, 1));
        common::report("task", ctx.task_id());
        common::report("ready", 1);
        let stuck = ctx.compose(ComposeSpec::new("stuck", STUCK_UP)).await;
        panic!("`up` of a file that never gets healthy returned: {stuck:?}");
    });
}

#[tokio::test]
async fn a_test_sigkilled_in_the_middle_of_up_leaves_nothing() -> anyhow::Result<()> {
    let mut cmd = common::child("child_is_killed_in_the_middle_of_up", &[]);
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let task = common::until_ready(&mut child).remove("task").expect("the child says its task");
    let d = raw().await;
    // In the middle of `up`: compose runs under the test's marker and has made `first`.
    let midway = common::eventually(Duration::from_secs(120), || async {
        !common::marked(&task).is_empty() && labelled(&d, &task).await.is_ok_and(|l| l.len() >= 3)
    })
    .await;
    common::signal(&child, "KILL");
    child.wait()?;
    anyhow::ensure!(midway, "compose never got midway: {:?}", labelled(&d, &task).await?);
    assert!(!common::marked(&task).is_empty(), "compose did not outlive the SIGKILLed test, nothing was shown");

    // The session's watcher: compose ended by the marker, then everything removed by label.
    let gone = common::eventually(Duration::from_secs(60), || async {
        common::marked(&task).is_empty() && labelled(&d, &task).await.is_ok_and(|l| l.is_empty())
    })
    .await;
    assert!(gone, "left: {:?}, processes {:?}", labelled(&d, &task).await?, common::marked(&task));
    Ok(())
}

#[test]
#[ignore = "run as a child"]
fn child_has_no_compose_program() {
    common::as_child(|| async {
        let ctx = TestContext::named("compose-missing").unwrap();
        ctx.declare(Counts::new(0, 0, 0));
        match ctx.compose(web_and_client("app")).await {
            Err(e @ Error::Compose(ComposeError::Unavailable { .. })) => {
                common::report("error", e.to_string().replace('\n', " "));
            }
            other => panic!("expected no compose program, got {other:?}"),
        }
    });
}

#[tokio::test]
async fn without_a_compose_program_the_error_says_what_was_tried_and_what_to_install() -> anyhow::Result<()> {
    let missing = common::scratch_dir("no-compose").join("docker-compose");
    let out = common::child("child_has_no_compose_program", &[("DOCKER_HARNESS_COMPOSE", missing.to_str().unwrap())])
        .output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let error = common::reported(&out.stdout).remove("error").unwrap_or_default();
    assert!(error.contains(&format!("tried `{}`", missing.display())), "{error}");
    assert!(error.contains("apt-get install docker-compose") && error.contains("DOCKER_HARNESS_COMPOSE"), "{error}");
    Ok(())
}
