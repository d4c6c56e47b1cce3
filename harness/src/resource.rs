//! What the harness manages, as plain data: a kind and an identity. Removing, listing and
//! confirming are the daemon's business and live in `removal`.

use std::collections::HashMap;
use std::fmt;

/// The kinds of Docker resource the harness manages, in teardown order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Kind {
    /// A container.
    Container,
    /// A network.
    Network,
    /// A volume.
    Volume,
    /// An image a test built (its name is its tag). The images a build made on the way
    /// (every step of every stage) go with it.
    Image,
}

impl Kind {
    /// Every kind, in the order teardown removes them: what uses a network, a volume or an
    /// image goes before it.
    pub const TEARDOWN_ORDER: [Kind; 4] = [Kind::Container, Kind::Network, Kind::Volume, Kind::Image];

    /// `container`, `network`, `volume` or `image`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Container => "container",
            Kind::Network => "network",
            Kind::Volume => "volume",
            Kind::Image => "image",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One resource: its kind, Docker ID (a volume's ID is its name) and name.
///
/// ```
/// use docker_harness::{Kind, Resource};
/// let r = Resource::new(Kind::Volume, "dh-t-1-data", "dh-t-1-data");
/// assert_eq!(r.to_string(), "volume dh-t-1-data");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Resource {
    /// The kind.
    pub kind: Kind,
    /// The Docker ID.
    pub id: String,
    /// The Docker name.
    pub name: String,
    /// Its labels, where they were read.
    pub labels: HashMap<String, String>,
}

impl Resource {
    /// A resource whose labels were not read.
    pub fn new(kind: Kind, id: impl Into<String>, name: impl Into<String>) -> Resource {
        Resource { kind, id: id.into(), name: name.into(), labels: HashMap::new() }
    }

    /// The same resource with the labels Docker listed for it.
    #[must_use]
    pub fn with_labels(mut self, labels: HashMap<String, String>) -> Resource {
        self.labels = labels;
        self
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.name)
    }
}
