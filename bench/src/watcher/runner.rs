//! The runner: nextest's stand-in. It has to be a process of its own, a parent of the
//! holders that outlives them, for the harness to take it for the session's runner.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use bollard::query_parameters::{
    EventsOptions, InspectContainerOptions, InspectNetworkOptions, ListContainersOptions, ListNetworksOptions,
    ListVolumesOptions,
};
use bollard::Docker;
use docker_harness::labels;
use futures_util::StreamExt;
use serde_json::{json, Value};

use super::proc::{clk_tck, cpu_ns, cpu_ticks, read_record, same_process, status_kb};
use super::{HOLDER_FLAG, IDLE_WINDOW, POLL, READY_LIMIT, SETTLE, TRIALS, TRIAL_LIMIT};
use crate::progress;
use crate::raw::{self, Kind, Raw};

pub(crate) fn runner_main() -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let res = rt.block_on(runner());
    let line = match res {
        Ok(v) => v,
        Err(e) => json!({ "error": format!("{e:#}") }),
    };
    println!("{line}");
    Ok(())
}

pub(super) struct Holder {
    child: Child,
    pub(super) containers: Vec<String>,
    networks: Vec<String>,
    volumes: Vec<String>,
}

async fn runner() -> Result<Value> {
    let run_id = std::env::args().nth(2).context("the run ID")?;
    let sess = docker_harness::session::current()?;
    let session = sess.id().to_string();
    let sess_dir = sess.state_dir().to_path_buf();
    let docker = raw::connect().await?;
    let raw = Raw::new(docker.clone(), String::new(), run_id.clone(), session.clone());
    let exe = std::env::current_exe()?;

    // Docker's kill and destroy events, streamed live for the whole phase: the daemon keeps
    // only its last 256 events for a later `since` query, fewer than the trials make.
    let events = EventLog::start(&docker)?;
    let mut trials = Vec::new();
    for i in 0..TRIALS {
        let h = start_holder(&exe, &run_id, &session).await?;
        // Plus a random part of one watcher poll: without it each kill lands at the same
        // phase of the watcher's 250 ms cycle (which restarts when its previous sweep ends,
        // and a holder's setup takes about as long each time), and the poll wait, instead of
        // averaging 125 ms as for a test that dies at any moment, is the same every trial.
        let jitter = Duration::from_millis((uuid::Uuid::new_v4().as_u128() % 250) as u64);
        tokio::time::sleep(SETTLE + jitter).await;
        let t = trial(&docker, &raw, h).await?;
        progress(&format!(
            "6. trial {}/{TRIALS}: all 7 gone {:.0} ms after the SIGKILL",
            i + 1,
            t.0["kill_to_404_ms"].as_f64().unwrap_or(f64::NAN)
        ));
        trials.push(t);
    }
    // A destroy event can reach the stream a moment after the inspect that answers 404.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = events.stop();
    let trials: Vec<Value> = trials.into_iter().map(|(v, wall0, all)| with_events(v, wall0, &all, &events)).collect();

    // Idle: the session's runner (this process) lives, no test process does.
    let (pid, start) = read_record(&sess_dir).context("the session has no watcher.json")?;
    ensure!(same_process(pid, start), "the watcher (pid {pid}) is not running after the trials");
    let clk = clk_tck();
    let ticks0 = cpu_ticks(pid).context("read the watcher's CPU time")?;
    let ns0 = cpu_ns(pid);
    let t0 = Instant::now();
    let (mut rss_max, mut rss_samples) = (0u64, 0usize);
    while t0.elapsed() < IDLE_WINDOW {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(kb) = status_kb(pid, "VmRSS:") {
            rss_max = rss_max.max(kb);
            rss_samples += 1;
        }
    }
    let ticks1 = cpu_ticks(pid).context("read the watcher's CPU time")?;
    let ns1 = cpu_ns(pid);
    let window = t0.elapsed().as_secs_f64();
    let alive_after = same_process(pid, start);
    let hwm = status_kb(pid, "VmHWM:");
    let threads = status_kb(pid, "Threads:");

    // What one of the watcher's surveys costs, timed here with the same filters.
    let mut survey = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        survey_like_watcher(&docker, &session).await?;
        survey.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let crowd = super::crowd::run(&docker, &raw, &exe, (&run_id, &session), &sess_dir, pid).await?;
    Ok(json!({
        "trials": trials,
        "survey_ms": survey,
        "crowd": crowd,
        "watcher": {
            "pid": pid,
            "clk_tck": clk,
            "ticks_before_idle": ticks0,
            "idle_ticks": ticks1 - ticks0,
            "idle_cpu_ns": ns0.zip(ns1).map(|(a, b)| b.saturating_sub(a)),
            "idle_window_s": window,
            "vmrss_kb_max": rss_max,
            "rss_samples": rss_samples,
            "vmhwm_kb": hwm,
            "threads": threads,
            "alive_after_idle": alive_after,
        },
    }))
}

