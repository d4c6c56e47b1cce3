//! The holder child role: a child that creates a container, a network and a volume,
//! reports them, and waits to be signalled or killed.

use super::*;

/// What a holder child created, by kind.
#[derive(Debug, Default, Clone)]
pub struct Held {
    pub task: String,
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
}

impl Held {
    pub async fn count_present(&self, d: &Docker) -> usize {
        let mut n = 0;
        for c in &self.containers {
            n += usize::from(container_exists(d, c).await);
        }
        for c in &self.networks {
            n += usize::from(network_exists(d, c).await);
        }
        for v in &self.volumes {
            n += usize::from(volume_exists(d, v).await);
        }
        n
    }

    pub fn total(&self) -> usize {
        self.containers.len() + self.networks.len() + self.volumes.len()
    }
}

/// The body of the `child_holds_resources` role: creates `DH_SHAPE` (containers,networks,
/// volumes; default 1,1,1) under the test name `DH_TEST_NAME`, reports them, and waits
/// to be killed (or gives up after two minutes and cleans up normally). Started with
/// [`bait_owner_env`], it marks everything as that test's bait.
pub fn holder_role() {
    if !is_child() {
        return;
    }
    let shape = std::env::var("DH_SHAPE").unwrap_or_else(|_| "1,1,1".into());
    let n: Vec<usize> = shape.split(',').map(|x| x.parse().unwrap()).collect();
    let name = std::env::var("DH_TEST_NAME").unwrap_or_else(|_| "holder".into());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let ctx = docker_harness::TestContext::named(&name).unwrap();
        ctx.set_budget(docker_harness::Counts::new(n[0], n[1], n[2]));
        println!("REPORT task={}", ctx.task_id());
        // Bait of the test that started this child: what it keeps outlives this process.
        let bait = std::env::var_os(BAIT_OWNER_ENV).map(|_| bait_value());
        let mut nets = Vec::new();
        for i in 0..n[1] {
            let mut spec = docker_harness::NetworkSpec::new(format!("net{i}"));
            if let Some(v) = &bait {
                spec = spec.with_label(BAIT, v);
            }
            let net = ctx.create_network(spec).await.unwrap();
            println!("REPORT network={}", net.id());
            nets.push(net);
        }
        let mut vols = Vec::new();
        for i in 0..n[2] {
            let mut spec = docker_harness::VolumeSpec::new(format!("vol{i}"));
            if let Some(v) = &bait {
                spec = spec.with_label(BAIT, v);
            }
            let v = ctx.create_volume(spec).await.unwrap();
            println!("REPORT volume={}", v.name());
            vols.push(v);
        }
        let mut cs = Vec::new();
        for i in 0..n[0] {
            let mut spec = docker_harness::ContainerSpec::new(format!("c{i}")).with_cmd(["sleep", "3600"]);
            if let Some(v) = &bait {
                spec = spec.with_label(BAIT, v);
            }
            if let Some(net) = nets.get(i % nets.len().max(1)) {
                spec = spec.with_network(net);
            }
            if let Some(v) = vols.get(i % vols.len().max(1)) {
                spec = spec.with_volume(v, "/data");
            }
            let c = ctx.container(spec).await.unwrap();
            println!("REPORT container={}", c.id());
            cs.push(c);
        }
        println!("REPORT ready=1");
        use std::io::Write;
        std::io::stdout().flush().unwrap();
        if std::env::var_os("DH_RETURN").is_none() {
            tokio::time::sleep(Duration::from_secs(120)).await;
        }
    });
}

/// Starts a holder child (the binary must declare `child_holds_resources`) and waits until
/// it has created everything.
pub fn spawn_holder(cmd: &mut Command) -> (std::process::Child, Held) {
    use std::io::BufRead;
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("holder starts");
    let stdout = child.stdout.take().unwrap();
    let mut held = Held::default();
    let mut lines = std::io::BufReader::new(stdout).lines();
    while let Some(line) = lines.next() {
        let line = line.unwrap();
        let Some(i) = line.find("REPORT ") else { continue };
        let (k, v) = line[i + 7..].split_once('=').unwrap();
        match k {
            "task" => held.task = v.to_string(),
            "container" => held.containers.push(v.to_string()),
            "network" => held.networks.push(v.to_string()),
            "volume" => held.volumes.push(v.to_string()),
            "ready" => {
                // Keep reading so the child never writes into a closed pipe.
                std::thread::spawn(move || lines.for_each(drop));
                return (child, held);
            }
            _ => {}
        }
    }
    let status = child.wait().unwrap();
    panic!("the holder ended ({status}) before it was ready");
}
