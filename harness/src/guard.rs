//! The part every resource guard shares: remove on Drop (best effort, bounded, never
//! panics), or on an explicit `remove().await`, which always disarms Drop and returns the
//! error, as tempfile's `close` does: the caller asked, the caller gets the answer, and a
//! resource that could not be removed is left to the scope's teardown, not retried on the
//! caller's thread.

use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;
use crate::farewell::{self, Moment};
use crate::resource::Resource;
use crate::scope::Scope;
use crate::{blocking, docker, removal};

/// The methods every resource guard has, written once. The guard type has the fields
/// `armed: Armed` and `logical: String`; `$what` names the resource in the docs, `$how`
/// says what its removal does and `$refuses` when Docker says no.
macro_rules! guard_methods {
    ($what:literal, $how:literal, $refuses:literal) => {
        /// The logical name it was created under.
        pub fn logical_name(&self) -> &str {
            &self.logical
        }

        #[doc = concat!("Removes the ", $what, " now", $how, " and waits until Docker confirms it is gone.")]
        #[doc = concat!("Drop does nothing afterwards, whatever the answer: a ", $what, " that could not be")]
        /// removed is left to the context's teardown.
        ///
        /// # Errors
        #[doc = concat!("[`crate::Error::Docker`] when Docker refuses", $refuses, "; [`crate::Error::Timeout`]")]
        /// when it is still there after 10 s.
        pub async fn remove(mut self) -> crate::error::Result<()> {
            self.armed.remove().await
        }

        #[doc = concat!("Leaves the ", $what, " on the daemon; returns its name.")]
        pub fn keep(mut self) -> String {
            self.armed.keep();
            self.armed.res.name.clone()
        }

        /// Hands removal to the context's teardown instead of this guard's Drop.
        pub fn into_context(mut self) {
            self.armed.disarm();
        }
    };
}
pub(crate) use guard_methods;

/// How long one guard's Drop may wait for its resource to be removed.
const DROP_LIMIT: Duration = Duration::from_secs(15);

pub(crate) struct Armed {
    pub(crate) res: Resource,
    scope: Arc<Scope>,
    armed: bool,
}

impl Armed {
    /// Tracks the resource in its scope (so teardown removes it whatever happens to the
    /// guard) and arms the guard.
    pub(crate) fn new(res: Resource, scope: Arc<Scope>) -> Armed {
        scope.track(res.clone());
        Armed { res, scope, armed: true }
    }

    /// Removes the resource now and tells its scope it is gone. Disarms whatever the answer.
    pub(crate) async fn remove(&mut self) -> Result<()> {
        self.armed = false;
        blocking::run(remove_and_untrack(self.res.clone(), self.scope.clone(), false)).await
    }

    /// Leaves the resource to its scope (which still removes it at teardown).
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }

    /// Leaves the resource on the daemon: neither this guard nor its scope removes it.
    pub(crate) fn keep(&mut self) {
        self.armed = false;
        self.scope.untrack(&self.res.id);
    }
}

/// Removes the resource once its follower is drained; when `read`, its last log lines are
/// held in the scope first.
async fn remove_and_untrack(res: Resource, scope: Arc<Scope>, read: bool) -> Result<()> {
    crate::docker::calls::why("teardown", remove_and_untrack_now(res, scope, read)).await
}

async fn remove_and_untrack_now(res: Resource, scope: Arc<Scope>, read: bool) -> Result<()> {
    let docker = docker::client().await?;
    let said = scope.farewell.before_removal(&docker, std::slice::from_ref(&res), read).await;
    scope.farewell.hold(said);
    removal::remove(&docker, res.kind, &res.id, &res.name).await?;
    scope.untrack(&res.id);
    Ok(())
}

impl Drop for Armed {
    fn drop(&mut self) {
        if !self.armed || self.scope.keeping_now() {
            return;
        }
        // Asked here: only the test's own thread knows whether it is failing.
        let moment = self.scope.farewell.moment(self.res.kind);
        let outcome = blocking::wait(
            remove_and_untrack(self.res.clone(), self.scope.clone(), moment != Moment::Skip),
            DROP_LIMIT,
        );
        if moment == Moment::Print {
            farewell::print(&self.scope.farewell.take_held());
        }
        match outcome {
            Some(Ok(())) => {}
            // The scope still tracks it and tries again at its own teardown.
            Some(Err(e)) => eprintln!("docker-harness: could not remove {}: {e}", self.res),
            None => eprintln!(
                "docker-harness: removing {} did not finish within {}s; the context retries at teardown",
                self.res,
                DROP_LIMIT.as_secs()
            ),
        }
    }
}
