//! The bench's suite: many small tests, each in a process of its own under nextest, the way
//! users run a suite, doing the same Docker work through the harness or through raw bollard
//! (`BENCH_SUITE_PATH=harness|raw`, `BENCH_SUITE_SHAPE=one|shape`). Test names are fresh
//! per test (`s24::a::t03`, `s384::m17::t11`), so each pays its own per-test checks.
//!
//! Without `BENCH_SUITE_PATH` every test returns at once: a workspace-wide run does no
//! Docker work here. Each process appends its Docker calls to `DOCKER_HARNESS_CALL_LOG`:
//! the harness counts its own, the raw path counts its calls by hand in the same format.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, EndpointSettings, ExecConfig, HostConfig, NetworkCreateRequest};
use bollard::models::{NetworkingConfig, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, InspectNetworkOptions, RemoveContainerOptions,
    RemoveVolumeOptions, StartContainerOptions,
};
use bollard::Docker;
use docker_harness::{ContainerSpec, NetworkSpec, TestContext, VolumeSpec};
use futures_util::StreamExt;

/// The bench's own label on everything either path makes, so its last sweep finds it all.
const RUN_LABEL: &str = "docker-harness-bench.run";

fn one() {
    let Ok(path) = std::env::var("BENCH_SUITE_PATH") else { return };
    let shape = std::env::var("BENCH_SUITE_SHAPE").unwrap_or_else(|_| "one".into());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let done = rt.block_on(async {
        match path.as_str() {
            "harness" => harness(&shape).await,
            "raw" => raw(&shape).await,
            other => bail!("BENCH_SUITE_PATH={other}: expected harness or raw"),
        }
    });
    if let Err(e) = done {
        panic!("{e:#}");
    }
}

fn run_id() -> String {
    std::env::var("BENCH_RUN_ID").unwrap_or_else(|_| "unset".into())
}

async fn harness(shape: &str) -> Result<()> {
    let ctx = TestContext::new()?;
    let sleeper = |name: &str| ContainerSpec::new(name).with_cmd(["sleep", "3600"]).with_label(RUN_LABEL, run_id());
    if shape == "shape" {
        let net = ctx.create_network(NetworkSpec::new("net").with_label(RUN_LABEL, run_id())).await?;
        let vol = ctx.create_volume(VolumeSpec::new("data").with_label(RUN_LABEL, run_id())).await?;
        let a = ctx.container(sleeper("a").with_network(&net).with_volume(&vol, "/data")).await?;
        let b = ctx.container(sleeper("b").with_network(&net)).await?;
        for c in [&a, &b] {
            let out = c.exec(["echo", "hi"]).await?;
            anyhow::ensure!(out.stdout == "hi\n", "exec said {:?}", out.stdout);
        }
    } else {
        let c = ctx.container(sleeper("app")).await?;
        let out = c.exec(["echo", "hi"]).await?;
        anyhow::ensure!(out.stdout == "hi\n", "exec said {:?}", out.stdout);
    }
    ctx.cleanup().await?;
    Ok(())
}

/// Raw bollard, counting its own calls by phase as the harness does.
struct Raw {
    docker: Docker,
    calls: BTreeMap<(&'static str, &'static str), u64>,
}

impl Raw {
    fn note(&mut self, op: &'static str, why: &'static str) {
        *self.calls.entry((op, why)).or_insert(0) += 1;
    }

    fn name(what: &str) -> String {
        format!("dhb-suite-{}-{what}-{}", run_id(), &uuid::Uuid::new_v4().simple().to_string()[..8])
    }

    fn labels() -> HashMap<String, String> {
        HashMap::from([(RUN_LABEL.to_string(), run_id())])
    }

