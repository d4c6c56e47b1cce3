//! Adoption: what a program under test created under a context's identity (its task label,
//! or a name that starts with its prefix) is removed with the context's own resources,
//! whoever created it. The prefix is checked exactly on the returned names; Docker's name
//! filter is never used, since it matches substrings anywhere in a name.

use std::collections::HashSet;

use bollard::Docker;

use crate::error::Result;
use crate::labels;
use crate::removal;
use crate::resource::Resource;

/// Everything on the daemon that carries `task_id` or whose name starts with `prefix`,
/// except the resources in `known` (the context's own).
pub(crate) async fn find(
    docker: &Docker,
    task_id: &str,
    prefix: &str,
    known: &HashSet<String>,
) -> Result<Vec<Resource>> {
    // One unfiltered listing finds both: the label match and the exact prefix match.
    let all = removal::list_labelled(docker, &[]).await?;
    Ok(all.into_iter().filter(|r| !known.contains(&r.id)).filter(|r| belongs(r, task_id, prefix)).collect())
}

pub(crate) fn belongs(r: &Resource, task_id: &str, prefix: &str) -> bool {
    r.labels.get(labels::TASK).is_some_and(|t| t == task_id) || r.name.starts_with(prefix)
}

/// True when a resource lacks the managed label: the program under test did not stamp the
/// labels it was handed.
pub(crate) fn unlabelled(r: &Resource) -> bool {
    r.labels.get(labels::MANAGED).is_none_or(|v| v != "true")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Kind;
    use std::collections::HashMap;

    fn res(name: &str, labels: &[(&str, &str)]) -> Resource {
        Resource::new(Kind::Container, name, name)
            .with_labels(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>())
    }

    #[test]
    fn the_task_label_or_a_leading_prefix_makes_a_resource_ours() {
        let p = "dh-t-1234abcd";
        assert!(belongs(&res("anything", &[(labels::TASK, "task-1")]), "task-1", p));
        assert!(belongs(&res("dh-t-1234abcd-worker", &[]), "task-1", p));
        assert!(belongs(&res("dh-t-1234abcdjob", &[]), "task-1", p));
    }

    #[test]
    fn a_prefix_inside_a_name_or_another_task_is_not_ours() {
        let p = "dh-t-1234abcd";
        assert!(!belongs(&res("other-dh-t-1234abcd-x", &[]), "task-1", p));
        assert!(!belongs(&res("dh-t-1234abc", &[]), "task-1", p));
        assert!(!belongs(&res("x", &[(labels::TASK, "task-2")]), "task-1", p));
    }

    #[test]
    fn only_the_managed_label_set_to_true_counts_as_labelled() {
        assert!(unlabelled(&res("x", &[])));
        assert!(unlabelled(&res("x", &[(labels::MANAGED, "false")])));
        assert!(!unlabelled(&res("x", &[(labels::MANAGED, "true")])));
    }
}
