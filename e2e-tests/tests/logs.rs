//! A failed test says why: before its containers go, it shows the last lines of each on
//! stderr under its logical name, whether it panicked or returned `Err` through `ctx.run`
//! (`DOCKER_HARNESS_LOGS` and `DOCKER_HARNESS_LOG_LINES` decide when and how much). A
//! container's output can also be followed as it happens, into the test's stderr or a
//! callback, to its last line. A timed-out wait shows the state and the last lines through
//! `anyhow`, and a plain `#[test]` reaches the async API through `block_on`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use docker_harness::{ctx, ContainerSpec, Counts, LogLine, LogStream, TestContext, WaitFor};
use rstest::rstest;

use common::{container_exists, raw};

/// A container that runs `script`, says `done` once it has, and then sleeps; handed over
/// once `done` is in its logs.
fn talker(logical: &str, script: &str, done: &str) -> ContainerSpec {
    ContainerSpec::new(logical)
        .with_cmd(["sh", "-c", &format!("{script}; echo {done}; exec sleep 3600")])
        .with_wait(WaitFor::log_line(&format!("^{done}$")))
}

/// Sixty lines on stdout, one on stderr, then `chatty-done` on stdout: 62 in all. The
/// pauses keep Docker's order of the two streams the order they were written in.
const CHATTY: &str = "for i in $(seq 1 60); do echo line-$i; done; sleep 0.2; echo to-stderr >&2; sleep 0.2";

#[test]
#[ignore = "run as a child by the tests below"]
fn child_ends_as_told_with_two_containers() -> anyhow::Result<()> {
    if !common::is_child() {
        return Ok(());
    }
    let how = std::env::var("DH_HOW")?;
    docker_harness::block_on(async {
        let ctx = TestContext::new()?;
        ctx.declare(Counts::new(2, 0, 0));
        ctx.run(async {
            // Left to the context: its lines are read at the context's teardown.
            let quiet = ctx.container(talker("quiet", "echo quiet-was-here", "quiet-done")).await?;
            common::report("quiet", quiet.id());
            quiet.into_context();
            // Dropped with the body: its lines are read before its guard removes it.
            let chatty = ctx.container(talker("chatty", CHATTY, "chatty-done")).await?;
            common::report("chatty", chatty.id());
            match how.as_str() {
                "panic" => panic!("the test failed on purpose"),
                "err" => anyhow::bail!("the test failed on purpose"),
                _ => Ok(()),
            }
        })
        .await
    })
}

/// Runs the child above; returns its output and the IDs it reported.
fn run_child(how: &str, env: &[(&str, &str)]) -> (Output, String, Vec<String>) {
    let mut cmd = common::child("child_ends_as_told_with_two_containers", &[]);
    // The defaults are under test: whatever the caller's environment says, not here.
    cmd.env_remove("DOCKER_HARNESS_LOGS").env_remove("DOCKER_HARNESS_LOG_LINES");
    let out = cmd.envs(env.iter().copied()).env("DH_HOW", how).output().expect("the child runs");
    let r = common::reported(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let ids = ["quiet", "chatty"].map(|k| r.get(k).cloned().unwrap_or_else(|| panic!("no {k} reported: {stderr}")));
    (out, stderr, ids.to_vec())
}

/// The block a container's lines were shown in: from its header to the next line that is
/// not one of its indented lines.
fn block<'a>(stderr: &'a str, logical: &str) -> Option<Vec<&'a str>> {
    let header = format!("docker-harness: last log lines of {logical} (container ");
    let mut lines = stderr.lines().skip_while(|l| !l.starts_with(&header));
    let first = lines.next()?;
    Some(std::iter::once(first).chain(lines.take_while(|l| l.starts_with("    "))).collect())
}

async fn assert_gone(ids: &[String]) {
    let d = raw().await;
    for id in ids {
        assert!(!container_exists(&d, id).await, "container {id} is still there");
    }
}

/// Both containers' blocks, with the last 50 lines of the chatty one and nothing before.
fn assert_both_shown(stderr: &str) {
    let chatty = block(stderr, "chatty").unwrap_or_else(|| panic!("no block for chatty in: {stderr}"));
    assert!(chatty[0].contains("-chatty, running; at most 50)"), "{}", chatty[0]);
    assert_eq!(chatty.len(), 51, "a header and 50 lines: {chatty:#?}");
    assert_eq!(chatty[1], "    stdout: line-13");
    assert_eq!(chatty[49], "    stderr: to-stderr");
    assert_eq!(chatty[50], "    stdout: chatty-done");
    let quiet = block(stderr, "quiet").unwrap_or_else(|| panic!("no block for quiet in: {stderr}"));
    assert_eq!(quiet[1..], ["    stdout: quiet-was-here", "    stdout: quiet-done"]);
}

