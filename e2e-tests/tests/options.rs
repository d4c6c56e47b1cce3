//! The container options real workloads use, each read back from inside the container
//! (cgroups, `/proc/self/status`, `mount`, `ulimit`, `df`, `/etc/hosts`) next to a plain
//! neighbour under the same logical name that shows the default, so no check passes by
//! accident; and the escape hatch, which reaches Docker but cannot take the harness's
//! labels or mounts away.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use docker_harness::bollard::models::HostConfig;
use docker_harness::bollard::query_parameters::ListContainersOptions;
use docker_harness::{ctx, ContainerSpec, Counts, Error, TestContext};
use rstest::rstest;

use common::sh;

fn sleeper(logical: &str) -> ContainerSpec {
    ContainerSpec::new(logical).with_cmd(["sleep", "3600"])
}

/// A cgroup file: the v1 path (this machine), else the v2 one.
fn cgroup(v1: &str, v2: &str) -> String {
    format!("cat /sys/fs/cgroup/{v1} 2>/dev/null || cat /sys/fs/cgroup/{v2}")
}

/// The effective capability set of the container's processes, from `/proc/self/status`.
async fn cap_eff(c: &docker_harness::Container) -> anyhow::Result<u64> {
    let hex = sh(c, "grep CapEff /proc/self/status | cut -f2").await?;
    Ok(u64::from_str_radix(&hex, 16)?)
}

#[rstest]
#[tokio::test]
async fn memory_cpu_and_pid_limits_are_what_the_cgroups_say(ctx: TestContext) -> anyhow::Result<()> {
    ctx.declare(Counts::new(2, 0, 0));
    let limited = ctx
        .container(sleeper("app").with_memory_limit(64 << 20).with_cpus(0.5).with_cpu_shares(512).with_pids_limit(64))
        .await?;
    let plain = ctx.container(sleeper("plain")).await?;
    let memory = cgroup("memory/memory.limit_in_bytes", "memory.max");
    let pids = cgroup("pids/pids.max", "pids.max");
    assert_eq!(sh(&limited, &memory).await?, "67108864");
    assert_eq!(sh(&limited, &pids).await?, "64");
    assert_ne!(sh(&plain, &memory).await?, "67108864");
    assert_eq!(sh(&plain, &pids).await?, "max");
    let quota = "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us 2>/dev/null \
                 || cat /sys/fs/cgroup/cpu.max";
    assert_eq!(sh(&limited, quota).await?.split_whitespace().collect::<Vec<_>>(), ["50000", "100000"]);
    assert_eq!(
        sh(&plain, quota).await?.split_whitespace().next(),
        Some(if cgroup_v1(&plain).await? { "-1" } else { "max" })
    );
    if cgroup_v1(&limited).await? {
        assert_eq!(sh(&limited, "cat /sys/fs/cgroup/cpu/cpu.shares").await?, "512");
        assert_eq!(sh(&plain, "cat /sys/fs/cgroup/cpu/cpu.shares").await?, "1024");
    }
    Ok(())
}

async fn cgroup_v1(c: &docker_harness::Container) -> anyhow::Result<bool> {
    Ok(c.exec(["test", "-d", "/sys/fs/cgroup/memory"]).await?.success())
}

#[rstest]
#[tokio::test]
async fn capabilities_added_and_dropped_are_the_processes_own(ctx: TestContext) -> anyhow::Result<()> {
    ctx.declare(Counts::new(2, 0, 0));
    let (chown, net_admin) = (1u64 << 0, 1u64 << 12);
    let tuned = ctx.container(sleeper("app").with_cap_add("NET_ADMIN").with_cap_drop("cap_chown")).await?;
    let plain = ctx.container(sleeper("plain")).await?;
    let (t, p) = (cap_eff(&tuned).await?, cap_eff(&plain).await?);
    assert!(p & chown != 0 && p & net_admin == 0, "Docker's default set: {p:x}");
    assert!(t & chown == 0 && t & net_admin != 0, "CHOWN dropped, NET_ADMIN added: {t:x}");
    let give_away = "touch /tmp/f && chown 1000 /tmp/f";
    assert!(plain.exec(["sh", "-c", give_away]).await?.success());
    assert!(!tuned.exec(["sh", "-c", give_away]).await?.success(), "chown worked without CAP_CHOWN");
    Ok(())
}

