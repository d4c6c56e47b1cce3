use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use bollard::query_parameters::{EventsOptions, RemoveImageOptions, TagImageOptions};
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::stats::{Op, Report, Samples};
use crate::{out_path, progress, Bench};

pub(crate) const CHILD_FLAG: &str = "--child-session-image";
const CHILD_START_AT: &str = "BENCH_CHILD_START_AT_MS";
const PULL_PROCESSES: usize = 8;

/// 4. Pulls per session: many processes of one session, a cold image cache, one pull.
pub(crate) async fn phase(b: &Bench, r: &mut Report) -> Result<()> {
    r.section(&format!("4. pulls per session: {PULL_PROCESSES} processes of one session call session_image() at once, image tag removed first"));
    let docker = &b.raw.docker;
    let skip = |r: &mut Report, why: String| {
        r.line(format!("  skipped: {why}"));
        r.notes.push(format!("4. pulls per session skipped: {why}"));
        Ok(())
    };
    let mirror = std::env::var("DOCKER_HARNESS_REGISTRY_MIRROR").ok().filter(|m| !m.is_empty());
    let Some(mirror) = mirror.filter(|_| b.image.starts_with("docker-harness-standin:")) else {
        return skip(r, format!("the session image is {}, not the offline stand-in served by a mirror, so it is not the bench's to remove", b.image));
    };
    let (repo, tag) = b.image.rsplit_once(':').context("the session image has a tag")?;
    if !mirror_serves(&mirror, repo, tag).await {
        return skip(r, format!("the mirror {mirror} does not serve library/{}", b.image));
    }
    let Some(before) = docker.inspect_image(&b.image).await.ok().and_then(|i| i.id) else {
        return skip(r, format!("{} is not present to begin with", b.image));
    };
    // The daemon is shared and the loopback registry is too: the run that started it stops
    // it when that run ends, perhaps in the middle of this one. So the image stays under a
    // tag of the bench's own while the session's tag is away, and can always be put back
    // without a registry. The children still have to pull (the harness looks the session
    // tag up), but only the manifest and config travel: the layers are present.
    let backup = format!("docker-harness-bench-keep:{}", b.run_id);
    let (brepo, btag) = backup.rsplit_once(':').expect("a literal tag");
    docker
        .tag_image(&b.image, Some(TagImageOptions { repo: Some(brepo.into()), tag: Some(btag.into()) }))
        .await
        .context("keep the session image under the bench's tag")?;
    let untag = RemoveImageOptions { force: false, noprune: true, ..Default::default() };
    let outcome = match docker.remove_image(&b.image, Some(untag.clone()), None).await {
        Ok(_) => pulls_measured(b, r, &format!("{mirror}/library/{}", b.image)).await,
        Err(e) => Err(e).context("untag the session image"),
    };
    if outcome.is_ok() && !mirror_serves(&mirror, repo, tag).await {
        r.notes.push(format!("4. the mirror {mirror} stopped answering during the phase (the run that started the loopback registry may have ended)"));
    }
    // Whatever happened, the session tag comes back before the bench's own tag goes.
    if docker.inspect_image(&b.image).await.is_err() {
        docker
            .tag_image(&backup, Some(TagImageOptions { repo: Some(repo.into()), tag: Some(tag.into()) }))
            .await
            .context("put the session image back")?;
        r.notes.push(format!("4. {} was put back from the bench's own tag: the children did not pull it", b.image));
    }
    docker.remove_image(&backup, Some(untag), None).await.context("remove the bench's own tag")?;
    let now = docker.inspect_image(&b.image).await.ok().and_then(|i| i.id);
    if now.as_deref() != Some(before.as_str()) {
        r.notes.push(format!("4. {} is now {now:?}; before the bench it was {before}", b.image));
    }
    outcome
}

/// Whether the registry at `mirror` answers 200 for the manifest, asked over plain HTTP as
/// scripts/lib.sh does.
async fn mirror_serves(mirror: &str, repo: &str, tag: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ask = async {
        let mut conn = tokio::net::TcpStream::connect(mirror).await?;
        let req = format!(
            "HEAD /v2/library/{repo}/manifests/{tag} HTTP/1.0\r\nHost: {mirror}\r\nAccept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json\r\n\r\n"
        );
        conn.write_all(req.as_bytes()).await?;
        let mut head = vec![0u8; 64];
        let n = conn.read(&mut head).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&head[..n]).split_whitespace().nth(1) == Some("200"))
    };
    matches!(tokio::time::timeout(Duration::from_secs(5), ask).await, Ok(Ok(true)))
}

