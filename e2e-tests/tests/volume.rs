//! Volume isolation: what one test writes is never visible to another, and a volume seeded
//! from `fixtures/seed` holds exactly those files, with their contents and modes.

mod common;

use std::path::PathBuf;

use docker_harness::{ContainerSpec, Counts, TestContext, VolumeSpec};

fn seed_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/seed")
}

#[tokio::test]
async fn a_volume_seeded_from_fixtures_holds_exactly_those_files() -> anyhow::Result<()> {
    let ctx = TestContext::new()?;
    ctx.set_budget(Counts::new(2, 0, 1)); // the reader, and the seeder that never starts
    let data = ctx.create_volume(VolumeSpec::new("data").with_seed(seed_dir())).await?;
    let reader =
        ctx.container(ContainerSpec::new("reader").with_cmd(["sleep", "3600"]).with_volume(&data, "/data")).await?;

    let files = reader.exec(["sh", "-c", "cd /data && find . -type f | sort"]).await?;
    assert_eq!(files.stdout, "./config/app.toml\n./names.txt\n./run.sh\n");
    assert_eq!(reader.exec(["cat", "/data/names.txt"]).await?.stdout, "alpha\nbeta\n");
    assert_eq!(reader.exec(["cat", "/data/config/app.toml"]).await?.stdout, "port = 8080\n");
    assert_eq!(reader.exec(["/data/run.sh"]).await?.stdout, "seeded\n", "the script kept its exec bit");
    Ok(())
}

#[tokio::test]
async fn what_one_test_writes_to_its_volume_is_invisible_to_another() -> anyhow::Result<()> {
    // Two tests' worlds at once, each writing under the same logical volume name.
    let (a, b) = (TestContext::named("volume-isolation-a")?, TestContext::named("volume-isolation-b")?);
    let mut writers = Vec::new();
    for ctx in [&a, &b] {
        ctx.set_budget(Counts::new(1, 0, 1));
        let vol = ctx.volume("data").await?;
        let c = ctx.container(ContainerSpec::new("w").with_cmd(["sleep", "3600"]).with_volume(&vol, "/data")).await?;
        let out = c.exec(["sh", "-c", &format!("echo {} > /data/mine", ctx.task_id())]).await?;
        assert!(out.success());
        writers.push((ctx.task_id().to_string(), c, vol));
    }
    for (task, c, _) in &writers {
        let listing = c.exec(["ls", "-A", "/data"]).await?;
        assert_eq!(listing.stdout, "mine\n");
        assert_eq!(c.exec(["cat", "/data/mine"]).await?.stdout.trim(), task);
    }
    assert_ne!(writers[0].2.name(), writers[1].2.name());
    Ok(())
}