#[rstest]
#[tokio::test]
async fn a_privileged_container_gets_every_capability_where_the_daemon_can_give_them(
    ctx: TestContext,
) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 0));
    let app = ctx.container(sleeper("app").with_privileged(true).created_only()).await?;
    let host = app.inspect().await?.host_config.unwrap_or_default();
    assert_eq!(host.privileged, Some(true));
    match app.start().await {
        Ok(()) => {
            let sys_admin = 1u64 << 21;
            assert!(cap_eff(&app).await? & sys_admin != 0, "no CAP_SYS_ADMIN when privileged");
            sh(&app, "mkdir -p /m && mount -t tmpfs none /m").await?;
        }
        // A daemon that itself runs with fewer capabilities (nested, or rootless) cannot
        // hand out all of them; this machine's is one. The create above is what is checked.
        Err(e) if ["apply caps", "operation not permitted"].iter().any(|m| e.to_string().contains(m)) => {
            eprintln!("this daemon cannot start privileged containers: {e}");
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

#[rstest]
#[tokio::test]
async fn a_read_only_root_refuses_writes_while_its_tmpfs_takes_them(ctx: TestContext) -> anyhow::Result<()> {
    ctx.declare(Counts::new(2, 0, 0));
    let app =
        ctx.container(sleeper("app").with_read_only_root(true).with_tmpfs("/scratch", "size=16m,mode=1777")).await?;
    let plain = ctx.container(sleeper("plain")).await?;
    let mounts = sh(&app, "mount").await?;
    let root = mounts.lines().find(|l| l.contains(" on / type ")).unwrap_or_default();
    assert!(root.contains("(ro,"), "root is not read-only: {root}");
    let scratch = mounts.lines().find(|l| l.contains(" on /scratch type ")).unwrap_or_default();
    assert!(scratch.starts_with("tmpfs") && scratch.contains("size=16384k"), "{scratch}");
    assert!(!app.exec(["touch", "/written"]).await?.success(), "the read-only root took a write");
    assert!(plain.exec(["touch", "/written"]).await?.success());
    sh(&app, "echo hi > /scratch/f && test \"$(cat /scratch/f)\" = hi").await?;
    assert_eq!(sh(&app, "stat -c %a /scratch").await?, "1777");
    Ok(())
}

#[rstest]
#[tokio::test]
async fn ulimits_shared_memory_and_no_new_privileges_are_what_the_container_sees(
    ctx: TestContext,
) -> anyhow::Result<()> {
    ctx.declare(Counts::new(2, 0, 0));
    // The limits as the container's own shell sees them at its start: an exec's soft
    // nofile limit is not the container's (runc sometimes raises it to the hard one).
    let recorder = |logical: &str| {
        ContainerSpec::new(logical).with_cmd(["sh", "-c", "ulimit -Sn > /tmp/n; ulimit -Hn >> /tmp/n; exec sleep 3600"])
    };
    let app = ctx
        .container(recorder("app").with_ulimit("nofile", 256, 512).with_shm_size(128 << 20).with_no_new_privileges())
        .await?;
    let plain = ctx.container(recorder("plain")).await?;
    let nofile = "cat /tmp/n";
    assert_eq!(sh(&app, nofile).await?, "256\n512");
    assert_ne!(sh(&plain, nofile).await?, "256\n512");
    let limits = sh(&app, "grep 'open files' /proc/1/limits").await?;
    assert_eq!(limits.split_whitespace().skip(3).take(2).collect::<Vec<_>>(), ["256", "512"], "{limits}");
    let shm = "df -k /dev/shm | tail -1 | awk '{print $2}'";
    assert_eq!(sh(&app, shm).await?, "131072");
    assert_eq!(sh(&plain, shm).await?, "65536");
    let nnp = "grep NoNewPrivs /proc/self/status | cut -f2";
    assert_eq!(sh(&app, nnp).await?, "1");
    assert_eq!(sh(&plain, nnp).await?, "0");
    Ok(())
}

#[rstest]
#[tokio::test]
async fn an_init_is_pid_1_and_the_names_are_what_the_container_sees(ctx: TestContext) -> anyhow::Result<()> {
    ctx.declare(Counts::new(2, 0, 0));
    let app = ctx
        .container(
            sleeper("app").with_init(true).with_hostname("app-1.test").with_extra_host("db.internal", "10.1.2.3"),
        )
        .await?;
    let plain = ctx.container(sleeper("plain")).await?;
    // Docker's init is tini, installed as docker-init; Podman's is catatonit.
    let init = if common::on_podman().await { "catatonit" } else { "docker-init" };
    assert_eq!(sh(&app, "cat /proc/1/comm").await?, init);
    assert_eq!(sh(&plain, "cat /proc/1/comm").await?, "sleep");
    assert_eq!(sh(&app, "hostname").await?, "app-1.test");
    assert_ne!(sh(&plain, "hostname").await?, "app-1.test");
    let hosts = sh(&app, "cat /etc/hosts").await?;
    assert!(hosts.lines().any(|l| l.split_whitespace().eq(["10.1.2.3", "db.internal"])), "{hosts}");
    Ok(())
}

#[rstest]
#[tokio::test]
async fn a_stop_sends_the_stop_signal_given(ctx: TestContext) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 0));
    let script = "trap 'echo stopped by usr1 > /tmp/by; exit 0' USR1; while :; do sleep 1 & wait $!; done";
    let app = ctx.container(ContainerSpec::new("app").with_cmd(["sh", "-c", script]).with_stop_signal("usr1")).await?;
    assert_eq!(app.inspect().await?.config.and_then(|c| c.stop_signal).as_deref(), Some("SIGUSR1"));
    app.stop(Duration::from_secs(30)).await?;
    let state = app.inspect().await?.state.unwrap_or_default();
    // The trap's exit 0, not SIGKILL's 137 after the grace period.
    assert_eq!((state.running, state.exit_code), (Some(false), Some(0)));
    assert_eq!(app.copy_out_bytes("/tmp/by").await?, b"stopped by usr1\n");
    Ok(())
}

