//! The fault rules: parsing a rules file and the seeded schedule that decides each
//! request's fault.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use regex::Regex;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Fault {
    Delay(Duration),
    ResetRequest,
    ResetResponse,
    Status(u16),
    Stall,
    StallBody,
}

impl Fault {
    pub(crate) fn label(&self) -> String {
        match self {
            Fault::Delay(d) => format!("delay={}ms", d.as_millis()),
            Fault::ResetRequest => "reset-request".into(),
            Fault::ResetResponse => "reset-response".into(),
            Fault::Status(c) => format!("status={c}"),
            Fault::Stall => "stall".into(),
            Fault::StallBody => "stall-body".into(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) fault: Fault,
    pub(crate) p: f64,
    pub(crate) path: Option<Regex>,
    pub(crate) method: Option<String>,
    pub(crate) times: Option<u64>,
    pub(crate) every: Option<u64>,
    pub(crate) seen: u64,
    pub(crate) fired: u64,
}

pub(crate) fn parse_rule(line: &str) -> anyhow::Result<Rule> {
    let mut words = line.split_whitespace();
    let kind = words.next().context("empty rule")?;
    let fault = match kind.split_once('=') {
        Some(("delay", d)) => {
            let secs: f64 = d.trim_end_matches('s').parse().with_context(|| format!("delay {d:?}"))?;
            Fault::Delay(Duration::from_secs_f64(secs))
        }
        Some(("status", c)) => Fault::Status(c.parse().with_context(|| format!("status {c:?}"))?),
        None if kind == "reset-request" => Fault::ResetRequest,
        None if kind == "reset-response" => Fault::ResetResponse,
        None if kind == "stall" => Fault::Stall,
        None if kind == "stall-body" => Fault::StallBody,
        _ => {
            bail!("unknown fault {kind:?}: delay=SECS, reset-request, reset-response, status=CODE, stall or stall-body")
        }
    };
    let mut rule = Rule { fault, p: 1.0, path: None, method: None, times: None, every: None, seen: 0, fired: 0 };
    for w in words {
        match w.split_once('=') {
            Some(("p", v)) => rule.p = v.parse().with_context(|| format!("p {v:?}"))?,
            Some(("path", v)) => rule.path = Some(Regex::new(v)?),
            Some(("method", v)) => rule.method = Some(v.to_ascii_uppercase()),
            Some(("times", v)) => rule.times = Some(v.parse().with_context(|| format!("times {v:?}"))?),
            Some(("every", v)) => {
                rule.every = Some(v.parse().ok().filter(|n| *n > 0).with_context(|| format!("every {v:?}"))?);
            }
            _ => bail!("unknown rule word {w:?}: p=, path=, method=, times= or every="),
        }
    }
    Ok(rule)
}

/// The schedule: the rules, the seeded generator, the log.
pub(crate) struct Schedule {
    pub(crate) rules_file: Option<PathBuf>,
    pub(crate) stamp: Option<SystemTime>,
    pub(crate) rules: Vec<Rule>,
    pub(crate) state: u64,
    pub(crate) seq: u64,
    pub(crate) log: Option<std::fs::File>,
}

impl Schedule {
    /// splitmix64: small, seedable, good enough to draw faults.
    pub(crate) fn next_unit(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(crate) fn reload(&mut self) {
        let Some(path) = &self.rules_file else { return };
        let stamp = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if stamp == self.stamp && stamp.is_some() {
            return;
        }
        self.stamp = stamp;
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut rules = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            match parse_rule(line) {
                Ok(r) => rules.push(r),
                Err(e) => eprintln!("fault-proxy: rule {line:?} ignored: {e:#}"),
            }
        }
        self.rules = rules;
    }

    pub(crate) fn decide(&mut self, method: &str, path: &str) -> Option<Fault> {
        self.reload();
        self.seq += 1;
        let mut chosen = None;
        for i in 0..self.rules.len() {
            let r = &self.rules[i];
            let matches = r.method.as_deref().is_none_or(|m| m == method)
                && r.path.as_ref().is_none_or(|re| re.is_match(path))
                && r.times.is_none_or(|t| r.fired < t);
            if !matches {
                continue;
            }
            self.rules[i].seen += 1;
            let r = &self.rules[i];
            if r.every.is_some_and(|n| !r.seen.is_multiple_of(n)) {
                continue;
            }
            let p = r.p;
            if self.next_unit() < p {
                self.rules[i].fired += 1;
                chosen = Some(self.rules[i].fault.clone());
                break;
            }
        }
        if let Some(log) = &mut self.log {
            use std::io::Write;
            let line = serde_json::json!({
                "seq": self.seq, "method": method, "path": path, "fault": chosen.as_ref().map(Fault::label),
            });
            let _ = writeln!(log, "{line}");
        }
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_reads_its_fault_and_conditions() {
        let r = parse_rule("status=500 p=0.5 path=/containers/.*/json method=get times=3").unwrap();
        assert_eq!(r.fault, Fault::Status(500));
        assert_eq!((r.p, r.method.as_deref(), r.times), (0.5, Some("GET"), Some(3)));
        assert!(r.path.unwrap().is_match("/v1.41/containers/abc/json"));
        assert_eq!(parse_rule("delay=2.5s").unwrap().fault, Fault::Delay(Duration::from_millis(2500)));
        assert_eq!(parse_rule("stall every=3").unwrap().every, Some(3));
        assert_eq!(parse_rule("stall-body path=/images/create").unwrap().fault, Fault::StallBody);
        assert!(parse_rule("stall every=0").is_err());
        assert!(parse_rule("explode").is_err());
        assert!(parse_rule("stall p=often").is_err());
    }
}