#[tokio::test]
async fn a_panicking_test_shows_the_last_lines_of_each_of_its_containers_before_they_go() {
    let (out, stderr, ids) = run_child("panic", &[]);
    assert!(!out.status.success(), "the child was to fail: {stderr}");
    assert!(stderr.contains("the test failed on purpose"), "{stderr}");
    assert_both_shown(&stderr);
    assert_gone(&ids).await;
}

#[tokio::test]
async fn a_test_that_returns_err_through_run_shows_them_as_a_panic_does() {
    let (out, stderr, ids) = run_child("err", &[]);
    assert!(!out.status.success(), "the child was to fail: {stderr}");
    let said = String::from_utf8_lossy(&out.stdout) + stderr.as_str();
    assert!(said.contains("the test failed on purpose"), "{said}");
    assert_both_shown(&stderr);
    assert_gone(&ids).await;
}

#[tokio::test]
async fn never_shows_nothing_even_when_the_test_fails() {
    let (out, stderr, ids) = run_child("panic", &[("DOCKER_HARNESS_LOGS", "never")]);
    assert!(!out.status.success(), "the child was to fail: {stderr}");
    assert!(!stderr.contains("last log lines of"), "{stderr}");
    assert_gone(&ids).await;
}

#[tokio::test]
async fn a_passing_test_shows_nothing_by_default() {
    let (out, stderr, ids) = run_child("pass", &[]);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("last log lines of"), "what a passing run held is forgotten: {stderr}");
    assert_gone(&ids).await;
}

#[tokio::test]
async fn always_shows_the_lines_of_a_passing_test_and_the_line_count_is_obeyed() {
    let (out, stderr, ids) = run_child("pass", &[("DOCKER_HARNESS_LOGS", "always"), ("DOCKER_HARNESS_LOG_LINES", "3")]);
    assert!(out.status.success(), "{stderr}");
    let chatty = block(&stderr, "chatty").unwrap_or_else(|| panic!("no block for chatty in: {stderr}"));
    assert!(chatty[0].contains("at most 3)"), "{}", chatty[0]);
    assert_eq!(chatty[1..], ["    stdout: line-60", "    stderr: to-stderr", "    stdout: chatty-done"]);
    assert!(block(&stderr, "quiet").is_some(), "{stderr}");
    assert_gone(&ids).await;
}

#[test]
#[ignore = "run as a child by the test below"]
fn child_follows_a_container_until_told_to_go_on() -> anyhow::Result<()> {
    if !common::is_child() {
        return Ok(());
    }
    let go = std::path::PathBuf::from(std::env::var("DH_GO")?);
    docker_harness::block_on(async {
        let ctx = TestContext::new()?;
        ctx.declare(Counts::new(1, 0, 0));
        let script = "echo hello-from-web; echo warn-from-web >&2; \
                      while [ ! -e /tmp/go ]; do sleep 0.1; done; echo bye-from-web; exec sleep 3600";
        let web = ctx.container(ContainerSpec::new("web").with_cmd(["sh", "-c", script]).with_follow_logs()).await?;
        common::report("web", web.id());
        common::report("ready", 1);
        while !go.exists() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        web.exec(["touch", "/tmp/go"]).await?;
        web.wait_for(WaitFor::log_line("^bye-from-web$")).await?;
        Ok(())
        // web drops here: its follower is drained before the container goes
    })
}

#[tokio::test]
async fn a_followed_container_streams_prefixed_lines_into_the_tests_stderr_to_the_last() -> anyhow::Result<()> {
    let go = common::scratch_dir("follow").join("go");
    let mut cmd = common::child("child_follows_a_container_until_told_to_go_on", &[("DH_GO", go.to_str().unwrap())]);
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let (tx, rx) = mpsc::channel();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || stderr.lines().map_while(Result::ok).for_each(|l| drop(tx.send(l))));
    let id = common::until_ready(&mut child).remove("web").expect("the child reported its container");
    // While the child waits, and its container still runs, the first lines are already here.
    let mut seen = Vec::new();
    while !(seen.iter().any(|l| l == "[web] hello-from-web") && seen.iter().any(|l| l == "[web:stderr] warn-from-web"))
    {
        seen.push(rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| panic!("not streamed: {seen:#?}")));
    }
    assert!(container_exists(&raw().await, &id).await);
    std::fs::write(&go, "")?;
    let status = child.wait()?;
    seen.extend(rx.iter());
    assert!(status.success(), "{seen:#?}");
    assert!(seen.iter().any(|l| l == "[web] bye-from-web"), "the last line was lost: {seen:#?}");
    assert_eq!(seen.iter().filter(|l| l.starts_with("[web]")).count(), 2, "each line once: {seen:#?}");
    assert_gone(&[id]).await;
    Ok(())
}

