//! Sixteen tests run at once under `-j8`, each creating a container, a network and a volume
//! under the same logical names. All succeed with distinct Docker names, each sees only its
//! own data, and once the guards drop Docker answers 404 for every one of them.

mod common;

use docker_harness::{ctx, ContainerSpec, Counts, TestContext};
use rstest::rstest;

use common::{assert_all_gone, raw, Made};

#[rstest]
#[case::t01(1)]
#[case::t02(2)]
#[case::t03(3)]
#[case::t04(4)]
#[case::t05(5)]
#[case::t06(6)]
#[case::t07(7)]
#[case::t08(8)]
#[case::t09(9)]
#[case::t10(10)]
#[case::t11(11)]
#[case::t12(12)]
#[case::t13(13)]
#[case::t14(14)]
#[case::t15(15)]
#[case::t16(16)]
#[tokio::test]
async fn parallel_tests_sharing_logical_names_never_collide(ctx: TestContext, #[case] n: u32) -> anyhow::Result<()> {
    ctx.set_budget(Counts::new(1, 1, 1));
    let docker = raw().await;
    let made = {
        let net = ctx.network("net").await?;
        let vol = ctx.volume("data").await?;
        let app = ctx
            .container(
                ContainerSpec::new("app").with_cmd(["sleep", "3600"]).with_network(&net).with_volume(&vol, "/data"),
            )
            .await?;

        for name in [app.name(), net.name(), vol.name()] {
            assert!(name.starts_with(ctx.prefix()), "{name} lacks the context prefix {}", ctx.prefix());
        }
        let marker = format!("{}-{n}", ctx.task_id());
        let wrote = app.exec(["sh", "-c", &format!("echo {marker} > /data/owner")]).await?;
        assert!(wrote.success(), "write failed: {wrote:?}");

        // The volume holds exactly this test's file, with this test's content: no other
        // test's write reached it.
        let listing = app.exec(["ls", "-A", "/data"]).await?;
        assert_eq!(listing.stdout.trim(), "owner");
        let read = app.exec(["cat", "/data/owner"]).await?;
        assert_eq!(read.stdout.trim(), marker);

        // Labels carry this test's identity.
        let info = app.inspect().await?;
        let labels = info.config.and_then(|c| c.labels).unwrap_or_default();
        assert_eq!(labels.get("docker-harness.task").map(String::as_str), Some(ctx.task_id()));
        assert_eq!(labels.get("docker-harness.managed").map(String::as_str), Some("true"));

        Made { container: app.id().to_string(), network: net.id().to_string(), volume: vol.name().to_string() }
    }; // guards drop here
    assert_all_gone(&docker, &made).await;
    Ok(())
}
