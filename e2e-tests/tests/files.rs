//! Configuration goes in and results come out through Docker's archive API: bytes, files
//! and whole directories, before or after the start, with their modes.

mod common;

use std::os::unix::fs::PermissionsExt;

use docker_harness::{ctx, ContainerSpec, Counts, Error, TestContext};
use rstest::rstest;

use common::scratch_dir;

fn sleeper(logical: &str) -> ContainerSpec {
    ContainerSpec::new(logical).with_cmd(["sleep", "3600"])
}

#[rstest]
#[tokio::test]
async fn bytes_put_in_before_the_start_are_there_with_their_mode(ctx: TestContext) -> anyhow::Result<()> {
    // Declared for the suite's audit, which compares it with what Docker saw.
    ctx.declare(Counts::new(1, 0, 0));
    let app = ctx.container(sleeper("app").with_file(b"port = 8080\n", "/etc/app/app.toml", 0o600)).await?;
    let out = app.exec(["sh", "-c", "stat -c '%a %u' /etc/app/app.toml && cat /etc/app/app.toml"]).await?;
    assert_eq!(out.stdout, "600 0\nport = 8080\n");
    Ok(())
}

#[rstest]
#[tokio::test]
async fn a_directory_copied_in_after_the_start_keeps_its_layout_and_modes(ctx: TestContext) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 0));
    let dir = scratch_dir("files-in");
    std::fs::create_dir_all(dir.join("bin"))?;
    std::fs::write(dir.join("bin/hello.sh"), "#!/bin/sh\necho hello from the host\n")?;
    std::fs::set_permissions(dir.join("bin/hello.sh"), std::fs::Permissions::from_mode(0o750))?;
    std::fs::write(dir.join("README"), "notes\n")?;
    let app = ctx.container(sleeper("app")).await?;
    app.copy_in(dir.as_path(), "/opt/tool", None).await?;
    let out = app
        .exec(["sh", "-c", "/opt/tool/bin/hello.sh && stat -c %a /opt/tool/bin/hello.sh && cat /opt/tool/README"])
        .await?;
    assert_eq!(out.stdout, "hello from the host\n750\nnotes\n", "{}", out.stderr);
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

#[rstest]
#[tokio::test]
async fn a_result_file_comes_out_as_bytes(ctx: TestContext) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 0));
    let job = ctx.container(sleeper("job")).await?;
    job.exec(["sh", "-c", "mkdir -p /out && printf 'a\\0b' > /out/result.bin"]).await?;
    assert_eq!(job.copy_out_bytes("/out/result.bin").await?, b"a\0b");
    Ok(())
}

#[rstest]
#[tokio::test]
async fn a_result_directory_comes_out_into_a_local_directory_with_its_modes(ctx: TestContext) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 0));
    let job = ctx.container(sleeper("job")).await?;
    let made = job.exec(["sh", "-c", "mkdir -p /out/logs && echo done > /out/logs/run.log && printf '#!/bin/sh\\n' > /out/again.sh && chmod 754 /out/again.sh"]).await?;
    assert!(made.success(), "{}", made.stderr);
    let local = scratch_dir("files-out");
    let copied = job.copy_out_to("/out", &local).await?;
    assert_eq!(copied, local.join("out"));
    assert_eq!(std::fs::read_to_string(copied.join("logs/run.log"))?, "done\n");
    assert_eq!(std::fs::metadata(copied.join("again.sh"))?.permissions().mode() & 0o777, 0o754);
    std::fs::remove_dir_all(local)?;
    Ok(())
}

#[rstest]
#[tokio::test]
async fn copying_out_a_missing_path_or_a_directory_as_bytes_fails_clearly(ctx: TestContext) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 0));
    let job = ctx.container(sleeper("job")).await?;
    let missing = job.copy_out_bytes("/no/such/file").await.unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    let dir = job.copy_out_bytes("/etc").await.unwrap_err();
    assert!(matches!(dir, Error::Copy { .. }), "{dir}");
    assert!(dir.to_string().contains("copy_out_to"), "{dir}");
    Ok(())
}

#[rstest]
#[tokio::test]
async fn a_relative_target_is_refused_before_anything_is_sent(ctx: TestContext) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 0));
    let job = ctx.container(sleeper("job")).await?;
    let err = job.copy_in(b"x", "etc/x", None).await.unwrap_err();
    assert!(matches!(err, Error::Copy { .. }) && err.to_string().contains("absolute"), "{err}");
    Ok(())
}
