//! The part every resource guard shares: remove on Drop (best effort, bounded, never
//! panics), or on an explicit `remove().await` that returns the error and disarms Drop.

use std::sync::Arc;
use std::time::Duration;

use crate::context::Inner;
use crate::error::Result;
use crate::resource::{self, Resource};
use crate::{blocking, docker};

/// How long one guard's Drop may wait for its resource to be removed.
const DROP_LIMIT: Duration = Duration::from_secs(15);

pub(crate) struct Armed {
    pub(crate) res: Resource,
    pub(crate) ctx: Arc<Inner>,
    armed: bool,
}

impl Armed {
    pub(crate) fn new(res: Resource, ctx: Arc<Inner>) -> Armed {
        ctx.track(res.clone());
        Armed { res, ctx, armed: true }
    }

    /// Removes the resource now and tells its context it is gone.
    pub(crate) async fn remove(&mut self) -> Result<()> {
        let (res, ctx) = (self.res.clone(), self.ctx.clone());
        blocking::run(remove_and_untrack(res, ctx)).await?;
        self.armed = false;
        Ok(())
    }

    /// Leaves the resource to its context (which still removes it at teardown).
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }

    /// Leaves the resource on the daemon: neither this guard nor its context removes it.
    pub(crate) fn keep(&mut self) {
        self.armed = false;
        self.ctx.untrack(&self.res.id);
    }
}

async fn remove_and_untrack(res: Resource, ctx: Arc<Inner>) -> Result<()> {
    let docker = docker::client().await?;
    resource::remove(&docker, res.kind, &res.id, &res.name).await?;
    ctx.untrack(&res.id);
    Ok(())
}

impl Drop for Armed {
    fn drop(&mut self) {
        if !self.armed || self.ctx.keeping_now() {
            return;
        }
        let (res, ctx) = (self.res.clone(), self.ctx.clone());
        match blocking::wait(remove_and_untrack(res, ctx), DROP_LIMIT) {
            Some(Ok(())) => {}
            // The context still tracks it and tries again at its own teardown.
            Some(Err(e)) => eprintln!("docker-harness: could not remove {}: {e}", self.res),
            None => eprintln!(
                "docker-harness: removing {} did not finish within {}s; the context retries at teardown",
                self.res,
                DROP_LIMIT.as_secs()
            ),
        }
    }
}