/// A consumer that sends every line down a channel.
fn channel_consumer() -> (impl Fn(&LogLine) + Send + Sync + 'static, mpsc::Receiver<LogLine>) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    (move |l: &LogLine| drop(tx.lock().map(|t| t.send(l.clone()))), rx)
}

#[rstest]
#[tokio::test]
async fn a_consumer_gets_lines_while_the_container_runs_and_every_last_one_before_removal(
    ctx: TestContext,
) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 0));
    let (consumer, rx) = channel_consumer();
    let script = "echo first; while [ ! -e /tmp/go ]; do sleep 0.1; done; \
                  i=1; while [ $i -le 300 ]; do echo last-$i; i=$((i+1)); done; exec sleep 3600";
    let c =
        ctx.container(ContainerSpec::new("counter").with_cmd(["sh", "-c", script]).with_log_consumer(consumer)).await?;
    let first = tokio::task::spawn_blocking(move || (rx.recv_timeout(Duration::from_secs(30)), rx)).await?;
    let (first, rx) = (first.0?, first.1);
    assert_eq!((first.stream, first.text.as_str()), (LogStream::Stdout, "first"));
    assert!(c.inspect().await?.state.and_then(|s| s.running).unwrap_or(false), "it arrived while the container ran");
    c.exec(["touch", "/tmp/go"]).await?;
    // Docker has all 300 lines now; the removal right after must not lose any of them.
    c.wait_for(WaitFor::log_line("^last-300$")).await?;
    c.remove().await?;
    let got: Vec<String> = rx.try_iter().map(|l| l.text).collect();
    let want: Vec<String> = (1..=300).map(|i| format!("last-{i}")).collect();
    assert_eq!(got, want, "every line once, in order");
    Ok(())
}

#[rstest]
#[tokio::test]
async fn a_created_only_container_is_followed_from_its_start_to_the_contexts_teardown(
    ctx: TestContext,
) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 0));
    let (consumer, rx) = channel_consumer();
    let spec = ContainerSpec::new("later").with_cmd(["sh", "-c", "echo up; sleep 0.2; echo oops >&2; exec sleep 3600"]);
    let c = ctx.container(spec.created_only().with_log_consumer(consumer)).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.start().await?;
    c.wait_for(WaitFor::log_line("^oops$").on(LogStream::Stderr)).await?;
    c.into_context();
    ctx.cleanup().await?;
    let got: Vec<(LogStream, String)> = rx.try_iter().map(|l| (l.stream, l.text)).collect();
    assert_eq!(got, [(LogStream::Stdout, "up".to_string()), (LogStream::Stderr, "oops".to_string())]);
    Ok(())
}

#[rstest]
#[tokio::test]
async fn a_timed_out_wait_shows_the_state_and_the_last_lines_through_anyhow(ctx: TestContext) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 0));
    let c = ctx.container(talker("slow", "echo warming-up", "still-warming")).await?;
    let err = c.wait_for(WaitFor::log_line("never-ready").with_timeout(Duration::from_secs(1))).await.unwrap_err();
    // What a test returning anyhow::Result prints: `Error: {:?}` of the anyhow error.
    let shown = format!("{:?}", anyhow::Error::from(err));
    assert!(shown.contains("it is running"), "{shown}");
    assert!(shown.contains("    stdout: warming-up") && shown.contains("    stdout: still-warming"), "{shown}");
    Ok(())
}

#[test]
fn a_plain_test_reaches_the_async_api_through_block_on() -> anyhow::Result<()> {
    let ctx = TestContext::new()?;
    ctx.declare(Counts::new(2, 0, 0));
    let kept = docker_harness::block_on(async {
        let dropped_inside = ctx.container(ContainerSpec::new("inside").with_cmd(["sleep", "3600"])).await?;
        let gone = dropped_inside.id().to_string();
        drop(dropped_inside);
        let c = ctx.container(ContainerSpec::new("app").with_cmd(["sleep", "3600"])).await?;
        assert_eq!(c.exec(["echo", "hi"]).await?.stdout, "hi\n");
        let id = c.id().to_string();
        c.into_context();
        anyhow::Ok([gone, id])
    })?;
    drop(ctx); // on this plain thread, no runtime anywhere
    docker_harness::block_on(assert_gone(&kept));
    Ok(())
}

#[rstest]
#[tokio::test]
async fn names_are_the_prefix_a_dash_and_the_logical_name(ctx: TestContext) {
    assert_eq!(ctx.name_for("web"), format!("{}-web", ctx.prefix()));
    assert!(!ctx.prefix().ends_with('-'), "{}", ctx.prefix());
}
