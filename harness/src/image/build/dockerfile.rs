//! What a Dockerfile builds from: the images its `FROM` lines name, with the global `ARG`s
//! substituted as the builder does, leaving out `scratch` and earlier stages. Their IDs go
//! into a build's content hash, so a changed base image is rebuilt.

use std::collections::{BTreeMap, HashMap};

/// The images the Dockerfile's stages start from, in order, each once.
pub(crate) fn base_images(text: &str, build_args: &BTreeMap<String, String>) -> Vec<String> {
    let mut globals: HashMap<String, String> = HashMap::new();
    let mut stages: Vec<String> = Vec::new();
    let mut out: Vec<String> = Vec::new();
    let mut seen_from = false;
    for line in instructions(text) {
        let mut words = line.split_whitespace();
        let Some(instr) = words.next() else { continue };
        if instr.eq_ignore_ascii_case("ARG") && !seen_from {
            // Only ARGs before the first FROM may be used in FROM lines.
            for decl in words {
                let (name, default) = decl.split_once('=').unwrap_or((decl, ""));
                let value = build_args.get(name).cloned().unwrap_or_else(|| unquote(default).to_string());
                globals.insert(name.to_string(), value);
            }
        } else if instr.eq_ignore_ascii_case("FROM") {
            seen_from = true;
            let rest: Vec<&str> = words.filter(|w| !w.starts_with("--")).collect();
            let Some(image) = rest.first() else { continue };
            let image = substitute(image, &globals);
            if let [_, as_kw, name, ..] = rest.as_slice() {
                if as_kw.eq_ignore_ascii_case("AS") {
                    stages.push(name.to_ascii_lowercase());
                }
            }
            let earlier_stage = stages.iter().rev().skip(1).any(|s| *s == image.to_ascii_lowercase());
            if !image.is_empty() && image != "scratch" && !earlier_stage && !out.contains(&image) {
                out.push(image);
            }
        }
    }
    out
}

/// The Dockerfile's instructions, one a line: continuation lines joined, comments and
/// blank lines dropped.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if current.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}

fn unquote(v: &str) -> &str {
    v.trim_matches('"').trim_matches('\'')
}

/// `$NAME`, `${NAME}` and `${NAME:-default}` from the global ARGs (an undeclared name is
/// empty, as the builder has it).
fn substitute(word: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = word;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(inner) = rest.strip_prefix('{') {
            let Some(end) = inner.find('}') else {
                out.push('$');
                continue;
            };
            let expr = &inner[..end];
            let (name, default) = expr.split_once(":-").unwrap_or((expr, ""));
            let value = vars.get(name).filter(|v| !v.is_empty()).map_or(default, String::as_str);
            out.push_str(value);
            rest = &inner[end + 1..];
        } else {
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            out.push_str(vars.get(&rest[..end]).map_or("", String::as_str));
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_multi_stage_file_builds_from_its_bases_not_its_own_stages() {
        let text = "# syntax comment\nARG BASE=alpine:3.19.1\nFROM --platform=linux/amd64 ${BASE} AS builder\n\
                    RUN make \\\n  all\nFROM builder AS test\nFROM scratch\nCOPY --from=builder /x /x\n\
                    from busybox:1.36 as tools\n";
        assert_eq!(base_images(text, &args(&[])), vec!["alpine:3.19.1", "busybox:1.36"]);
    }

    #[test]
    fn build_arguments_override_an_args_default_and_undeclared_names_are_empty() {
        let text = "ARG BASE=alpine:3.19.1\nARG TAG\nFROM $BASE\nFROM busybox:${TAG:-1.36}\nFROM x${NOPE}y\n";
        assert_eq!(
            base_images(text, &args(&[("BASE", "docker-harness-standin:1.35.0")])),
            vec!["docker-harness-standin:1.35.0", "busybox:1.36", "xy"]
        );
    }

    #[test]
    fn an_arg_after_the_first_from_does_not_reach_from_lines() {
        let text = "FROM a:1\nARG LATER=b:2\nFROM ${LATER}\n";
        assert_eq!(base_images(text, &args(&[])), vec!["a:1"]);
    }
}
