//! A small task runner: the kind of program docker-harness users test. It runs a shell
//! command as a task in a container named from the task ID, with a network of its own, a
//! named volume and an anonymous one, and removes them when the task ends. It accepts extra
//! labels and a name prefix to stamp on what it creates, and it can be told to misbehave:
//! crash mid-task, leave a volume unlabelled, start more containers than it should, or
//! leave a helper daemon running on the host, detached as a proxy daemon would be.

use std::collections::HashMap;

use anyhow::{bail, Context};
use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest, VolumeCreateRequest};
use bollard::query_parameters::{CreateContainerOptions, LogsOptions, RemoveContainerOptions, WaitContainerOptions};
use bollard::Docker;
use clap::Parser;
use futures_util::StreamExt;

#[derive(Parser, Debug)]
#[command(about = "Run a shell command as a task in a container")]
struct Args {
    /// The task's ID; names are `<prefix>task-<id>[-net|-data]`.
    #[arg(long)]
    task_id: String,
    /// The shell command to run.
    #[arg(long)]
    cmd: String,
    /// The image to run it in.
    #[arg(long)]
    image: String,
    /// A label to put on everything created (repeatable), `key=value`.
    #[arg(long = "label")]
    labels: Vec<String>,
    /// A prefix for every name.
    #[arg(long, default_value = "")]
    name_prefix: String,
    /// Exit without cleaning up once the task is running.
    #[arg(long)]
    crash: bool,
    /// Create the named volume without the extra labels.
    #[arg(long)]
    unlabelled_volume: bool,
    /// A label to put on everything created, the volume `--unlabelled-volume` leaves without
    /// the `--label` labels included (repeatable), `key=value`: the e2e suite marks what a
    /// test's run creates as that test's bait with it.
    #[arg(long = "mark")]
    marks: Vec<String>,
    /// Start this many extra sidecar containers (a bug that amplifies resources).
    #[arg(long, default_value_t = 0)]
    extra_containers: usize,
    /// Start a helper daemon on the host first and leave it running: detached with
    /// `setsid -f` (a fork, a new session, the standard streams closed), as a host proxy
    /// or credential helper does, so it outlives the run and its process group.
    #[arg(long)]
    helper_daemon: bool,
}

/// The helper daemon's life: serve nothing, for ten minutes at most.
const HELPER: &str = "serve-helper";

fn start_helper_daemon() -> anyhow::Result<()> {
    let status = std::process::Command::new("setsid")
        .arg("-f")
        .arg(std::env::current_exe()?)
        .arg(HELPER)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .context("run setsid (util-linux)")?;
    anyhow::ensure!(status.success(), "setsid -f failed: {status}");
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some(HELPER) {
        std::thread::sleep(std::time::Duration::from_secs(600));
        return Ok(());
    }
    let args = Args::parse();
    if args.helper_daemon {
        start_helper_daemon()?;
    }
    let pairs = |flag: &str, given: &[String]| -> anyhow::Result<HashMap<String, String>> {
        given
            .iter()
            .map(|l| match l.split_once('=') {
                Some((k, v)) => Ok((k.to_string(), v.to_string())),
                None => bail!("--{flag} takes key=value, got {l:?}"),
            })
            .collect()
    };
    let marks = pairs("mark", &args.marks)?;
    let mut labels = pairs("label", &args.labels)?;
    labels.extend(marks.clone());
    let docker = Docker::connect_with_defaults()?.negotiate_version().await.context("connect to Docker")?;
    let base = format!("{}task-{}", args.name_prefix, args.task_id);
    let (net, vol) = (format!("{base}-net"), format!("{base}-data"));

    docker
        .create_network(NetworkCreateRequest { name: net.clone(), labels: Some(labels.clone()), ..Default::default() })
        .await
        .context("create the task network")?;
    let vol_labels = if args.unlabelled_volume { marks } else { labels.clone() };
    docker
        .create_volume(VolumeCreateRequest { name: Some(vol.clone()), labels: Some(vol_labels), ..Default::default() })
        .await
        .context("create the task volume")?;

    let mut names = vec![base.clone()];
    names.extend((0..args.extra_containers).map(|i| format!("{base}-sidecar{i}")));
    for (i, name) in names.iter().enumerate() {
        let cmd = if i == 0 { args.cmd.clone() } else { "sleep 3600".to_string() };
        let body = ContainerCreateBody {
            image: Some(args.image.clone()),
            cmd: Some(vec!["sh".into(), "-c".into(), cmd]),
            labels: Some(labels.clone()),
            // An anonymous volume, the kind that leaks unnoticed.
            volumes: Some(vec!["/scratch".to_string()]),
            host_config: Some(HostConfig {
                binds: Some(vec![format!("{vol}:/data")]),
                network_mode: Some(net.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptions { name: Some(name.clone()), ..Default::default() };
        docker.create_container(Some(opts), body).await.with_context(|| format!("create {name}"))?;
        docker.start_container(name, None).await.with_context(|| format!("start {name}"))?;
    }
    println!("task {} started in {base}", args.task_id);
    if args.crash {
        // Gone mid-task: no cleanup at all, as after a panic, an OOM kill or a power cut.
        std::process::exit(3);
    }

    let code = docker
        .wait_container(&base, None::<WaitContainerOptions>)
        .next()
        .await
        .map(|r| {
            r.map(|w| w.status_code).unwrap_or_else(|e| match e {
                bollard::errors::Error::DockerContainerWaitError { code, .. } => code,
                _ => -1,
            })
        })
        .unwrap_or(-1);
    let mut logs = docker.logs(&base, Some(LogsOptions { stdout: true, stderr: true, ..Default::default() }));
    while let Some(Ok(chunk)) = logs.next().await {
        print!("{chunk}");
    }
    for name in &names {
        let opts = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        docker.remove_container(name, Some(opts)).await.with_context(|| format!("remove {name}"))?;
    }
    docker.remove_network(&net).await.context("remove the task network")?;
    docker
        .remove_volume(&vol, None::<bollard::query_parameters::RemoveVolumeOptions>)
        .await
        .context("remove the task volume")?;
    println!("task {} exited with {code}", args.task_id);
    std::process::exit(i32::try_from(code).unwrap_or(1));
}
