//! Every image a spec names is resolved like the session image (once per session, through
//! the mirror), and private registries are pulled from with the credentials the docker CLI
//! would send: `auths` entries, a credential helper, `DOCKER_AUTH_CONFIG`; a refused login
//! is one error that says where credentials were looked for and never the secret.
//!
//! Each test starts a loopback `docker-registry` of its own (htpasswd auth with a bcrypt
//! entry for the private ones), pushes a copy of the session image into it under a name
//! of its own, and runs children in a session of their own with a temporary DOCKER_CONFIG,
//! never the machine's. Pulled images stay on the daemon, as the harness leaves them; the
//! tests untag the names they made.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use base64::Engine as _;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{EventsOptions, PushImageOptions, RemoveImageOptions, TagImageOptions};
use bollard::Docker;
use common::services::Registry;
use docker_harness::{ContainerSpec, Error, TestContext};
use futures_util::StreamExt;

const USER: &str = "tester";
const PASSWORD: &str = "s3cret-Pa55word";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}

#[test]
#[ignore = "run as a child"]
fn child_runs_the_named_image() {
    common::as_child(|| async {
        let image = std::env::var("DH_IMAGE").unwrap();
        let ctx = TestContext::named("named-image").unwrap();
        let result = ctx.container(ContainerSpec::new("app").with_image(&image).with_cmd(["sleep", "30"])).await;
        let line = match result {
            Ok(c) => {
                format!("ok {}", c.exec(["echo", "ran"]).await.map(|o| o.stdout.trim().to_string()).unwrap_or_default())
            }
            Err(e @ Error::RegistryAuth { .. }) => format!("auth {}", e.to_string().replace('\n', " ")),
            Err(e) => format!("other {}", e.to_string().replace('\n', " ")),
        };
        common::report("result", line);
    });
}

/// A copy of the session image in a registry of the test's own, under `repo`, absent from
/// the daemon under that name; the name is untagged again when it drops.
struct Pushed {
    rt: tokio::runtime::Runtime,
    docker: Docker,
    registry: Registry,
    /// The reference in the registry.
    reference: String,
    /// What else the daemon may come to call it (a mirror's pull is tagged as the Hub name).
    also: Vec<String>,
    dir: PathBuf,
}

impl Pushed {
    fn new(tag: &str, login: bool, repo: impl FnOnce(&str) -> String) -> anyhow::Result<Pushed> {
        let dir = common::scratch_dir(tag);
        let registry = Registry::start(&dir.join("registry"), login.then_some((USER, PASSWORD)))?;
        let reference = repo(&registry.addr);
        let rt = rt();
        let docker = rt.block_on(common::raw());
        let creds = login.then(|| DockerCredentials {
            username: Some(USER.into()),
            password: Some(PASSWORD.into()),
            serveraddress: Some(registry.addr.clone()),
            ..Default::default()
        });
        rt.block_on(async {
            let base = docker_harness::session_image().await?.reference;
            let (repo, tag) = reference.rsplit_once(':').unwrap();
            docker.tag_image(&base, Some(TagImageOptions { repo: Some(repo.into()), tag: Some(tag.into()) })).await?;
            let mut push =
                docker.push_image(repo, Some(PushImageOptions { tag: Some(tag.into()), ..Default::default() }), creds);
            while let Some(step) = push.next().await {
                if let Some(e) = step?.error_detail.and_then(|d| d.message) {
                    anyhow::bail!("pushing {reference}: {e}");
                }
            }
            untag(&docker, &reference).await;
            anyhow::ensure!(!image_exists(&docker, &reference).await, "{reference} is still on the daemon");
            Ok(())
        })?;
        Ok(Pushed { rt, docker, registry, reference, also: Vec::new(), dir })
    }