pub(super) async fn start_holder(exe: &Path, run_id: &str, session: &str) -> Result<Holder> {
    let mut child = Command::new(exe)
        .arg(HOLDER_FLAG)
        .arg(run_id)
        // The harness takes the nearest nextest-named ancestor for the session's runner,
        // else the parent: this process, as nextest is under nextest.
        .env("NEXTEST_RUN_ID", session)
        .env("DOCKER_HARNESS_SESSION", session)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("start a holder")?;
    let mut stderr = child.stderr.take().expect("piped");
    let err_text = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let stdout = child.stdout.take().expect("piped");
    let read = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = match tokio::time::timeout(READY_LIMIT, read).await {
        Ok(Ok(Ok(l))) if !l.trim().is_empty() => l,
        other => {
            let _ = child.kill();
            let _ = child.wait();
            let err = err_text.join().unwrap_or_default();
            bail!(
                "a holder did not get ready ({}): {}",
                match other {
                    Err(_) => format!("no ready line within {} s", READY_LIMIT.as_secs()),
                    _ => "it ended without a ready line".into(),
                },
                err.trim()
            );
        }
    };
    let v: Value = serde_json::from_str(line.trim()).context("the holder's ready line")?;
    let list = |k: &str| -> Vec<String> {
        v[k].as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
    };
    let h = Holder { child, containers: list("containers"), networks: list("networks"), volumes: list("volumes") };
    ensure!(h.containers.len() == 3 && h.networks.len() == 2 && h.volumes.len() == 2, "the holder reported {line}");
    Ok(h)
}

/// One trial's 404 timings, the kill's wall-clock time and the seven resources.
pub(super) type Trial = (Value, Duration, Vec<(Kind, String)>);

/// SIGKILLs the holder and times its resources' disappearance.
pub(super) async fn trial(docker: &Docker, raw: &Raw, mut h: Holder) -> Result<Trial> {
    let all: Vec<(Kind, String)> = h
        .containers
        .iter()
        .map(|id| (Kind::Container, id.clone()))
        .chain(h.networks.iter().map(|id| (Kind::Network, id.clone())))
        .chain(h.volumes.iter().map(|id| (Kind::Volume, id.clone())))
        .collect();
    let wall0 = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let t0 = Instant::now();
    h.child.kill().context("SIGKILL the holder")?;
    // Reaped at once, as nextest does; the harness counts a zombie as dead anyway.
    h.child.wait()?;
    let mut gone: Vec<Option<f64>> = vec![None; all.len()];
    while gone.iter().any(Option::is_none) && t0.elapsed() < TRIAL_LIMIT {
        let pending: Vec<usize> = (0..all.len()).filter(|&i| gone[i].is_none()).collect();
        let checks = pending.iter().map(|&i| {
            let (kind, id) = &all[i];
            async move { is_gone(docker, *kind, id).await.map(|x| x.then(|| t0.elapsed().as_secs_f64() * 1000.0)) }
        });
        let results = futures_util::future::join_all(checks).await;
        for (i, res) in pending.into_iter().zip(results) {
            if let Some(at) = res? {
                gone[i] = Some(at);
            }
        }
        if gone.iter().any(Option::is_none) {
            tokio::time::sleep(POLL).await;
        }
    }
    let all_gone = gone.iter().all(Option::is_some);
    if !all_gone {
        for ((kind, id), g) in all.iter().zip(&gone) {
            if g.is_none() {
                raw.remove_confirmed(*kind, id).await?;
            }
        }
    }
    let n_c = h.containers.len();
    let last = |v: &[Option<f64>]| {
        v.iter().copied().collect::<Option<Vec<f64>>>().and_then(|v| v.into_iter().reduce(f64::max))
    };
    let v = json!({
        "all_gone": all_gone,
        "kill_to_404_ms": if all_gone { last(&gone) } else { None },
        "containers_404_ms": last(&gone[..n_c]),
        "nv_404_ms": last(&gone[n_c..]),
    });
    Ok((v, wall0, all))
}

