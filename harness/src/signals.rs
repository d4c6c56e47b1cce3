//! SIGTERM and SIGINT: remove this process's resources, then exit with the conventional
//! status (128 + the signal's number). nextest's `terminate-after` and a forwarded Ctrl-C
//! both arrive this way; SIGKILL cannot be caught and is left to the next sweep.

use std::time::Duration;

use once_cell::sync::OnceCell;

use crate::config::{settings, KeepPolicy};
use crate::error::Error;
use crate::owner::Owner;
use crate::{adopt, blocking, docker, gate, labels, removal, session};

/// The whole of the signal cleanup must fit well inside nextest's grace period.
const LIMIT: Duration = Duration::from_secs(5);

static INSTALLED: OnceCell<()> = OnceCell::new();

/// Installs the handlers once per process. Cheap after the first call.
pub(crate) fn install() {
    INSTALLED.get_or_init(|| {
        let _enter = blocking::handle().enter();
        match arrival() {
            Ok(signal) => {
                blocking::handle().spawn(async move {
                    let code = signal.await;
                    cleanup_own().await;
                    std::process::exit(code);
                });
            }
            Err(e) => eprintln!(
                "docker-harness: cannot listen for SIGTERM/SIGINT ({e}); a killed test leaves its resources to the next sweep"
            ),
        }
    });
}

/// The first of SIGTERM or SIGINT to arrive, as the exit status it calls for.
#[cfg(unix)]
fn arrival() -> std::io::Result<impl std::future::Future<Output = i32>> {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?);
    Ok(async move {
        tokio::select! {
            _ = term.recv() => 143,
            _ = int.recv() => 130,
        }
    })
}

/// Windows has no SIGTERM: Ctrl-C (and Ctrl-Break) is what a runner sends. Not built here.
#[cfg(not(unix))]
fn arrival() -> std::io::Result<impl std::future::Future<Output = i32>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        130
    })
}

/// How long the creates already sent may take to answer before the cleanup lists what
/// this process made.
const IN_FLIGHT_LIMIT: Duration = Duration::from_secs(2);

/// Stops creating, waits for the creates in flight, then removes everything this process
/// owns (found by its owner label) and everything adopted under its contexts' identities
/// (their task label or exact prefix), in dependency order.
async fn cleanup_own() {
    let late = gate::close(IN_FLIGHT_LIMIT).await;
    if late > 0 {
        eprintln!("docker-harness: interrupted; {late} create(s) did not answer within {IN_FLIGHT_LIMIT:?}");
    }
    if settings().map(|s| s.keep != KeepPolicy::Never).unwrap_or(false) {
        eprintln!("docker-harness: interrupted; keeping this process's resources (DOCKER_HARNESS_KEEP)");
        return;
    }
    let work = async {
        let docker = docker::client().await?;
        let filters = [format!("{}=true", labels::MANAGED), format!("{}={}", labels::OWNER, Owner::current())];
        let mine: Vec<_> = removal::list_labelled(&docker, &filters)
            .await?
            .into_iter()
            .filter(|r| !r.labels.contains_key(labels::SHARED))
            // Inside a keep window (a context that keeps, the build cache): kept on purpose.
            .filter(|r| {
                let until = r.labels.get(labels::KEEP_UNTIL).and_then(|v| v.parse::<u64>().ok());
                until.is_none_or(|t| labels::unix_now() >= t)
            })
            .collect();
        let failed = removal::remove_in_order(&docker, &mine).await;
        for f in &failed {
            eprintln!("docker-harness: interrupted; could not remove {} {}: {}", f.kind, f.name, f.error);
        }
        let me = Owner::current();
        let contexts = adopt::records(session::current()?.state_dir(), |o| o == me);
        let adopted = adopt::adopt_recorded(&docker, contexts).await?;
        eprintln!(
            "docker-harness: interrupted; removed {} resource(s) of this process and adopted {}",
            mine.len() - failed.len(),
            adopted.len()
        );
        Ok::<(), Error>(())
    };
    match tokio::time::timeout(LIMIT, work).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("docker-harness: interrupted; cleanup failed: {e}"),
        Err(_) => {
            eprintln!("docker-harness: interrupted; cleanup took over {LIMIT:?}; the next sweep removes the rest");
        }
    }
}
