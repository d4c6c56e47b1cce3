//! Bringing a compose file up as part of a test: `config` under the test's project name,
//! the one rendered file, the images it names made sure of (compose never pulls or builds),
//! `up`, what it created found by label and tracked, then each service's waits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::try_join_all;

use super::{cli, guard::ComposeGuard, render, ComposeSpec};
use crate::container::{self, WaitFor};
use crate::engine::is_404;
use crate::error::{ComposeError, Error, Result};
use crate::scope::Scope;
use crate::{blocking, docker, gate, image, labels, removal, session};

/// How long `config` may take: it only reads files.
const CONFIG_LIMIT: Duration = Duration::from_secs(60);

/// The variable that names the session image in the compose process's environment.
const IMAGE_VAR: &str = "DOCKER_HARNESS_IMAGE";

/// Brings the spec's file up under the scope's identity.
pub(crate) async fn up(scope: Arc<Scope>, spec: ComposeSpec) -> Result<ComposeGuard> {
    blocking::run(async move {
        let file = readable(&spec.file)?;
        let dir = file.parent().map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
        let program = cli::program().await?;
        let project = project_name(&scope.name_for(&spec.logical));
        let env = environment(&spec)?;
        let marker = scope.process_marker();
        let on = |f: &Path| -> Vec<String> {
            let project_dir = dir.display().to_string();
            ["--file", &f.display().to_string(), "--project-name", &project, "--project-directory", &project_dir]
                .map(str::to_string)
                .to_vec()
        };
        let config_args = [on(&file), vec!["config".into()]].concat();
        let config = cli::run(program, &config_args, &dir, &env, marker, &project, CONFIG_LIMIT).await?;
        let ours = scope.labels_for_new(&HashMap::from([(labels::COMPOSE.to_string(), project.clone())]));
        let rendered = render::render(&config, &project, &ours, container::bind_ip(), &file)?;
        let docker = docker::client().await?;
        let filters = [format!("{}={}", labels::TASK, scope.task_id), format!("{}={project}", labels::COMPOSE)];
        if !removal::list_labelled(&docker, &filters).await?.is_empty() {
            return Err(taken(&project));
        }
        images_present(&docker, &rendered.images, &file).await?;

        let written = RenderedFile::write(&project, &rendered.yaml)?;
        let up_args =
            [on(&written.0), ["up", "--detach", "--no-build", "--no-color"].map(str::to_string).to_vec()].concat();
        let upped = {
            let _pass = gate::enter(&format!("bring up compose project {project}"))?;
            cli::run(program, &up_args, &dir, &env, marker, &project, spec.timeout).await
        };
        drop(written);
        // Whatever `up` made before it failed carries the labels too: found, and removed.
        let found = removal::list_labelled(&docker, &filters).await?;
        let guard = ComposeGuard::new(scope, spec.logical.clone(), project, found);
        let ready = match upped {
            Ok(_) => wait_for_services(&guard, &spec.waits).await,
            Err(e) => Err(e),
        };
        match ready {
            Ok(()) => Ok(guard),
            Err(e) => {
                if let Err(left) = guard.remove().await {
                    eprintln!("docker-harness: {left}; the context's teardown tries again");
                }
                Err(e)
            }
        }
    })
    .await
}

/// A second project under one logical name would be the first one again (compose finds its
/// containers up to date), with two guards over it: a conflict, as a second container of
/// that name is.
fn taken(project: &str) -> Error {
    let message = format!(
        "compose project {project} is already up in this test.\n  \
         help: give the second one another logical name in ComposeSpec::new"
    );
    Error::docker(
        format!("bring up compose project {project}"),
        bollard::errors::Error::DockerResponseServerError { status_code: 409, message },
    )
}

/// The spec's file as an absolute path, once it is known to be readable.
fn readable(file: &Path) -> Result<PathBuf> {
    let refuse = |reason: String| {
        Error::Compose(ComposeError::File {
            file: file.to_path_buf(),
            reason,
            help: "give its path relative to the test's working directory (cargo runs tests in the \
               package's directory) or an absolute one"
                .into(),
        })
    };
    let path = std::fs::canonicalize(file).map_err(|e| refuse(format!("it cannot be read ({e})")))?;
    std::fs::File::open(&path).map_err(|e| refuse(format!("it cannot be read ({e})")))?;
    Ok(path)
}

/// A project name both compose generations keep as it is: compose v1 drops every character
/// but `[a-z0-9_-]`, so a `.` of the test's prefix becomes a `-` here instead.
fn project_name(name: &str) -> String {
    name.chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_') { c } else { '-' })
        .collect()
}

