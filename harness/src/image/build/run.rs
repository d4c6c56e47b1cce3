//! One build on the daemon: the classic builder, `forcerm` so that intermediate containers
//! go even when a step fails, every image and container it made recorded as it goes (a
//! build cut off half-way leaves a record for whoever cleans up), progress on stderr at
//! most once a second once it has taken a second, and on failure everything it made
//! removed and one error naming the step, with the build's last lines.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::query_parameters::{BuildImageOptions, RemoveImageOptions};
use bollard::Docker;
use futures_util::StreamExt;

use super::output::Progress;
use crate::built::{self, Made};
use crate::error::{Error, Result};
use crate::resource::Kind;
use crate::{gate, removal};

/// What one build asks of the daemon.
pub(crate) struct Request<'a> {
    pub(crate) logical: &'a str,
    pub(crate) tag: &'a str,
    pub(crate) tar: Vec<u8>,
    pub(crate) dockerfile: &'a str,
    pub(crate) args: HashMap<String, String>,
    pub(crate) target: Option<&'a str>,
    pub(crate) labels: HashMap<String, String>,
}

/// Builds, and returns the image ID and what the build made besides the tagged image.
pub(crate) async fn build(docker: &Docker, req: Request<'_>) -> Result<(String, Made)> {
    let _pass = gate::enter(&format!("build image {}", req.tag))?;
    let opts = BuildImageOptions {
        dockerfile: req.dockerfile.to_string(),
        t: Some(req.tag.to_string()),
        rm: true,
        forcerm: true,
        buildargs: Some(req.args),
        labels: Some(req.labels),
        target: req.target.unwrap_or_default().to_string(),
        ..Default::default()
    };
    let mut made = Made { tag: req.tag.to_string(), ..Default::default() };
    built::record(&made)?;
    let mut stream = docker.build_image(opts, None, Some(bollard::body_full(req.tar.into())));
    let mut p = Progress::default();
    let started = Instant::now();
    let mut last_print = started;
    let mut failure: Option<String> = None;
    while let Some(item) = stream.next().await {
        let info = match item {
            Ok(i) => i,
            Err(e) => {
                failure = Some(match e {
                    bollard::errors::Error::DockerStreamError { error } => error,
                    other => other.to_string(),
                });
                break;
            }
        };
        if let Some(text) = &info.stream {
            if p.feed(text) {
                made.images.clone_from(&p.images);
                made.containers.clone_from(&p.containers);
                let _ = built::record(&made);
            }
        }
        if let Some(msg) = info.error_detail.and_then(|d| d.message) {
            failure = Some(msg);
            break;
        }
        let now = Instant::now();
        if now.duration_since(started) >= Duration::from_secs(1)
            && now.duration_since(last_print) >= Duration::from_secs(1)
        {
            last_print = now;
            if let Some(step) = &p.step {
                eprintln!(
                    "docker-harness: building {} ({:.0} s): {step}",
                    req.logical,
                    started.elapsed().as_secs_f64()
                );
            }
        }
    }
    made.images.clone_from(&p.images);
    made.containers.clone_from(&p.containers);
    if let Some(message) = failure {
        undo(docker, &made).await;
        return Err(Error::BuildFailed {
            logical: req.logical.to_string(),
            step: p.step.clone().unwrap_or_else(|| "the start (before any step)".to_string()),
            message: message.trim().to_string(),
            tail: p.tail(),
        });
    }
    let id = match crate::retry::bounded(docker.inspect_image(req.tag)).await {
        Ok(i) => i.id.unwrap_or_default(),
        Err(e) => {
            undo(docker, &made).await;
            return Err(Error::docker(format!("inspect image {} after building it", req.tag), e));
        }
    };
    // The tagged image is the tag's; the record keeps what goes with it.
    made.images.retain(|i| !id.trim_start_matches("sha256:").starts_with(i.trim_start_matches("sha256:")));
    built::record(&made)?;
    Ok((id, made))
}

/// Removes what a failed build made, newest first, and forgets it.
async fn undo(docker: &Docker, made: &Made) {
    for c in &made.containers {
        let _ = removal::remove(docker, Kind::Container, c, c).await;
    }
    let opts = RemoveImageOptions { force: false, noprune: true, ..Default::default() };
    for image in made.images.iter().rev() {
        let _ = crate::retry::bounded(docker.remove_image(image, Some(opts.clone()), None)).await;
    }
    built::forget(&made.tag);
}
