//! `make chaos`: random kills at scale. Each trial runs a random sample of the e2e suite
//! under nextest and kills tests at random moments (a slow-timeout profile drawn for the
//! trial, SIGTERM or SIGKILL from outside to tests, to nextest and to the watcher, or a
//! panic, exit or abort inside the chaos test), then asks the daemon itself what is left:
//! resources of dead owners after 2 s (and after 10 s when something was left at 2 s),
//! `dh-` names without the harness's label, the driver's canaries, and the host processes
//! the tests' programs left. One table at the end; anything left after 10 s fails.
//!
//! Every trial prints its seed: `chaos --trials 1 --seed SEED` (`CHAOS_SEED=SEED make chaos
//! TRIALS=1`) replays it.

mod daemon;
mod plan;
mod procs;
mod rng;
mod table;
mod trial;

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::Context;
use clap::Parser;

use plan::Plan;
use rng::Rng;

#[derive(Parser, Debug)]
#[command(about = "Random kills at scale: what the harness leaves when tests die at random moments")]
struct Args {
    /// How many trials to run.
    #[arg(long, default_value_t = 10)]
    trials: u32,
    /// The first trial's seed (the others follow from it); else `CHAOS_SEED`, else random.
    #[arg(long)]
    seed: Option<String>,
    /// Fewest and most tests a trial samples.
    #[arg(long, default_value_t = 3)]
    min_tests: usize,
    #[arg(long, default_value_t = 10)]
    max_tests: usize,
    /// nextest binaries never sampled (the special ones, space-separated).
    #[arg(long, default_value = "")]
    exclude_binaries: String,
    /// Tests never sampled, as substrings of their names (too slow for a trial).
    #[arg(long = "skip")]
    skip: Vec<String>,
    /// nextest's -j.
    #[arg(long, default_value_t = 8)]
    jobs: u32,
    /// The image of the driver's canary container; else `DOCKER_HARNESS_IMAGE`, else alpine.
    #[arg(long)]
    image: Option<String>,
}

fn parse_seed(s: &str) -> anyhow::Result<u64> {
    let t = s.trim();
    let v = match t.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse(),
    };
    v.map_err(|_| anyhow::anyhow!("CHAOS_SEED={s} is not a seed; help: give a number a trial printed, e.g. 0x1f2e3d"))
}

fn sh(cmd: &mut Command, what: &str) -> anyhow::Result<Vec<u8>> {
    let out = cmd.output().with_context(|| format!("run {what}"))?;
    anyhow::ensure!(out.status.success(), "{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(out.stdout)
}

/// Builds the suite once and lists it; returns the tests a trial may sample.
fn prepare(setup: &trial::Setup, args: &Args) -> anyhow::Result<Vec<(String, String)>> {
    let ws = &setup.workspace;
    let list = sh(
        Command::new("cargo").current_dir(ws).args(["nextest", "list", "-p", "e2e-tests", "--message-format", "json"]),
        "cargo nextest list",
    )?;
    let bins = sh(
        Command::new("cargo").current_dir(ws).args([
            "nextest",
            "list",
            "-p",
            "e2e-tests",
            "--list-type",
            "binaries-only",
            "--message-format",
            "json",
        ]),
        "cargo nextest list --list-type binaries-only",
    )?;
    std::fs::write(&setup.binaries, bins)?;
    let meta = sh(Command::new("cargo").current_dir(ws).args(["metadata", "--format-version", "1"]), "cargo metadata")?;
    std::fs::write(&setup.metadata, meta)?;
    let list: serde_json::Value = serde_json::from_slice(&list)?;
    let excluded: Vec<&str> = args.exclude_binaries.split_whitespace().chain(["chaos"]).collect();
    let mut pool = Vec::new();
    for suite in list["rust-suites"].as_object().into_iter().flat_map(|m| m.values()) {
        let bin = suite["binary-name"].as_str().unwrap_or_default();
        if excluded.contains(&bin) {
            continue;
        }
        for (name, case) in suite["testcases"].as_object().into_iter().flatten() {
            let ignored = case["ignored"].as_bool().unwrap_or(false);
            if !ignored && !args.skip.iter().any(|s| name.contains(s.as_str())) {
                pool.push((bin.to_string(), name.clone()));
            }
        }
    }
    pool.sort();
    anyhow::ensure!(!pool.is_empty(), "no test to sample; help: check --exclude-binaries and --skip");
    Ok(pool)
}

fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let seed = args.seed.clone().or_else(|| std::env::var("CHAOS_SEED").ok().filter(|s| !s.is_empty()));
    let image = args
        .image
        .clone()
        .or_else(|| std::env::var("DOCKER_HARNESS_IMAGE").ok())
        .unwrap_or_else(|| "alpine:3.19.1".into());
    let first = match &seed {
        Some(s) => parse_seed(s)?,
        None => {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos() as u64;
            t ^ u64::from(std::process::id()).rotate_left(32)
        }
    };
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize()?;
    let run = format!("{:08x}", Rng::new(first).next_u64() as u32);
    let dir = workspace.join("target/chaos").join(&run);
    std::fs::create_dir_all(&dir)?;
    let setup = trial::Setup {
        binaries: dir.join("binaries.json"),
        metadata: dir.join("cargo-metadata.json"),
        state: workspace.join("target/chaos/state"),
        workspace,
        dir,
        jobs: args.jobs,
    };
    eprintln!("chaos: building and listing the suite once");
    let pool = prepare(&setup, &args)?;
    eprintln!("chaos: run {run}: {} trials from seed {first:#x}, sampling {} tests", args.trials, pool.len());
    let rt = tokio::runtime::Runtime::new()?;
    let d = rt.block_on(async { bollard::Docker::connect_with_defaults()?.negotiate_version().await })?;
    let place = daemon::place()?;
    // A run killed midway left its canaries: they go now, before this run makes its own.
    for gone in rt.block_on(daemon::Canaries::remove_stale(&d, &place))? {
        eprintln!("chaos: removed an earlier run's canary {gone}");
    }
    let canaries = rt.block_on(daemon::Canaries::create(&d, &run, &image, &place))?;
    let result = trials(&rt, &d, &setup, &args, &pool, first, &run, &place, &canaries);
    rt.block_on(canaries.remove(&d));
    let mut tally = result?;
    tally.watchers_left = rt.block_on(table::wait_for_watchers(&run));
    tally.print();
    Ok(if tally.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[allow(clippy::too_many_arguments)]
fn trials(
    rt: &tokio::runtime::Runtime,
    d: &bollard::Docker,
    setup: &trial::Setup,
    args: &Args,
    pool: &[(String, String)],
    first: u64,
    run: &str,
    place: &str,
    canaries: &daemon::Canaries,
) -> anyhow::Result<table::Tally> {
    let started = Instant::now();
    let mut seeds = Rng::new(first);
    let mut tally = table::Tally::default();
    for i in 1..=args.trials {
        let seed = if i == 1 { first } else { seeds.next_u64() };
        let plan = Plan::draw(seed, pool, args.min_tests, args.max_tests);
        eprintln!("chaos: trial {i}/{} seed {seed:#x}: {}", args.trials, plan.describe());
        let token = format!("{run}-{i}");
        let unlabelled_before = daemon::unlabelled(&rt.block_on(daemon::all(d))?);
        let done = trial::run(setup, &plan, &token)?;
        let left = rt.block_on(table::measure(d, &done, &token, place, canaries, &unlabelled_before))?;
        tally.add(i, seed, &done, &left);
    }
    tally.wall = started.elapsed();
    Ok(tally)
}