/// The variables the compose process gets on top of this process's environment: the
/// session image's reference (unless the spec names it otherwise), then the spec's own.
fn environment(spec: &ComposeSpec) -> Result<Vec<(String, String)>> {
    let mut env = vec![(IMAGE_VAR.to_string(), image::reference()?)];
    env.extend(spec.env.iter().cloned());
    Ok(env)
}

/// Makes sure every image the file names is on the daemon, so that compose has nothing to
/// pull: the session image is resolved as for any container (pulled once per session,
/// through the mirror); any other image has to be present.
async fn images_present(docker: &bollard::Docker, images: &[(String, String)], file: &Path) -> Result<()> {
    let session = image::reference()?;
    let mut checked = Vec::new();
    for (service, image) in images {
        if checked.contains(image) {
            continue;
        }
        checked.push(image.clone());
        if *image == session {
            // Compose names the image by its reference, not the session's ID: one inspect
            // says whether that reference still is what the session resolved.
            let img = image::session_image_resolved().await?;
            let found = match crate::retry::bounded(docker.inspect_image(&img.reference)).await {
                Ok(i) => i.id.unwrap_or_default(),
                Err(e) if is_404(&e) => "<absent>".to_string(),
                Err(e) => return Err(Error::docker(format!("inspect image {}", img.reference), e)),
            };
            if found != img.id {
                return Err(Error::ImageChanged { image: img.reference, expected: img.id, found });
            }
            continue;
        }
        match crate::retry::bounded(docker.inspect_image(image)).await {
            Ok(_) => {}
            Err(e) if is_404(&e) => {
                return Err(Error::Compose(ComposeError::File {
                    file: file.to_path_buf(),
                    reason: format!("service {service} runs image {image}, which the daemon does not have"),
                    help: format!(
                        "pull it before the test (`docker pull {image}`), or run the session image with \
                         `image: ${{{IMAGE_VAR}}}`; compose is never let pull or build"
                    ),
                }))
            }
            Err(e) => return Err(Error::docker(format!("inspect image {image} of service {service}"), e)),
        }
    }
    Ok(())
}

/// Each service's waits, all services at once.
async fn wait_for_services(guard: &ComposeGuard, waits: &[(String, WaitFor)]) -> Result<()> {
    let mut by_service: Vec<(&str, Vec<WaitFor>)> = Vec::new();
    for (service, wait) in waits {
        match by_service.iter_mut().find(|(s, _)| s == service) {
            Some((_, ws)) => ws.push(wait.clone()),
            None => by_service.push((service, vec![wait.clone()])),
        }
    }
    let checks = by_service.into_iter().map(|(service, mut waits)| async move {
        let c = guard.service(service)?;
        let wait = if waits.len() == 1 { waits.remove(0) } else { WaitFor::all(waits) };
        c.wait_for(wait).await
    });
    try_join_all(checks).await.map(drop)
}

/// The rendered file, in the session's state directory while `up` reads it.
struct RenderedFile(PathBuf);

impl RenderedFile {
    fn write(project: &str, yaml: &str) -> Result<RenderedFile> {
        let dir = session::current()?.state_dir().join("compose");
        std::fs::create_dir_all(&dir).map_err(|source| Error::State {
            action: "create the directory for",
            path: dir.clone(),
            source,
        })?;
        let path = dir.join(format!("{project}.yml"));
        std::fs::write(&path, yaml).map_err(|source| Error::State { action: "write", path: path.clone(), source })?;
        Ok(RenderedFile(path))
    }
}

impl Drop for RenderedFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_project_under_one_logical_name_is_a_conflict_that_says_what_to_do() {
        let e = taken("dh-t-1234abcd-app");
        assert!(e.is_conflict(), "{e}");
        assert!(e.to_string().contains("already up in this test.\n  help: give the second one another"), "{e}");
    }

    #[test]
    fn a_project_name_is_one_that_compose_v1_keeps_as_it_is() {
        assert_eq!(project_name("dh-my_test-1234abcd-app"), "dh-my_test-1234abcd-app");
        assert_eq!(project_name("dh-v1.2-1234abcd-App"), "dh-v1-2-1234abcd-app");
    }

    #[test]
    fn the_session_image_is_named_for_compose_and_the_spec_can_add_to_it() {
        let spec = ComposeSpec::new("app", "f.yml").with_env("GREETING", "hi");
        let env = environment(&spec).unwrap();
        assert_eq!(env[0].0, IMAGE_VAR);
        assert_eq!(env[1], ("GREETING".to_string(), "hi".to_string()));
    }
}
