//! Valid Docker names from any test name.
//!
//! Docker names must match `[a-zA-Z0-9][a-zA-Z0-9_.-]*`. A name also serves as a DNS name on
//! user networks, so a prefix is kept well inside a 63-character DNS label, leaving room
//! for the logical name that follows it.

/// At most this many characters of the sanitised test name go into a prefix.
const TEST_PART_MAX: usize = 32;

/// `dh-<sanitised test name>-<short task id>`: unique per test context, always a valid
/// Docker name. A test name cut short gets a hash of the full name, so two long names that
/// share their beginning still read apart.
pub(crate) fn prefix(test_name: &str, task_id: &str) -> String {
    let short_task: String = task_id.chars().filter(char::is_ascii_alphanumeric).take(8).collect();
    let clean = sanitize(test_name);
    let part = if clean.is_empty() {
        format!("t{}", hash6(test_name))
    } else if clean.len() > TEST_PART_MAX || clean != test_name.to_ascii_lowercase() {
        let cut = &clean[..clean.len().min(TEST_PART_MAX - 7)];
        format!("{}-{}", cut.trim_end_matches(['-', '.', '_']), hash6(test_name))
    } else {
        clean
    };
    format!("dh-{part}-{short_task}")
}

/// A Docker name for one resource of a context: `<prefix>-<logical name>`.
pub(crate) fn resource_name(prefix: &str, logical: &str) -> String {
    let clean = sanitize(logical);
    if clean.is_empty() {
        format!("{prefix}-r{}", hash6(logical))
    } else {
        format!("{prefix}-{clean}")
    }
}

/// Lower-cases, turns every run of characters Docker refuses (including `::`, spaces and
/// anything non-ASCII) into one `-`, and trims separators from both ends.
pub(crate) fn sanitize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending_dash = false;
    for c in name.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() || matches!(c, '_' | '.') {
            if pending_dash && !out.is_empty() {
                out.push('-');
            }
            pending_dash = false;
            out.push(c);
        } else {
            pending_dash = true;
        }
    }
    out.trim_matches(['-', '.', '_']).to_string()
}

/// A key that can stand in a file name and a label value as it is: 1 to 64 letters,
/// digits, `-`, `_` or `.` (session IDs, shared-container keys).
pub(crate) fn is_plain_key(key: &str) -> bool {
    (1..=64).contains(&key.len()) && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Six hex digits of FNV-1a: enough to tell names apart in a prefix, stable across runs.
fn hash6(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:06x}", h & 0xff_ffff)
}

/// True for a string Docker accepts as a container, network or volume name.
#[cfg(test)]
fn is_valid_docker_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TASK: &str = "3f2a9c1e-0000-4000-8000-000000000000";

    #[test]
    fn a_plain_name_reads_as_itself() {
        assert_eq!(prefix("isolation_works", TASK), "dh-isolation_works-3f2a9c1e");
    }

    #[test]
    fn module_paths_spaces_and_unicode_become_valid_names() {
        for name in [
            "isolation::case_1",
            "a test with spaces",
            "тест::юникод",
            "émoji 🚀 test",
            "::leading::and::trailing::",
            "---",
            "",
            "UPPER::Case",
        ] {
            let p = prefix(name, TASK);
            assert!(is_valid_docker_name(&p), "{name:?} gave {p:?}");
            assert!(p.len() <= 63, "{p} is too long");
            assert!(is_valid_docker_name(&resource_name(&p, "web")), "{p}");
        }
        assert!(prefix("isolation::case_1", TASK).starts_with("dh-isolation-case_1-"));
    }

    #[test]
    fn a_300_character_name_is_shortened_with_a_hash() {
        let long_a = "a".repeat(300);
        let long_b = format!("{}b", "a".repeat(299));
        let (pa, pb) = (prefix(&long_a, TASK), prefix(&long_b, TASK));
        assert!(pa.len() <= 63 && pb.len() <= 63);
        assert_ne!(pa, pb, "names differing only past the cut must still differ");
        assert!(is_valid_docker_name(&pa));
    }

    #[test]
    fn names_that_sanitise_alike_stay_apart() {
        assert_ne!(prefix("a::b", TASK), prefix("a b", TASK));
        assert_ne!(prefix("тест", TASK), prefix("юникод", TASK));
    }

    #[test]
    fn logical_names_are_sanitised_too() {
        assert_eq!(resource_name("dh-t-1", "My Net"), "dh-t-1-my-net");
        assert!(resource_name("dh-t-1", "ü").starts_with("dh-t-1-r"));
    }

    #[test]
    fn plain_keys_are_names_a_file_and_a_label_can_hold() {
        assert!(is_plain_key("postgres-16"));
        assert!(is_plain_key("kv.v2_a"));
        assert!(!is_plain_key(""));
        assert!(!is_plain_key("../x"));
        assert!(!is_plain_key("a b"));
        assert!(!is_plain_key(&"k".repeat(65)));
    }

    #[test]
    fn the_validity_check_itself_refuses_bad_names() {
        assert!(!is_valid_docker_name("-x"));
        assert!(!is_valid_docker_name("a b"));
        assert!(!is_valid_docker_name(""));
        assert!(is_valid_docker_name("a.b_c-d"));
    }
}
