//! The guard of a test's container: the [`Container`] handle plus the duty to remove it.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use super::handle::Container;
use crate::guard::{guard_methods, Armed};
use crate::resource::{Kind, Resource};
use crate::scope::Scope;

/// A container that is removed (with force, and with its anonymous volumes) when the guard
/// drops. Everything else it does is its [`Container`] handle's, which it dereferences to:
/// `guard.exec(..)`, `guard.logs()`, `guard.host_port(..)`.
///
/// # Resource leaking
/// As for [`crate::TestContext`]: a killed process cannot run Drop; the sweep covers it.
pub struct ContainerGuard {
    container: Container,
    armed: Armed,
    logical: String,
}

impl fmt::Debug for ContainerGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContainerGuard")
            .field("name", &self.container.name())
            .field("id", &self.container.id())
            .finish()
    }
}

impl Deref for ContainerGuard {
    type Target = Container;

    fn deref(&self) -> &Container {
        &self.container
    }
}

impl ContainerGuard {
    /// Tracks a created container in its scope and arms removal on Drop.
    pub(super) fn new(container: Container, scope: Arc<Scope>, logical: &str) -> ContainerGuard {
        let res = Resource::new(Kind::Container, container.id(), container.name());
        ContainerGuard { armed: Armed::new(res, scope), container, logical: logical.to_string() }
    }

    /// A handle to the container that can be cloned and moved into other tasks; it does not
    /// keep the container alive (the guard, or the context's teardown, removes it).
    pub fn container(&self) -> &Container {
        &self.container
    }

    guard_methods!("container", " (with force, and with its anonymous volumes)", "");
}
