use super::*;

#[test]
fn a_cleanup_failure_names_each_resource_with_its_kind() {
    let e = Error::Cleanup(vec![CleanupFailure {
        kind: Kind::Network,
        name: "dh-t-1-net".into(),
        error: Box::new(Error::Timeout { what: "see network dh-t-1-net gone".into(), after: Duration::from_secs(10) }),
    }]);
    let text = e.to_string();
    assert!(text.starts_with("cleanup left 1 resource(s) behind: network dh-t-1-net (timed out after 10s"), "{text}");
}

#[test]
fn the_orphans_hint_names_a_command_a_user_can_install() {
    let text = Error::Orphans(vec!["  volume v".into()]).to_string();
    assert!(text.contains("docker-harness reap") && text.contains("cargo install docker-harness-cli"), "{text}");
    assert!(!text.contains("cargo run -p"), "{text}");
}

#[test]
fn a_failed_pull_says_what_to_do_in_any_crate() {
    let text = Error::ImagePull {
        image: "alpine:3.19.1".into(),
        source_ref: "alpine:3.19.1".into(),
        message: "dial tcp: lookup registry-1.docker.io: no such host".into(),
        attempts: 1,
        not_found: false,
    }
    .to_string();
    for needed in ["DOCKER_HARNESS_IMAGE", "DOCKER_HARNESS_REGISTRY_MIRROR", "docker load", "busybox"] {
        assert!(text.contains(needed), "{needed} is not in: {text}");
    }
    assert!(!text.contains("make "), "a user's crate has no such make target: {text}");
}

#[test]
fn a_timed_out_wait_shows_the_state_and_the_last_lines_in_its_display() {
    let failure = WaitFailure {
        container: "dh-t-1-web".into(),
        strategy: "print a line matching /ready/".into(),
        after: Duration::from_secs(2),
        state: "running".into(),
        exit_code: None,
        last_attempt: "no line matched yet".into(),
        logs: vec!["stdout: starting".into(), "stderr: no config".into()],
    };
    let shown = format!("{:?}", anyhow::Error::from(Error::WaitTimeout(Box::new(failure))));
    for needed in ["it is running", "last 2 log line(s)", "    stdout: starting", "    stderr: no config", "help:"] {
        assert!(shown.contains(needed), "{needed} is not in: {shown}");
    }
}

#[test]
fn log_lines_are_indented_and_none_is_said() {
    assert_eq!(indent(&["a".into(), "b".into()]), "    a\n    b");
    assert_eq!(indent(&[]), "    (no output)");
}
