//! An independent ledger of what a test run created and destroyed, witnessed through
//! `docker events` rather than through the harness's own records.
//!
//! `ledger --state-dir DIR -- CMD ARGS...` subscribes to container, network, volume and
//! image events, runs CMD with `DOCKER_HARNESS_STATE_DIR=DIR`, and then checks, for the sessions
//! CMD ran (found under DIR), that everything created was destroyed and that the numbers
//! created match what the tests declared (`declared.jsonl`, written by `declare`, or by
//! `set_budget` for a test that declares nothing else). Any
//! difference fails: a leak, and also amplification (far more created than declared).
//!
//! Podman's Docker-compatible API names the end of a container or volume `remove` (Docker:
//! `destroy`), adds `init` and `cleanup` (not subscribed to), and sends no network events at
//! all: on Podman the network row says "not witnessed" rather than passing on silence.
//!
//! Docker has no build event: a built image is counted by its unique tag's `tag` event
//! (inspected then, for its session label) and its end by a `delete` or `untag` of its ID.
//! Its expected number is what the tests declared plus the session's once-per-session and
//! cached builds (`builds.jsonl`). Intermediate images make no event; the build step checks
//! the daemon's dangling images instead.
//!
//! The check waits (up to 20 s) for what is still in flight once CMD ends: the session's
//! watcher removes session-shared resources just after the runner exits.
//!
//! Docker 20.10 puts labels on container events but not on network and volume events, so
//! a network or volume is inspected the moment its create event arrives; one already gone
//! by then is attributed by the task ID its name carries.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bollard::models::EventMessageTypeEnum;
use bollard::query_parameters::{EventsOptions, InspectNetworkOptions};
use bollard::Docker;
use futures_util::StreamExt;

const SESSION: &str = "docker-harness.session";

#[derive(Debug, Clone)]
struct Seen {
    kind: &'static str,
    id: String,
    name: String,
    created: bool,
    /// Labels from the event (containers) or from an inspect at create time.
    labels: Option<HashMap<String, String>>,
}