    async fn container(&mut self, image: &str, net: Option<&str>, vol: Option<&str>) -> Result<String> {
        let name = Raw::name("c");
        let host_config = HostConfig { binds: vol.map(|v| vec![format!("{v}:/data")]), ..Default::default() };
        let networking_config = net.map(|n| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(n.to_string(), EndpointSettings::default())])),
        });
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            cmd: Some(vec!["sleep".into(), "3600".into()]),
            labels: Some(Raw::labels()),
            host_config: Some(host_config),
            networking_config,
            ..Default::default()
        };
        let opts = CreateContainerOptions { name: Some(name.clone()), platform: String::new() };
        self.note("create_container", "create");
        let id = self.docker.create_container(Some(opts), body).await.context("create container")?.id;
        self.note("start_container", "create");
        self.docker.start_container(&id, None::<StartContainerOptions>).await.context("start container")?;
        Ok(id)
    }

    async fn echo(&mut self, id: &str) -> Result<()> {
        let config = ExecConfig {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(vec!["echo".into(), "hi".into()]),
            ..Default::default()
        };
        self.note("create_exec", "use");
        let created = self.docker.create_exec(id, config).await.context("create exec")?;
        let opts = StartExecOptions { detach: false, tty: false, output_capacity: None };
        self.note("start_exec", "use");
        if let StartExecResults::Attached { mut output, .. } = self.docker.start_exec(&created.id, Some(opts)).await? {
            while let Some(chunk) = output.next().await {
                chunk.context("read exec output")?;
            }
        }
        for pause in [0u64, 5, 10, 20, 50, 100, 200, 400] {
            tokio::time::sleep(Duration::from_millis(pause)).await;
            self.note("inspect_exec", "use");
            if self.docker.inspect_exec(&created.id).await?.running != Some(true) {
                return Ok(());
            }
        }
        bail!("exec still running")
    }

    /// Removes and confirms with a 404, as the harness does.
    async fn remove(&mut self, kind: &'static str, id: &str) -> Result<()> {
        for _ in 0..100 {
            let r = match kind {
                "container" => {
                    self.note("remove_container", "teardown");
                    let opts = RemoveContainerOptions { force: true, v: true, link: false };
                    self.docker.remove_container(id, Some(opts)).await
                }
                "network" => {
                    self.note("remove_network", "teardown");
                    self.docker.remove_network(id).await
                }
                _ => {
                    self.note("remove_volume", "teardown");
                    self.docker.remove_volume(id, Some(RemoveVolumeOptions { force: false })).await
                }
            };
            match r {
                Ok(()) => {}
                Err(e) if status(&e) == Some(404) => return Ok(()),
                Err(e) if matches!(status(&e), Some(409 | 403 | 500)) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => return Err(e).context("remove"),
            }
            self.note("inspect_gone", "teardown");
            let gone = match kind {
                "container" => self.docker.inspect_container(id, None::<InspectContainerOptions>).await.map(drop),
                "network" => self.docker.inspect_network(id, None::<InspectNetworkOptions>).await.map(drop),
                _ => self.docker.inspect_volume(id).await.map(drop),
            };
            if gone.as_ref().err().and_then(status) == Some(404) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("{kind} {id} not gone")
    }

    fn flush(&self) {
        let Some(path) = std::env::var_os("DOCKER_HARNESS_CALL_LOG") else { return };
        let calls: Vec<_> = self
            .calls
            .iter()
            .map(|((op, why), n)| serde_json::json!({ "module": "raw", "op": op, "why": why, "n": n }))
            .collect();
        let line = serde_json::json!({
            "pid": std::process::id(),
            "test": std::env::var("NEXTEST_TEST_NAME").unwrap_or_default(),
            "calls": calls,
        });
        let mut bytes = line.to_string().into_bytes();
        bytes.push(b'\n');
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = f.write_all(&bytes);
        }
    }
}

fn status(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

async fn raw(shape: &str) -> Result<()> {
    let image = std::env::var("DOCKER_HARNESS_IMAGE").context("DOCKER_HARNESS_IMAGE names the image")?;
    let docker = Docker::connect_with_defaults()?;
    let mut r = Raw { docker, calls: BTreeMap::new() };
    r.note("version", "start");
    r.docker = r.docker.clone().negotiate_version().await?;
    if shape == "shape" {
        let net_name = Raw::name("n");
        r.note("create_network", "create");
        let req = NetworkCreateRequest { name: net_name.clone(), labels: Some(Raw::labels()), ..Default::default() };
        let net = r.docker.create_network(req).await?.id;
        let vol_name = Raw::name("v");
        r.note("create_volume", "create");
        let req =
            VolumeCreateRequest { name: Some(vol_name.clone()), labels: Some(Raw::labels()), ..Default::default() };
        r.docker.create_volume(req).await?;
        let a = r.container(&image, Some(&net_name), Some(&vol_name)).await?;
        let b = r.container(&image, Some(&net_name), None).await?;
        r.echo(&a).await?;
        r.echo(&b).await?;
        let (ra, rb) = (a.clone(), b.clone());
        // Containers in parallel, as the harness's teardown does; then the network, the volume.
        let mut r2 = Raw { docker: r.docker.clone(), calls: BTreeMap::new() };
        let (x, y) = tokio::join!(r.remove("container", &ra), r2.remove("container", &rb));
        x?;
        y?;
        for (k, n) in r2.calls {
            *r.calls.entry(k).or_insert(0) += n;
        }
        r.remove("network", &net).await?;
        r.remove("volume", &vol_name).await?;
    } else {
        let c = r.container(&image, None, None).await?;
        r.echo(&c).await?;
        r.remove("container", &c).await?;
    }
    r.flush();
    Ok(())
}

/// Sixteen tests, `t00` to `t15`, in the module it is called in.
macro_rules! sixteen {
    () => {
        #[test]
        fn t00() {
            crate::one()
        }
        #[test]
        fn t01() {
            crate::one()
        }
        #[test]
        fn t02() {
            crate::one()
        }
        #[test]
        fn t03() {
            crate::one()
        }
        #[test]
        fn t04() {
            crate::one()
        }
        #[test]
        fn t05() {
            crate::one()
        }
        #[test]
        fn t06() {
            crate::one()
        }
        #[test]
        fn t07() {
            crate::one()
        }
        #[test]
        fn t08() {
            crate::one()
        }
        #[test]
        fn t09() {
            crate::one()
        }
        #[test]
        fn t10() {
            crate::one()
        }
        #[test]
        fn t11() {
            crate::one()
        }
        #[test]
        fn t12() {
            crate::one()
        }
        #[test]
        fn t13() {
            crate::one()
        }
        #[test]
        fn t14() {
            crate::one()
        }
        #[test]
        fn t15() {
            crate::one()
        }
    };
}

/// Modules of sixteen tests each.
macro_rules! modules {
    ($($m:ident)*) => {
        $(mod $m {
            sixteen!();
        })*
    };
}

/// 24 tests: 16 and the first 8 of another 16 (the filter `test(/^s24::(a|b::t0)/)`).
mod s24 {
    modules!(a b);
}

/// 384 tests.
mod s384 {
    modules!(m00 m01 m02 m03 m04 m05 m06 m07 m08 m09 m10 m11 m12 m13 m14 m15 m16 m17 m18 m19 m20 m21 m22 m23);
}
