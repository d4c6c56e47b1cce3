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

mod adopt;
mod blocking;
mod budget;
mod config;
mod container;
mod context;
mod docker;
mod engine;
mod error;
mod files;
mod guard;
mod image;
pub mod labels;
mod naming;
mod network;
mod ports;
mod preflight;
mod resource;
pub mod session;
mod shared;
mod signals;
pub mod sweep;
mod volume;
mod wait;
mod watcher;

pub use budget::{Counts, TeardownReport};
pub use config::{KeepPolicy, PreflightPolicy, PullPolicy, DEFAULT_IMAGE};
pub use container::{ContainerGuard, ContainerSpec, ExecOutput, Logs};
pub use context::{ctx, TestContext};
pub use docker::{daemon_version, endpoint, host_address};
pub use engine::{engine, Engine};
pub use error::{CleanupFailure, Error, Result, WaitFailure};
pub use files::FileSource;
pub use image::{pull_records, reference as session_image_reference, session_image, PullRecord, SessionImage};
pub use network::{NetworkGuard, NetworkSpec};
pub use resource::{Kind, Resource};
pub use shared::{shared_container, SharedContainer};
pub use volume::{VolumeGuard, VolumeSpec};
pub use wait::{LogStream, WaitFor, DEFAULT_WAIT_TIMEOUT};

#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