#[rstest]
#[tokio::test]
async fn the_platform_asked_for_reaches_the_daemon(ctx: TestContext) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 0));
    let image = docker_harness::session_image().await?.reference;
    let info = common::raw().await.inspect_image(&image).await?;
    let native = format!("{}/{}", info.os.unwrap_or_default(), info.architecture.unwrap_or_default());
    let app = ctx.container(sleeper("app").with_platform(native.as_str())).await?;
    assert!(app.exec(["true"]).await?.success());
    if common::skip_on_podman("Podman's compatible create is not known to check the platform (untested)").await {
        return Ok(());
    }
    let foreign = if native == "linux/s390x" { "linux/ppc64le" } else { "linux/s390x" };
    let refused = ctx.container(sleeper("other").with_platform(foreign)).await.expect_err("a platform the image lacks");
    assert!(refused.to_string().contains("platform"), "{refused}");
    Ok(())
}

#[rstest]
#[tokio::test]
async fn a_bad_option_fails_before_anything_is_created(ctx: TestContext) -> anyhow::Result<()> {
    ctx.set_budget(Counts::new(0, 0, 0));
    let bad = [
        (sleeper("app").with_memory_limit(0), "memory limit"),
        (sleeper("app").with_ulimit("openfiles", 1, 1), "ulimit"),
        (sleeper("app").with_cap_add("NET_ADMINS"), "capability"),
        (sleeper("app").with_stop_signal("SIGFOO"), "stop signal"),
        (sleeper("app").with_hostname("not a hostname"), "hostname"),
    ];
    for (spec, want) in bad {
        match ctx.container(spec).await {
            Err(Error::InvalidOption { container, option, .. }) => {
                assert_eq!((container.as_str(), option), ("app", want));
            }
            other => panic!("expected an invalid {want}, got {other:?}"),
        }
    }
    // The budget of nothing holds: teardown fails if anything was created.
    ctx.finish().await?;
    Ok(())
}

#[rstest]
#[tokio::test]
async fn the_escape_hatch_sets_what_no_builder_has(ctx: TestContext) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 0));
    let app = ctx
        .container(sleeper("app").with_create_body(|body| {
            body.host_config.get_or_insert_with(HostConfig::default).oom_score_adj = Some(500);
        }))
        .await?;
    assert_eq!(sh(&app, "cat /proc/self/oom_score_adj").await?, "500");
    Ok(())
}

#[rstest]
#[tokio::test]
async fn a_hatch_that_clears_labels_and_mounts_still_yields_a_labelled_container_teardown_removes(
    ctx: TestContext,
) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 1));
    let d = common::raw().await;
    let data = ctx.volume("data").await?;
    let app = ctx
        .container(sleeper("app").with_volume(&data, "/data").with_label("app", "demo").with_create_body(|body| {
            body.labels = None;
            body.host_config = Some(HostConfig::default());
        }))
        .await?;
    let labels = app.inspect().await?.config.and_then(|c| c.labels).unwrap_or_default();
    for key in [docker_harness::labels::MANAGED, docker_harness::labels::TASK] {
        assert_eq!(labels.get(key), ctx.labels().get(key), "{key} on the container");
    }
    assert!(!labels.contains_key("app"), "the hatch's clearing of the spec's own labels stands");
    // Found by its labels, as every sweep finds what a test left.
    let task = format!("{}={}", docker_harness::labels::TASK, ctx.task_id());
    let opts = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([("label".to_string(), vec![task])])),
        ..Default::default()
    };
    let found: Vec<String> = d.list_containers(Some(opts)).await?.into_iter().filter_map(|c| c.id).collect();
    assert_eq!(found, [app.id().to_string()]);
    let mounts = sh(&app, "mount").await?;
    assert!(mounts.lines().any(|l| l.contains(" on /data ")), "the spec's volume is not mounted: {mounts}");
    let id = app.id().to_string();
    app.into_context();
    ctx.cleanup().await?;
    assert!(!common::container_exists(&d, &id).await, "teardown left the hatched container");
    Ok(())
}

#[rstest]
#[tokio::test]
async fn a_hatch_that_binds_a_named_volume_is_refused(ctx: TestContext) -> anyhow::Result<()> {
    ctx.set_budget(Counts::new(0, 0, 0));
    let spec = sleeper("app").with_create_body(|body| {
        body.host_config.get_or_insert_with(HostConfig::default).binds = Some(vec!["stray:/stray".into()]);
    });
    let refused = ctx.container(spec).await.expect_err("a bind that would make an unlabelled volume");
    assert!(matches!(refused, Error::InvalidOption { .. }), "{refused}");
    assert!(refused.to_string().contains("with_mount"), "{refused}");
    ctx.finish().await?;
    Ok(())
}
