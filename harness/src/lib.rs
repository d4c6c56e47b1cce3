//! docker-harness: every test's Docker world is its own, and nothing is left behind,
//! whatever ends the test.
//!
//! A [`TestContext`] names and labels everything a test creates; guards remove each
//! resource when they drop; the context removes whatever is left (containers, then
//! networks and volumes, each confirmed gone); SIGTERM and SIGINT clean up before the
//! process exits; and the once-per-session pre-test check removes what a SIGKILL left.
//!
//! ```no_run
//! use docker_harness::{ContainerSpec, TestContext};
//!
//! #[tokio::test]
//! async fn greets() -> anyhow::Result<()> {
//!     let ctx = TestContext::new()?;
//!     // On `Err` as on a panic, the test's containers show their last log lines on stderr.
//!     ctx.run(async {
//!         let c = ctx.container(ContainerSpec::new("app").with_cmd(["sleep", "3600"])).await?;
//!         let out = c.exec(["echo", "hi"]).await?;
//!         assert_eq!(out.stdout, "hi\n");
//!         Ok(())
//!     })
//!     .await
//! }
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

// The modules in layers, lowest first: each imports only modules listed before it (the
// README's "Layout" section draws the same picture; `scripts/check-layers.py`, part of
// `make lint`, holds the code to it).
//
// 1. ground: plain data, errors, names, the harness runtime, environment switches, the
//    creation gate.
mod resource;
mod budget;
mod error;
mod naming;
mod blocking;
mod config;
mod gate;
// 2. host and daemon: owners and liveness, labels, the docker CLI's configuration (contexts,
//    credentials), finding the daemon and the client, the engine's differences,
//    which calls are tried again, removal and listing, adoption by identity, the session.
mod owner;
pub mod labels;
mod dockercfg;
mod docker;
mod engine;
mod retry;
pub mod session;
mod built;
mod removal;
mod adopt;
// 3. a test's scope, what is done with its containers before they go, and the part every
//    guard shares.
mod farewell;
mod scope;
mod guard;
// 4. resources (a compose file's project among them).
mod network;
mod volume;
mod image;
mod container;
mod seed;
mod compose;
// 5. above: sweeps, signals, the watcher, shared containers, the context, the hook.
pub mod sweep;
mod signals;
mod watcher;
mod shared;
mod context;
#[cfg(feature = "rstest")]
mod fixture;
mod preflight;

pub use blocking::block_on;
/// The bollard the harness speaks, for the types its escape hatch
/// ([`ContainerSpec::with_create_body`]) and [`Container::inspect`] use, at the same version.
pub use bollard;
pub use budget::{Counts, TeardownReport};
pub use compose::{ComposeGuard, ComposeSpec};
pub use config::{KeepPolicy, DEFAULT_IMAGE};
pub use container::{
    Container, ContainerGuard, ContainerSpec, ExecOutput, ExecSpec, FileSource, LogLine, LogStream, Logs, WaitFor,
    DEFAULT_WAIT_TIMEOUT,
};
pub use context::TestContext;
pub use docker::{daemon_version, endpoint, host_address};
pub use engine::{engine, Engine};
pub use error::{CleanupFailure, ComposeError, DaemonError, Error, Result, WaitFailure};
#[cfg(feature = "rstest")]
pub use fixture::ctx;
pub use image::build::{build_records, BuildRecord, BuildSpec, BuiltImage, ImageGuard, CONTENT_HASH};
pub use image::{pull_records, reference as session_image_reference, session_image, PullRecord, SessionImage};
pub use network::{NetworkGuard, NetworkSpec};
pub use resource::{Kind, Resource};
pub use shared::{session_build, shared_container, SharedContainer};
pub use volume::{VolumeGuard, VolumeSpec};

#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
