//! docker-harness: every test's Docker world is its own, and nothing is left behind,
//! whatever ends the test.
//!
//! A [`TestContext`] names and labels everything a test creates; guards remove each
//! resource when they drop; the context removes whatever is left (containers, then
//! networks, then volumes, each confirmed gone); SIGTERM and SIGINT clean up before the
//! process exits; and the once-per-session pre-test check removes what a SIGKILL left.
//!
//! ```no_run
//! use docker_harness::{ContainerSpec, TestContext};
//!
//! #[tokio::test]
//! async fn greets() -> anyhow::Result<()> {
//!     let ctx = TestContext::new()?;
//!     let c = ctx.container(ContainerSpec::new("app").with_cmd(["sleep", "3600"])).await?;
//!     let out = c.exec(["echo", "hi"]).await?;
//!     assert_eq!(out.stdout, "hi\n");
//!     Ok(())
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
//    removal and listing, adoption by identity, the session.
mod owner;
pub mod labels;
mod dockercfg;
mod docker;
mod engine;
mod removal;
pub mod session;
mod adopt;
// 3. a test's scope and the part every guard shares.
mod scope;
mod guard;
// 4. resources.
mod network;
mod volume;
mod container;
mod seed;
mod image;
// 5. above: sweeps, signals, the watcher, shared containers, the context, the hook.
pub mod sweep;
mod signals;
mod watcher;
mod shared;
mod context;
#[cfg(feature = "rstest")]
mod fixture;
mod preflight;

pub use budget::{Counts, TeardownReport};
pub use config::{KeepPolicy, DEFAULT_IMAGE};
pub use container::{
    Container, ContainerGuard, ContainerSpec, ExecOutput, FileSource, LogStream, Logs, WaitFor, DEFAULT_WAIT_TIMEOUT,
};
pub use context::TestContext;
pub use docker::{daemon_version, endpoint, host_address};
pub use engine::{engine, Engine};
pub use error::{CleanupFailure, Error, Result, WaitFailure};
#[cfg(feature = "rstest")]
pub use fixture::ctx;
pub use image::{pull_records, reference as session_image_reference, session_image, PullRecord, SessionImage};
pub use network::{NetworkGuard, NetworkSpec};
pub use resource::{Kind, Resource};
pub use shared::{shared_container, SharedContainer};
pub use volume::{VolumeGuard, VolumeSpec};

#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
