//! Valid Docker names from any test or logical name.
//!
//! Docker names must match `[a-zA-Z0-9][a-zA-Z0-9_.-]*`. A name also serves as a DNS name on
//! user networks, so every name is kept within a 63-character DNS label: a prefix takes at
//! most 44 of them, and the logical name that follows it is shortened when it would not fit.
//!
//! Sanitising is lossy (`über` and `ber` both clean to `ber`), so a logical name that is not
//! already a clean one, or that has to be shortened, carries a hash of itself after a `--`:
//! `dh-<test>-<task>-ber--610baf`. A clean name never holds `--` (sanitising collapses every
//! run of separators to one `-`), so a hashed name can never equal a name kept as it is, and
//! two hashed names are equal only when their cleaned beginning and their hash both are.

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

/// The longest Docker name the harness makes: one DNS label.
const NAME_MAX: usize = 63;

/// Between a shortened or lossy logical name and its hash; never in a clean name.
const HASH_MARK: &str = "--";

/// A Docker name for one resource of a context: `<prefix>-<logical name>` when the logical
/// name is already clean (lower case, nothing sanitising would change) and the whole fits in
/// [`NAME_MAX`]; otherwise `<prefix>-<cleaned logical name, cut to fit>--<hash of the logical
/// name>`, so two logical names of one context never share a Docker name.
pub(crate) fn resource_name(prefix: &str, logical: &str) -> String {
    let clean = sanitize(logical);
    if !clean.is_empty() && clean == logical && prefix.len() + 1 + clean.len() <= NAME_MAX {
        return format!("{prefix}-{clean}");
    }
    let hash = hash6(logical);
    let room = NAME_MAX.saturating_sub(prefix.len() + 1 + HASH_MARK.len() + hash.len()).max(1);
    // The cut ends on a letter or digit, so no separator runs into the mark.
    let stem = clean[..clean.len().min(room)].trim_end_matches(['-', '.', '_']);
    let stem = if stem.is_empty() { "r" } else { stem };
    format!("{prefix}-{stem}{HASH_MARK}{hash}")
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

/// Six hex digits of FNV-1a: enough to tell names apart within a context, stable across runs
/// (so a name reads the same in every run, and on every host).
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

    /// The longest prefix there is: a test name cut short with its hash, and a full task.
    fn longest_prefix() -> String {
        let p = prefix(&"t".repeat(300), TASK);
        assert_eq!(p.len(), 44, "{p}");
        p
    }

    /// A name a resource can carry: a Docker name that is also one DNS label's length.
    fn assert_fits(name: &str) {
        assert!(is_valid_docker_name(name), "{name:?} is no valid Docker name");
        assert!(name.len() <= NAME_MAX, "{name:?} is {} characters long", name.len());
    }

    #[test]
    fn a_clean_logical_name_is_kept_exactly() {
        assert_eq!(resource_name("dh-t-1", "web"), "dh-t-1-web");
        assert_eq!(resource_name("dh-t-1", "my-net"), "dh-t-1-my-net");
        assert_eq!(resource_name("dh-t-1", "a_b"), "dh-t-1-a_b");
        assert_eq!(resource_name("dh-t-1", "a.b"), "dh-t-1-a.b");
        assert_eq!(resource_name(&prefix("isolation_works", TASK), "web"), "dh-isolation_works-3f2a9c1e-web");
    }

    #[test]
    fn a_lossy_logical_name_gets_a_hash_and_stays_apart_from_its_clean_twin() {
        for (lossy, clean) in [("über", "ber"), ("My Net", "my-net"), ("a b", "a-b"), ("Web", "web"), ("-web-", "web")]
        {
            let (l, c) = (resource_name("dh-t-1", lossy), resource_name("dh-t-1", clean));
            assert_eq!(c, format!("dh-t-1-{clean}"));
            assert_eq!(l, format!("dh-t-1-{clean}--{}", hash6(lossy)), "{lossy:?}");
            assert_ne!(l, c);
            assert_fits(&l);
        }
        // `_` and `.` are kept as they are, so these two never met in the first place.
        assert_ne!(resource_name("dh-t-1", "a_b"), resource_name("dh-t-1", "a.b"));
        assert!(resource_name("dh-t-1", "ü").starts_with("dh-t-1-r--"));
        assert_ne!(resource_name("dh-t-1", "ü"), resource_name("dh-t-1", "é"));
    }

    #[test]
    fn a_clean_name_can_never_pose_as_a_hashed_one() {
        // `ber--<hash of über>` is not clean (sanitising collapses the `--`), so it is hashed
        // in turn; `ber-<hash of über>` is clean and has no `--`.
        let hashed = resource_name("dh-t-1", "über");
        let lookalike = hashed.trim_start_matches("dh-t-1-").to_string();
        assert_ne!(resource_name("dh-t-1", &lookalike), hashed);
        assert_ne!(resource_name("dh-t-1", &lookalike.replace("--", "-")), hashed);
    }

    #[test]
    fn a_300_character_logical_name_fits_in_one_dns_label() {
        let p = longest_prefix();
        let long = "v".repeat(300);
        let name = resource_name(&p, &long);
        assert_fits(&name);
        assert!(name.starts_with(&format!("{p}-vvvv")), "{name}");
        // Names that differ only past the cut still differ, and so do lossy long ones.
        assert_ne!(name, resource_name(&p, &"v".repeat(301)));
        assert_ne!(name, resource_name(&p, &format!("{}w", "v".repeat(299))));
        let unicode = "ü".repeat(300);
        assert_fits(&resource_name(&p, &unicode));
        assert_fits(&resource_name("dh-t-1", &long));
    }

    #[test]
    fn the_limit_is_the_whole_name_not_the_logical_part() {
        let p = longest_prefix();
        let fits = "x".repeat(NAME_MAX - p.len() - 1);
        assert_eq!(resource_name(&p, &fits), format!("{p}-{fits}"));
        let over = format!("{fits}x");
        let name = resource_name(&p, &over);
        assert_fits(&name);
        assert!(name.ends_with(&format!("--{}", hash6(&over))), "{name}");
        // A cut never leaves a separator before the mark.
        let dotted = format!("{}.{}", "x".repeat(9), "y".repeat(20));
        assert!(!resource_name(&p, &dotted).contains(".--"), "{}", resource_name(&p, &dotted));
    }

    #[test]
    fn many_logical_names_of_one_context_make_as_many_docker_names() {
        let p = longest_prefix();
        let mut logical: Vec<String> =
            ["über", "ber", "Ber", "BER", "ber ", "ü", "é", "", "My Net", "my-net", "my net"]
                .iter()
                .map(ToString::to_string)
                .collect();
        logical.extend((0..200).map(|i| format!("{}{i}", "n".repeat(40))));
        logical.extend((0..200).map(|i| format!("Ünïcödé {i}")));
        let names: std::collections::HashSet<String> = logical.iter().map(|l| resource_name(&p, l)).collect();
        assert_eq!(names.len(), logical.len());
        names.iter().for_each(|n| assert_fits(n));
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
