//! Per-test resource budgets and the teardown report: how many containers, networks and
//! volumes were created under a test's identity, what was adopted, and what exceeded the
//! budget. A program under test that silently creates far more than it should shows here.
//!
//! Plain data on the ground floor: the error for an exceeded budget carries the report.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::resource::{Kind, Resource};

/// How many of each kind: created so far, or allowed at most.
///
/// More kinds may be counted in later versions; [`Counts::new`] keeps meaning "these
/// containers, networks and volumes, none of anything else".
///
/// ```
/// use docker_harness::{Counts, Kind};
/// let budget = Counts::new(2, 1, 0);
/// assert_eq!(budget.get(Kind::Container), 2);
/// assert_eq!(budget.to_string(), "2 container(s), 1 network(s), 0 volume(s)");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Counts {
    /// Containers.
    pub containers: usize,
    /// Networks.
    pub networks: usize,
    /// Volumes (named ones; anonymous volumes go with their containers).
    pub volumes: usize,
    /// Host processes a program under test left running under the test's marker (ended at
    /// teardown). In a budget, a limit only when set with [`Counts::with_processes`].
    #[serde(default)]
    pub processes: usize,
    #[serde(skip)]
    limits_processes: bool,
    /// Images the test built (each with the intermediate images of its build). In a
    /// budget, a limit only when set with [`Counts::with_images`].
    #[serde(default)]
    pub images: usize,
    #[serde(skip)]
    limits_images: bool,
}

impl Counts {
    /// Counts with these numbers (and no host processes; as a budget, no limit on them).
    pub fn new(containers: usize, networks: usize, volumes: usize) -> Counts {
        Counts { containers, networks, volumes, processes: 0, limits_processes: false, images: 0, limits_images: false }
    }

    /// The same counts with this many built images; as a budget, at most this many.
    ///
    /// ```
    /// use docker_harness::Counts;
    /// let budget = Counts::new(1, 0, 0).with_images(1);
    /// assert_eq!(budget.to_string(), "1 container(s), 0 network(s), 0 volume(s), 1 image(s)");
    /// ```
    #[must_use]
    pub fn with_images(self, images: usize) -> Counts {
        Counts { images, limits_images: true, ..self }
    }

    /// The same counts with this many host processes; as a budget, at most this many.
    ///
    /// ```
    /// use docker_harness::Counts;
    /// let budget = Counts::new(1, 0, 0).with_processes(1);
    /// assert_eq!(budget.to_string(), "1 container(s), 0 network(s), 0 volume(s), 1 process(es)");
    /// ```
    #[must_use]
    pub fn with_processes(self, processes: usize) -> Counts {
        Counts { processes, limits_processes: true, ..self }
    }

    pub(crate) fn add(&mut self, kind: Kind) {
        match kind {
            Kind::Container => self.containers += 1,
            Kind::Network => self.networks += 1,
            Kind::Volume => self.volumes += 1,
            Kind::Image => self.images += 1,
        }
    }

    /// How many of one kind.
    pub fn get(&self, kind: Kind) -> usize {
        match kind {
            Kind::Container => self.containers,
            Kind::Network => self.networks,
            Kind::Volume => self.volumes,
            Kind::Image => self.images,
        }
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} container(s), {} network(s), {} volume(s)", self.containers, self.networks, self.volumes)?;
        if self.processes > 0 || self.limits_processes {
            write!(f, ", {} process(es)", self.processes)?;
        }
        if self.images > 0 || self.limits_images {
            write!(f, ", {} image(s)", self.images)?;
        }
        Ok(())
    }
}

/// A host process a teardown ended: the program under test left it running.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndedProcess {
    /// Its PID.
    pub pid: u32,
    /// Its command line.
    pub command: String,
}

impl EndedProcess {
    /// A process by its PID and command line.
    pub fn new(pid: u32, command: impl Into<String>) -> EndedProcess {
        EndedProcess { pid, command: command.into() }
    }
}

/// What a context's teardown found and did.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TeardownReport {
    /// Created under the test's identity: by the harness, plus what was adopted.
    pub created: Counts,
    /// The budget the test declared, if any.
    pub budget: Option<Counts>,
    /// Resources the harness did not create but found under the test's identity (its task
    /// label or its name prefix), removed with the test's own.
    pub adopted: Vec<Resource>,
    /// Adopted resources without the managed label: the program under test did not stamp
    /// the labels it was handed.
    pub unlabelled: Vec<Resource>,
    /// Host processes under the test's marker that were ended (their whole trees).
    pub processes: Vec<EndedProcess>,
    /// True when the resources were kept for debugging instead of removed.
    pub kept: bool,
}

impl TeardownReport {
    /// One line per kind over budget, e.g. `containers: 4 created, budget 1`.
    pub fn over_budget(&self) -> Vec<String> {
        let Some(budget) = self.budget else { return Vec::new() };
        Kind::TEARDOWN_ORDER
            .into_iter()
            .filter(|k| *k != Kind::Image || budget.limits_images)
            .filter(|k| self.created.get(*k) > budget.get(*k))
            .map(|k| format!("{k}s: {} created, budget {}", self.created.get(k), budget.get(k)))
            .chain(
                (budget.limits_processes && self.created.processes > budget.processes).then(|| {
                    format!("processes: {} left running, budget {}", self.created.processes, budget.processes)
                }),
            )
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kinds_past_their_budget_are_reported() {
        let r =
            TeardownReport { created: Counts::new(4, 1, 0), budget: Some(Counts::new(1, 1, 2)), ..Default::default() };
        assert_eq!(r.over_budget(), vec!["containers: 4 created, budget 1".to_string()]);
    }

    #[test]
    fn host_processes_are_over_budget_only_when_limited() {
        let mut created = Counts::new(1, 0, 0);
        created.processes = 2;
        let unlimited = TeardownReport { created, budget: Some(Counts::new(1, 0, 0)), ..Default::default() };
        assert!(unlimited.over_budget().is_empty());
        let limited =
            TeardownReport { created, budget: Some(Counts::new(1, 0, 0).with_processes(1)), ..Default::default() };
        assert_eq!(limited.over_budget(), vec!["processes: 2 left running, budget 1".to_string()]);
    }

    #[test]
    fn built_images_are_over_budget_only_when_limited() {
        let mut created = Counts::new(0, 0, 0);
        created.images = 2;
        let unlimited = TeardownReport { created, budget: Some(Counts::new(0, 0, 0)), ..Default::default() };
        assert!(unlimited.over_budget().is_empty());
        let limited =
            TeardownReport { created, budget: Some(Counts::new(0, 0, 0).with_images(1)), ..Default::default() };
        assert_eq!(limited.over_budget(), vec!["images: 2 created, budget 1".to_string()]);
    }

    #[test]
    fn without_a_budget_nothing_is_over() {
        let r = TeardownReport { created: Counts::new(100, 100, 100), ..Default::default() };
        assert!(r.over_budget().is_empty());
    }
}