async fn pulls_measured(b: &Bench, r: &mut Report, source: &str) -> Result<()> {
    let docker = &b.raw.docker;
    let since = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let events: Arc<Mutex<Vec<String>>> = Arc::default();
    let opts = EventsOptions {
        // From before the children start, so a pull is seen even if the stream connects late.
        since: Some(format!("{}.{:09}", since.as_secs(), since.subsec_nanos())),
        until: None,
        filters: Some(HashMap::from([
            ("type".to_string(), vec!["image".to_string()]),
            ("event".to_string(), vec!["pull".to_string()]),
        ])),
    };
    let mut stream = docker.events(Some(opts));
    let sink = events.clone();
    let watcher = tokio::spawn(async move {
        while let Some(Ok(ev)) = stream.next().await {
            if ev.action.as_deref() == Some("pull") {
                let id = ev.actor.and_then(|a| a.id).unwrap_or_default();
                if let Ok(mut v) = sink.lock() {
                    v.push(id);
                }
            }
        }
    });

    let session = format!("bench-pulls-{}", b.run_id);
    let state_root = out_path().with_file_name(format!("state-{}", b.run_id));
    std::fs::create_dir_all(&state_root)?;
    let start_at = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() + 500;
    let exe = crate::own_exe()?;
    progress(&format!("4. pulls per session: {PULL_PROCESSES} child processes, session {session}"));
    let t = Instant::now();
    let mut children = Vec::new();
    for _ in 0..PULL_PROCESSES {
        let child = Command::new(&exe)
            .arg(CHILD_FLAG)
            .env("DOCKER_HARNESS_SESSION", &session)
            .env("DOCKER_HARNESS_STATE_DIR", &state_root)
            .env(CHILD_START_AT, start_at.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("start a child process")?;
        children.push(tokio::task::spawn_blocking(move || child.wait_with_output()));
    }
    let mut outs = Vec::new();
    for c in children {
        outs.push(c.await??);
    }
    let wall = t.elapsed();
    // Events reach the stream a moment after the call that caused them returns.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    watcher.abort();
    let seen = events.lock().map(|v| v.clone()).unwrap_or_default();
    let records = docker_harness::pull_records(&state_root.join("sessions").join(&session));
    let _ = std::fs::remove_dir_all(&state_root);

    let mut ok = 0;
    let (mut began, mut took) = (Vec::new(), Samples::default());
    for o in &outs {
        let line = String::from_utf8_lossy(&o.stdout);
        let v: Value = serde_json::from_str(line.trim()).unwrap_or(Value::Null);
        if v["ok"] == json!(true) {
            ok += 1;
        } else {
            let err = v["error"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&o.stderr).trim().to_string());
            r.notes.push(format!("4. a child process failed: {err}"));
        }
        if let Some(x) = v["began_ms"].as_u64() {
            began.push(x);
        }
        if let Some(x) = v["took_ms"].as_f64() {
            took.0.push(x);
        }
    }
    let spread = began.iter().max().zip(began.iter().min()).map(|(a, b)| a - b).unwrap_or(0);
    let ours = seen.iter().filter(|id| id.as_str() == source || id.contains("docker-harness-standin")).count();
    let others = seen.len() - ours;

    let v_ev = r.figure(
        "pulls.events",
        "pulls of the session image seen in docker events while the children ran",
        "pulls",
        PULL_PROCESSES,
        ours as f64,
        Some((Op::Exactly, 1.0)),
    );
    let v_rec = r.figure(
        "pulls.records",
        "pulls in the session's record (pull_records)",
        "pulls",
        PULL_PROCESSES,
        records.len() as f64,
        Some((Op::Exactly, 1.0)),
    );
    r.figure(
        "pulls.children_ok",
        "child processes whose session_image() succeeded",
        "processes",
        PULL_PROCESSES,
        ok as f64,
        Some((Op::Exactly, PULL_PROCESSES as f64)),
    );
    r.figure("pulls.start_spread", "spread of the children's start instants", "ms", began.len(), spread as f64, None);
    r.figure(
        "pulls.wall",
        "from starting the children to the last one exiting (includes a 500 ms start barrier)",
        "ms",
        PULL_PROCESSES,
        wall.as_secs_f64() * 1000.0,
        None,
    );
    r.series("pulls.session_image_ms", &took);
    r.figure(
        "pulls.session_image.max",
        "slowest session_image() call among the children",
        "ms",
        took.len(),
        took.max(),
        None,
    );
    r.line(format!("{:<48}{:>6}   {v_ev}", "pulls seen in docker events (type=image, pull)", ours));
    r.line(format!("{:<48}{:>6}   {v_rec}", "pulls in the session's pull record", records.len()));
    r.line(format!("{:<48}{:>6}", "children that got the image", format!("{ok}/{PULL_PROCESSES}")));
    r.line(format!("{:<48}{:>6}", "children started within, ms", spread));
    r.line(format!("{:<48}{:>6.0}", "slowest session_image() in a child, ms", took.max()));
    if let Some(rec) = records.first() {
        r.line(format!(
            "  the one pull: {} from {} in {} ms by pid {}",
            rec.image, rec.source, rec.duration_ms, rec.pid
        ));
    }
    if others > 0 {
        r.notes.push(format!(
            "4. {others} pull event(s) of other images happened meanwhile (another user of the daemon); not counted"
        ));
    }
    Ok(())
}

/// Child mode: wait for the common start instant, resolve the session image once, print
/// one JSON line. Nothing else: the parent counts.
pub(crate) fn child_main() -> Result<()> {
    let start_at: u128 = std::env::var(CHILD_START_AT).context(CHILD_START_AT)?.parse()?;
    let now = || SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    if let Some(wait) = start_at.checked_sub(now()) {
        std::thread::sleep(Duration::from_millis(wait as u64));
    }
    let began = now();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let t = Instant::now();
    let res = rt.block_on(docker_harness::session_image());
    let took = t.elapsed().as_secs_f64() * 1000.0;
    let line = match res {
        Ok(img) => {
            json!({ "ok": true, "began_ms": began, "took_ms": took, "reference": img.reference, "id": img.id })
        }
        Err(e) => {
            json!({ "ok": false, "began_ms": began, "took_ms": took, "error": e.to_string() })
        }
    };
    println!("{line}");
    Ok(())
}