/// Adds to a trial when the watcher's removals reached the daemon, in ms after the kill.
fn with_events(
    mut v: Value,
    wall0: Duration,
    all: &[(Kind, String)],
    events: &HashMap<(String, String), f64>,
) -> Value {
    let at = |id: &str, action: &str| {
        events.get(&(id.to_string(), action.to_string())).map(|ns| (ns - wall0.as_nanos() as f64) / 1e6)
    };
    let max_of = |kind: Kind| {
        all.iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, id)| at(id, "destroy"))
            .collect::<Option<Vec<f64>>>()
            .and_then(|v| v.into_iter().reduce(f64::max))
    };
    let first = all.iter().flat_map(|(_, id)| [at(id, "kill"), at(id, "destroy")]).flatten().reduce(f64::min);
    v["first_event_ms"] = json!(first);
    v["containers_destroyed_ms"] = json!(max_of(Kind::Container));
    v["networks_destroyed_ms"] = json!(max_of(Kind::Network));
    v["volumes_destroyed_ms"] = json!(max_of(Kind::Volume));
    v
}

async fn is_gone(docker: &Docker, kind: Kind, id: &str) -> Result<bool> {
    let r = match kind {
        Kind::Container => docker.inspect_container(id, None::<InspectContainerOptions>).await.map(drop),
        Kind::Network => docker.inspect_network(id, None::<InspectNetworkOptions>).await.map(drop),
        Kind::Volume => docker.inspect_volume(id).await.map(drop),
    };
    match r {
        Ok(()) => Ok(false),
        Err(e) if raw::is_404(&e) => Ok(true),
        Err(e) => Err(e).with_context(|| format!("inspect {kind:?} {id}")),
    }
}

/// Container, network and volume `kill` and `destroy` events, as they happen: for each
/// actor ID and action, when it first happened, in ns since the epoch.
struct EventLog {
    seen: std::sync::Arc<std::sync::Mutex<HashMap<(String, String), f64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl EventLog {
    fn start(docker: &Docker) -> Result<EventLog> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
        let opts = EventsOptions {
            since: Some(format!("{}.{:09}", now.as_secs(), now.subsec_nanos())),
            until: None,
            filters: Some(HashMap::from([
                ("type".to_string(), vec!["container".into(), "network".into(), "volume".into()]),
                ("event".to_string(), vec!["kill".into(), "destroy".into()]),
            ])),
        };
        let mut stream = docker.events(Some(opts));
        let seen: std::sync::Arc<std::sync::Mutex<HashMap<(String, String), f64>>> = Default::default();
        let sink = seen.clone();
        let task = tokio::spawn(async move {
            while let Some(Ok(ev)) = stream.next().await {
                let (Some(action), Some(id), Some(t)) = (ev.action, ev.actor.and_then(|a| a.id), ev.time_nano) else {
                    continue;
                };
                if let Ok(mut m) = sink.lock() {
                    let ns = t as f64;
                    m.entry((id, action)).and_modify(|v: &mut f64| *v = v.min(ns)).or_insert(ns);
                }
            }
        });
        Ok(EventLog { seen, task })
    }

    fn stop(self) -> HashMap<(String, String), f64> {
        self.task.abort();
        self.seen.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// The three listings of one of the watcher's surveys: managed and this session, concurrently.
async fn survey_like_watcher(docker: &Docker, session: &str) -> Result<()> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{}=true", labels::MANAGED), format!("{}={session}", labels::SESSION)],
    )]);
    let (c, n, v) = tokio::join!(
        docker.list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters.clone()),
            ..Default::default()
        })),
        docker.list_networks(Some(ListNetworksOptions { filters: Some(filters.clone()) })),
        docker.list_volumes(Some(ListVolumesOptions { filters: Some(filters.clone()) })),
    );
    c?;
    n?;
    v?;
    Ok(())
}