    /// A docker config directory holding `config` as its config.json.
    fn docker_config(&self, name: &str, config: &str) -> PathBuf {
        let d = self.dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("config.json"), config).unwrap();
        d
    }

    /// One child pulling and running `image` in a session of its own with `env`; what it said.
    fn run_child(&self, image: &str, env: &[(&str, &str)]) -> String {
        let mut cmd = common::child("child_runs_the_named_image", &[("DH_IMAGE", image)]);
        cmd.env_remove("DOCKER_AUTH_CONFIG").env_remove("DOCKER_HARNESS_REGISTRY_MIRROR");
        cmd.envs(env.iter().copied());
        common::own_session(&mut cmd, "registry");
        let out = cmd.output().unwrap();
        common::reported(&out.stdout)
            .remove("result")
            .unwrap_or_else(|| format!("no report; stderr: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

impl Drop for Pushed {
    fn drop(&mut self) {
        let names = std::iter::once(self.reference.clone()).chain(self.also.drain(..)).collect::<Vec<_>>();
        self.rt.block_on(async {
            for n in names {
                untag(&self.docker, &n).await;
            }
        });
    }
}

/// Removes a name only: the image stays under the session image's name.
async fn untag(docker: &Docker, reference: &str) {
    let opts = RemoveImageOptions { force: false, noprune: true, ..Default::default() };
    let _ = docker.remove_image(reference, Some(opts), None).await;
}

async fn image_exists(docker: &Docker, reference: &str) -> bool {
    docker.inspect_image(reference).await.is_ok()
}

/// The daemon's pull events between two instants whose image names contain `needle`.
async fn pull_events(docker: &Docker, since: u64, until: u64, needle: &str) -> Vec<String> {
    let filters = HashMap::from([
        ("type".to_string(), vec!["image".to_string()]),
        ("event".to_string(), vec!["pull".to_string()]),
    ]);
    let opts = EventsOptions { since: Some(since.to_string()), until: Some(until.to_string()), filters: Some(filters) };
    let mut events = docker.events(Some(opts));
    let mut seen = Vec::new();
    while let Some(Ok(ev)) = events.next().await {
        let id = ev.actor.and_then(|a| a.id).unwrap_or_default();
        if id.contains(needle) {
            seen.push(id);
        }
    }
    seen
}

fn auth_config(registry: &str, user: &str, password: &str) -> String {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!(r#"{{"auths": {{"{registry}": {{"auth": "{auth}"}}}}}}"#)
}

fn path_with(dir: &Path) -> String {
    format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default())
}

#[test]
fn an_image_a_spec_names_is_pulled_once_for_eight_parallel_tests_through_the_mirror() -> anyhow::Result<()> {
    let name = format!("dh-e2e-named-{}", uuid::Uuid::new_v4().simple());
    let mut pushed = Pushed::new("named", false, |addr| format!("{addr}/library/{name}:v1"))?;
    // What the tests name is the Hub-style reference; the mirror serves it under its path.
    let image = format!("{name}:v1");
    pushed.also.push(image.clone());
    let since = common::unix_now();
    let mut first = common::child("child_runs_the_named_image", &[]);
    let session = common::own_session(&mut first, "named-8");
    let children: Vec<_> = (0..8)
        .map(|_| {
            let mut cmd = common::child("child_runs_the_named_image", &[("DH_IMAGE", &image)]);
            common::join_own_session(&mut cmd, &session);
            cmd.env("DOCKER_HARNESS_REGISTRY_MIRROR", &pushed.registry.addr).env_remove("DOCKER_AUTH_CONFIG");
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    let results: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            common::reported(&out.stdout)
                .remove("result")
                .unwrap_or_else(|| format!("no report; stderr: {}", String::from_utf8_lossy(&out.stderr)))
        })
        .collect();
    let until = common::unix_now() + 1;
    let pulls = pushed.rt.block_on(pull_events(&pushed.docker, since, until, &name));
    for r in &results {
        assert_eq!(r, "ok ran", "{results:#?}");
    }
    assert_eq!(pulls, [pushed.reference.clone()], "docker events saw these pulls");
    let state = common::own_session_state(&session).join("sessions").join(&session);
    let records = docker_harness::pull_records(&state);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!((records[0].image.as_str(), records[0].source.as_str()), (image.as_str(), pushed.reference.as_str()));
    // Pulled images stay, as the session image does; only the name this test made goes.
    assert!(pushed.rt.block_on(image_exists(&pushed.docker, &image)));
    Ok(())
}

#[test]
fn a_private_image_is_pulled_with_the_auths_entry_of_the_docker_config() -> anyhow::Result<()> {
    let pushed = Pushed::new("auths", true, |addr| format!("{addr}/private/app-{}:1", uuid::Uuid::new_v4().simple()))?;
    let config = pushed.docker_config("config", &auth_config(&pushed.registry.addr, USER, PASSWORD));
    let said = pushed.run_child(&pushed.reference, &[("DOCKER_CONFIG", config.to_str().unwrap())]);
    assert_eq!(said, "ok ran");
    Ok(())
}

/// A credential helper `docker-credential-dh-e2e` in its own directory, which records how it
/// was called and answers with the registry's login; the directory and the record.
fn credential_helper(pushed: &Pushed) -> anyhow::Result<(PathBuf, PathBuf)> {
    let bin = pushed.dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    let calls = pushed.dir.join("helper-calls.log");
    let helper = bin.join("docker-credential-dh-e2e");
    // The protocol: `get`, the server address on stdin (no newline), JSON on stdout.
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nIFS= read -r server || true\nprintf '%s %s\\n' \"$1\" \"$server\" >>'{}'\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}\\n' \"$server\"\n",
            calls.display()
        ),
    )?;
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    Ok((bin, calls))
}

#[test]
fn a_credential_helper_is_asked_as_the_docker_cli_asks_it() -> anyhow::Result<()> {
    let pushed = Pushed::new("helper", true, |addr| format!("{addr}/private/app-{}:1", uuid::Uuid::new_v4().simple()))?;
    let (bin, calls) = credential_helper(&pushed)?;
    let config = pushed.docker_config(
        "config",
        &format!(
            r#"{{"credHelpers": {{"{}": "dh-e2e"}}, "auths": {{"{}": {{}}}}}}"#,
            pushed.registry.addr, pushed.registry.addr
        ),
    );
    let path = path_with(&bin);
    let said = pushed.run_child(&pushed.reference, &[("DOCKER_CONFIG", config.to_str().unwrap()), ("PATH", &path)]);
    assert_eq!(said, "ok ran");
    assert_eq!(std::fs::read_to_string(&calls)?, format!("get {}\n", pushed.registry.addr));
    Ok(())
}

#[test]
fn a_creds_store_is_asked_for_a_registry_without_a_helper_of_its_own() -> anyhow::Result<()> {
    let pushed = Pushed::new("store", true, |addr| format!("{addr}/private/app-{}:1", uuid::Uuid::new_v4().simple()))?;
    let (bin, calls) = credential_helper(&pushed)?;
    let config = pushed.docker_config("config", r#"{"credsStore": "dh-e2e", "credHelpers": {"ghcr.io": "elsewhere"}}"#);
    let path = path_with(&bin);
    let said = pushed.run_child(&pushed.reference, &[("DOCKER_CONFIG", config.to_str().unwrap()), ("PATH", &path)]);
    assert_eq!(said, "ok ran");
    assert_eq!(std::fs::read_to_string(&calls)?, format!("get {}\n", pushed.registry.addr));
    Ok(())
}

#[test]
fn docker_auth_config_comes_before_the_config_file() -> anyhow::Result<()> {
    let pushed = Pushed::new("env", true, |addr| format!("{addr}/private/app-{}:1", uuid::Uuid::new_v4().simple()))?;
    let stale = pushed.docker_config("config", &auth_config(&pushed.registry.addr, USER, "an-old-password"));
    let inline = auth_config(&pushed.registry.addr, USER, PASSWORD);
    let said = pushed
        .run_child(&pushed.reference, &[("DOCKER_CONFIG", stale.to_str().unwrap()), ("DOCKER_AUTH_CONFIG", &inline)]);
    assert_eq!(said, "ok ran");
    Ok(())
}

#[test]
fn a_refused_login_is_one_error_naming_the_registry_and_where_credentials_were_looked_for_never_the_secret(
) -> anyhow::Result<()> {
    let pushed =
        Pushed::new("refused", true, |addr| format!("{addr}/private/app-{}:1", uuid::Uuid::new_v4().simple()))?;
    let wrong = "Wr0ng-pa55word";
    let config = pushed.docker_config("config", &auth_config(&pushed.registry.addr, USER, wrong));
    let said = pushed.run_child(&pushed.reference, &[("DOCKER_CONFIG", config.to_str().unwrap())]);
    let registry = &pushed.registry.addr;
    assert!(
        said.starts_with(&format!("auth pulling {} from {registry} needs credentials", pushed.reference)),
        "{said}"
    );
    assert!(said.contains("credentials were sent and refused"), "{said}");
    let file = config.join("config.json");
    assert!(
        said.contains(&format!("DOCKER_AUTH_CONFIG (unset), {} (auths entry for {registry})", file.display())),
        "{said}"
    );
    assert!(said.contains("help: log in"), "{said}");
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{wrong}"));
    assert!(!said.contains(wrong) && !said.contains(&encoded), "the secret is in the error: {said}");
    Ok(())
}

#[test]
fn without_credentials_a_private_registry_says_none_were_found_and_where() -> anyhow::Result<()> {
    let pushed = Pushed::new("none", true, |addr| format!("{addr}/private/app-{}:1", uuid::Uuid::new_v4().simple()))?;
    let empty = pushed.dir.join("empty-config");
    std::fs::create_dir_all(&empty)?;
    let said = pushed.run_child(&pushed.reference, &[("DOCKER_CONFIG", empty.to_str().unwrap())]);
    assert!(said.starts_with("auth pulling"), "{said}");
    assert!(said.contains("no credentials were found to send"), "{said}");
    assert!(said.contains(&format!("{} (absent)", empty.join("config.json").display())), "{said}");
    Ok(())
}