fn usage() -> anyhow::Error {
    anyhow::anyhow!("usage: ledger --state-dir DIR -- CMD [ARGS...]")
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (state_dir, cmd) = match args.as_slice() {
        [flag, dir, sep, cmd @ ..] if flag == "--state-dir" && sep == "--" && !cmd.is_empty() => {
            (PathBuf::from(dir), cmd.to_vec())
        }
        _ => return Err(usage()),
    };
    std::fs::create_dir_all(&state_dir).with_context(|| format!("create {}", state_dir.display()))?;
    // Test processes run in their package's directory: a relative path would point elsewhere.
    let state_dir = state_dir.canonicalize()?;
    let docker = Docker::connect_with_defaults()?.negotiate_version().await.context("connect to Docker")?;

    let version = docker.version().await.context("read the daemon's version")?;
    let podman = version.components.iter().flatten().any(|c| c.name.to_ascii_lowercase().contains("podman"));
    if podman {
        println!("ledger: the daemon is Podman, which sends no network events: networks cannot be witnessed");
    }

    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let recorder = tokio::spawn(record(docker.clone(), seen.clone(), podman));
    // The subscription is live once the daemon has answered the request; give it a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let status = tokio::task::spawn_blocking(move || {
        Command::new(&cmd[0])
            .args(&cmd[1..])
            .env("DOCKER_HARNESS_STATE_DIR", &state_dir)
            .status()
            .map(|s| (s, state_dir))
    })
    .await??;
    let (status, state_dir) = status;
    // Late events (a removal confirmed just before exit, the watcher's removal of what the
    // session shared) are still in flight: wait until what was ours is balanced, or 20 s.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..74 {
        if balanced(&state_dir, &seen.lock().unwrap()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    recorder.abort();
    let seen = seen.lock().unwrap().clone();

    let ok = check(&state_dir, &seen, podman)?;
    if !status.success() {
        eprintln!("ledger: the command failed ({status})");
        return Ok(ExitCode::FAILURE);
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn record(docker: Docker, seen: Arc<Mutex<Vec<Seen>>>, podman: bool) {
    let mut ends = vec!["destroy".to_string(), "delete".to_string(), "untag".to_string()];
    if podman {
        ends.push("remove".to_string());
    }
    let types = ["container", "network", "volume", "image"].map(String::from).to_vec();
    let starts = vec!["create".to_string(), "tag".to_string()];
    let filters = HashMap::from([("type".to_string(), types), ("event".to_string(), [starts, ends].concat())]);
    let mut events = docker.events(Some(EventsOptions { filters: Some(filters), ..Default::default() }));
    while let Some(Ok(ev)) = events.next().await {
        let kind = match ev.typ {
            Some(EventMessageTypeEnum::CONTAINER) => "container",
            Some(EventMessageTypeEnum::NETWORK) => "network",
            Some(EventMessageTypeEnum::VOLUME) => "volume",
            Some(EventMessageTypeEnum::IMAGE) => "image",
            _ => continue,
        };
        let actor = ev.actor.unwrap_or_default();
        let attrs = actor.attributes.unwrap_or_default();
        // The classic builder runs each step in a container of the step before's image, by
        // ID and with a name of Docker's choosing; the last step's carries the build's
        // labels. No test declares those: they only have to go.
        let by_builder = kind == "container"
            && attrs.get("image").is_some_and(|i| i.starts_with("sha256:"))
            && !attrs.get("name").is_some_and(|n| n.starts_with("dh-"));
        let kind = if by_builder { BUILD_STEP } else { kind };
        let created = matches!(ev.action.as_deref(), Some("create" | "tag"));
        if kind == "image" && !matches!(ev.action.as_deref(), Some("tag" | "delete" | "untag" | "remove")) {
            continue;
        }
        // Podman's volume events carry the name but an empty ID; a volume's ID is its name.
        let id = actor.id.filter(|i| !i.is_empty()).or_else(|| attrs.get("name").cloned()).unwrap_or_default();
        let name = attrs.get("name").cloned().unwrap_or_else(|| id.clone());
        let index = {
            let mut s = seen.lock().unwrap();
            let labels = (kind == "container" || kind == BUILD_STEP).then(|| attrs.clone());
            s.push(Seen { kind, id: id.clone(), name, created, labels });
            s.len() - 1
        };
        if created && kind != "container" && kind != BUILD_STEP {
            let (docker, seen) = (docker.clone(), seen.clone());
            tokio::spawn(async move {
                let labels = match kind {
                    "network" => docker
                        .inspect_network(&id, None::<InspectNetworkOptions>)
                        .await
                        .ok()
                        .map(|n| n.labels.unwrap_or_default()),
                    "image" => docker.inspect_image(&id).await.ok().and_then(|i| i.config).and_then(|c| c.labels),
                    _ => docker.inspect_volume(&id).await.ok().map(|v| v.labels),
                };
                seen.lock().unwrap()[index].labels = labels;
            });
        }
    }
}

#[derive(Default)]
struct Row {
    expected: usize,
    created: usize,
    destroyed: usize,
}

const KINDS: [&str; 5] = ["container", "network", "volume", "image", BUILD_STEP];
/// A build's intermediate container: it must go, but no test declares it.
const BUILD_STEP: &str = "build step";

fn sessions_under(state_dir: &Path) -> HashSet<String> {
    std::fs::read_dir(state_dir.join("sessions"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// True when every resource of the sessions under `state_dir` that was seen made was also
/// seen going (by its session label; the name rule of `check` is for the final count).
fn balanced(state_dir: &Path, seen: &[Seen]) -> bool {
    let sessions = sessions_under(state_dir);
    let ours = |s: &Seen| s.labels.as_ref().and_then(|l| l.get(SESSION)).is_some_and(|v| sessions.contains(v));
    let gone: HashSet<(&str, &str)> = seen.iter().filter(|s| !s.created).map(|s| (s.kind, s.id.as_str())).collect();
    seen.iter().filter(|s| s.created && ours(s)).all(|s| gone.contains(&(s.kind, s.id.as_str())))
}

/// The session's own builds (once per session, or for the cache): no test declares them.
fn session_builds(state_dir: &Path, sessions: &HashSet<String>) -> usize {
    sessions
        .iter()
        .flat_map(|s| {
            let text = std::fs::read_to_string(state_dir.join("sessions").join(s).join("builds.jsonl"));
            text.unwrap_or_default().lines().map(str::to_string).collect::<Vec<_>>()
        })
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
        .filter(|v| v["scope"] != "test")
        .count()
}

fn check(state_dir: &Path, seen: &[Seen], podman: bool) -> anyhow::Result<bool> {
    let sessions = sessions_under(state_dir);
    let mut rows: HashMap<&str, Row> = KINDS.into_iter().map(|k| (k, Row::default())).collect();
    // Per task: what it declared, else its budget.
    let mut per_task: HashMap<String, (bool, [usize; 5])> = HashMap::new();
    for s in &sessions {
        let lines =
            std::fs::read_to_string(state_dir.join("sessions").join(s).join("declared.jsonl")).unwrap_or_default();
        for line in lines.lines() {
            let v: serde_json::Value = serde_json::from_str(line)?;
            let task = v["task"].as_str().unwrap_or("").to_string();
            let declared = v["what"] == "declared";
            let counts =
                ["containers", "networks", "volumes", "images", "-"].map(|k| v[k].as_u64().unwrap_or(0) as usize);
            let entry = per_task.entry(task).or_insert((declared, counts));
            if declared || !entry.0 {
                *entry = (declared, counts);
            }
        }
    }
    let mut short_tasks = HashSet::new();
    for (task, (_, counts)) in &per_task {
        for (kind, n) in KINDS.into_iter().zip(counts) {
            rows.get_mut(kind).unwrap().expected += n;
        }
        short_tasks.insert(task.chars().filter(char::is_ascii_alphanumeric).take(8).collect::<String>());
    }
    // A session label says whose it is. Without one (gone before it was inspected, or made
    // by a program that did not stamp the labels it was handed), the name tells: it starts
    // with a context's prefix, which ends in that context's short task ID.
    let named_for_a_task =
        |name: &str| short_tasks.iter().any(|t| name.contains(&format!("-{t}-")) || name.ends_with(&format!("-{t}")));
    let ours = |s: &Seen| {
        s.labels.as_ref().and_then(|l| l.get(SESSION)).is_some_and(|v| sessions.contains(v))
            || named_for_a_task(&s.name)
    };
    let created: HashSet<(&str, &str)> =
        seen.iter().filter(|s| s.created && ours(s)).map(|s| (s.kind, s.id.as_str())).collect();
    let mut destroyed = HashSet::new();
    for s in seen.iter().filter(|s| !s.created) {
        if created.contains(&(s.kind, s.id.as_str())) {
            destroyed.insert((s.kind, s.id.as_str()));
        }
    }
    for (kind, _) in &created {
        rows.get_mut(kind).unwrap().created += 1;
    }
    for (kind, _) in &destroyed {
        rows.get_mut(kind).unwrap().destroyed += 1;
    }

    rows.get_mut("image").unwrap().expected += session_builds(state_dir, &sessions);

    let mut ok = true;
    println!("ledger: {} session(s) under {}", sessions.len(), state_dir.display());
    println!("{:<10} {:>9} {:>8} {:>10} {:>5}", "kind", "expected", "created", "destroyed", "left");
    for kind in KINDS {
        let r = &rows[kind];
        if podman && kind == "network" {
            println!(
                "{kind:<10} {:>9} {:>8} {:>10} {:>5}  not witnessed (Podman sends no network events)",
                r.expected, "-", "-", "-"
            );
            continue;
        }
        let left = r.created - r.destroyed;
        let expected_ok = kind == BUILD_STEP || r.created == r.expected;
        let mark = if expected_ok && left == 0 { "" } else { "  <- mismatch" };
        ok &= mark.is_empty();
        let expected = if kind == BUILD_STEP { "-".to_string() } else { r.expected.to_string() };
        println!("{kind:<10} {expected:>9} {:>8} {:>10} {left:>5}{mark}", r.created, r.destroyed);
    }
    for s in seen.iter().filter(|s| s.created && ours(s) && !destroyed.contains(&(s.kind, s.id.as_str()))) {
        println!("  left: {} {}", s.kind, s.name);
    }
    if sessions.is_empty() {
        println!("ledger: no session ran under {}; nothing was witnessed", state_dir.display());
        ok = false;
    }
    Ok(ok)
}
