//! `docker-harness`: look at and clean up what test runs left on the daemon. Only resources
//! labelled `docker-harness.managed=true` are ever listed or removed.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use docker_harness::labels::{self, Verdict};
use docker_harness::sweep::{self, Leftover};

#[derive(Parser)]
#[command(name = "docker-harness", version, about = "Inspect and remove what docker-harness test runs left behind")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A table of harness resources by session, test and owner liveness.
    Status,
    /// Remove orphans now: resources whose owner process is gone (or, from another host, expired).
    Reap,
    /// Remove harness resources whatever their owner. Pick one scope.
    Clean {
        /// Everything of one session.
        #[arg(long, value_name = "ID")]
        session: Option<String>,
        /// Everything of one test context (its task ID).
        #[arg(long, value_name = "ID")]
        task: Option<String>,
        /// Everything kept for debugging.
        #[arg(long)]
        kept: bool,
        /// Every resource with the managed label.
        #[arg(long)]
        all: bool,
    },
    /// Exit non-zero, listing them, if any resource of the session remains.
    Audit {
        /// The session's ID (NEXTEST_RUN_ID of the run).
        #[arg(long, value_name = "ID")]
        session: String,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("docker-harness: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Status => {
            print_table(&sweep::survey().await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Reap => {
            let report = sweep::reap().await?;
            for r in &report.removed {
                println!("removed {r}");
            }
            for f in &report.failed {
                eprintln!("could not remove {} {}: {}", f.kind, f.name, f.error);
            }
            println!("{}", report.summary());
            Ok(if report.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Clean { session, task, kept, all } => {
            let filter = match (session, task, kept, all) {
                (Some(s), None, false, false) => vec![format!("{}={s}", labels::SESSION)],
                (None, Some(t), false, false) => vec![format!("{}={t}", labels::TASK)],
                (None, None, true, false) => vec![labels::KEEP_UNTIL.to_string()],
                (None, None, false, true) => vec![],
                _ => anyhow::bail!("give exactly one of --session ID, --task ID, --kept or --all"),
            };
            let (removed, failed) = sweep::clean(filter).await?;
            for r in &removed {
                println!("removed {r}");
            }
            for f in &failed {
                eprintln!("could not remove {} {}: {}", f.kind, f.name, f.error);
            }
            println!("removed {} resource(s), {} failed", removed.len(), failed.len());
            Ok(if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Audit { session } => {
            let left: Vec<Leftover> = sweep::survey()
                .await?
                .into_iter()
                .filter(|l| l.resource.labels.get(labels::SESSION) == Some(&session))
                .collect();
            if left.is_empty() {
                println!("session {session}: nothing left");
                Ok(ExitCode::SUCCESS)
            } else {
                println!("session {session}: {} resource(s) left", left.len());
                print_table(&left);
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

fn print_table(rows: &[Leftover]) {
    if rows.is_empty() {
        println!("no docker-harness resources on this daemon");
        return;
    }
    let mut rows: Vec<&Leftover> = rows.iter().collect();
    let get = |l: &Leftover, k: &str| l.resource.labels.get(k).cloned().unwrap_or_else(|| "-".into());
    rows.sort_by_key(|l| (get(l, labels::SESSION), get(l, labels::TEST), l.resource.kind));
    println!("{:<9} {:<10} {:<44} {:<38} {:<30} OWNER", "KIND", "STATE", "NAME", "SESSION", "TEST");
    for l in rows {
        let state = match l.verdict {
            Verdict::Owned => "live",
            Verdict::Kept => "kept",
            Verdict::Orphan => "orphan",
        };
        println!(
            "{:<9} {:<10} {:<44} {:<38} {:<30} {}",
            l.resource.kind.as_str(),
            state,
            l.resource.name,
            get(l, labels::SESSION),
            get(l, labels::TEST),
            get(l, labels::OWNER)
        );
    }
}
