//! Environment switches, read once per process through [`Env`] so that unit tests can
//! check every rule without mutating the process environment.

use std::collections::HashMap;
use std::time::Duration;

use once_cell::sync::Lazy;

use crate::error::{Error, Result};

/// The image used when `DOCKER_HARNESS_IMAGE` is unset.
pub const DEFAULT_IMAGE: &str = "alpine:3.19.1";

/// Where environment values come from.
pub(crate) trait Env {
    fn var(&self, key: &str) -> Option<String>;
}

/// The real process environment.
pub(crate) struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
}

impl Env for HashMap<&str, &str> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).map(|v| v.to_string()).filter(|v| !v.is_empty())
    }
}

/// When to pull the session image (`DOCKER_HARNESS_PULL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PullPolicy {
    /// Pull only when the image is absent (the default).
    Missing,
    /// Pull once per session even when present.
    Always,
    /// Never pull; fail at once when absent.
    Never,
}

/// Whether to leave a test's resources behind for debugging (`DOCKER_HARNESS_KEEP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepPolicy {
    /// Always remove (the default).
    Never,
    /// Keep when the test's thread is panicking at teardown (a failed assertion or unwrap).
    OnFailure,
    /// Always keep.
    Always,
}

/// When a context prints its containers' last log lines on stderr (`DOCKER_HARNESS_LOGS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogPolicy {
    /// When the test failed: its thread is panicking, or it returned `Err` through
    /// [`TestContext::run`](crate::TestContext::run) (the default).
    OnFailure,
    /// After every test, passed or failed.
    Always,
    /// Never.
    Never,
}

/// What the pre-test check does with orphans (`DOCKER_HARNESS_PREFLIGHT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PreflightPolicy {
    /// Remove orphans and print a one-line summary (the default).
    Clean,
    /// Stop the session with the list of orphans and the command that removes them.
    Fail,
    /// Only print them.
    Warn,
}

#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) image: String,
    pub(crate) pull: PullPolicy,
    pub(crate) mirror: Option<String>,
    pub(crate) keep: KeepPolicy,
    pub(crate) keep_ttl: Duration,
    pub(crate) preflight: PreflightPolicy,
    /// How long a resource of another host is presumed in use (its `expires` label).
    pub(crate) ttl: Duration,
    /// When a context prints its containers' last log lines.
    pub(crate) logs: LogPolicy,
    /// How many of a container's last log lines it prints.
    pub(crate) log_lines: usize,
    /// How long one call to the daemon may wait for its answer (`DOCKER_HARNESS_REQUEST_TIMEOUT`).
    pub(crate) request_timeout: Duration,
}

/// How long one call waits for the daemon's answer unless `DOCKER_HARNESS_REQUEST_TIMEOUT`
/// says otherwise. Pulls, builds and followed logs stream their bodies past it: it bounds
/// the wait for their first answer only.
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// How many log lines a failed test shows of each container unless
/// `DOCKER_HARNESS_LOG_LINES` says otherwise.
pub(crate) const DEFAULT_LOG_LINES: usize = 50;

type EnvError = (&'static str, String, &'static str);

impl Settings {
    pub(crate) fn from_env(env: &dyn Env) -> std::result::Result<Settings, EnvError> {
        Ok(Settings {
            image: env.var("DOCKER_HARNESS_IMAGE").unwrap_or_else(|| DEFAULT_IMAGE.to_string()),
            pull: choice(env, "DOCKER_HARNESS_PULL", "missing, always or never", PULL_NAMES)?
                .unwrap_or(PullPolicy::Missing),
            mirror: match env.var("DOCKER_HARNESS_REGISTRY_MIRROR") {
                None => None,
                Some(m) if valid_mirror(&m) => Some(m.trim_end_matches('/').to_string()),
                Some(m) => return Err(("DOCKER_HARNESS_REGISTRY_MIRROR", m, "host:port, e.g. 127.0.0.1:5055")),
            },
            keep: choice(env, "DOCKER_HARNESS_KEEP", "never, on-failure or always", KEEP_NAMES)?
                .unwrap_or(KeepPolicy::Never),
            keep_ttl: parse(env, "DOCKER_HARNESS_KEEP_TTL", "a number of seconds", parse_secs)?
                .unwrap_or(Duration::from_secs(24 * 3600)),
            preflight: choice(env, "DOCKER_HARNESS_PREFLIGHT", "clean, fail or warn", PREFLIGHT_NAMES)?
                .unwrap_or(PreflightPolicy::Clean),
            ttl: parse(env, "DOCKER_HARNESS_TTL", "a number of seconds", parse_secs)?
                .unwrap_or(Duration::from_secs(3600)),
            logs: choice(env, "DOCKER_HARNESS_LOGS", "on-failure, always or never", LOG_NAMES)?
                .unwrap_or(LogPolicy::OnFailure),
            log_lines: parse(env, "DOCKER_HARNESS_LOG_LINES", "a whole number of lines, at least 1", |v| {
                v.parse::<usize>().ok().filter(|n| *n > 0)
            })?
            .unwrap_or(DEFAULT_LOG_LINES),
            request_timeout: parse(
                env,
                "DOCKER_HARNESS_REQUEST_TIMEOUT",
                "a whole number of seconds, at least 1",
                parse_secs,
            )?
            .unwrap_or(DEFAULT_REQUEST_TIMEOUT),
        })
    }
}

fn parse<T>(
    env: &dyn Env,
    var: &'static str,
    expected: &'static str,
    f: impl Fn(&str) -> Option<T>,
) -> std::result::Result<Option<T>, EnvError> {
    match env.var(var) {
        None => Ok(None),
        Some(v) => match f(v.trim()) {
            Some(t) => Ok(Some(t)),
            None => Err((var, v, expected)),
        },
    }
}

const PULL_NAMES: [(&str, PullPolicy); 3] =
    [("missing", PullPolicy::Missing), ("always", PullPolicy::Always), ("never", PullPolicy::Never)];
const KEEP_NAMES: [(&str, KeepPolicy); 3] =
    [("never", KeepPolicy::Never), ("on-failure", KeepPolicy::OnFailure), ("always", KeepPolicy::Always)];
const LOG_NAMES: [(&str, LogPolicy); 3] =
    [("on-failure", LogPolicy::OnFailure), ("always", LogPolicy::Always), ("never", LogPolicy::Never)];
const PREFLIGHT_NAMES: [(&str, PreflightPolicy); 3] =
    [("clean", PreflightPolicy::Clean), ("fail", PreflightPolicy::Fail), ("warn", PreflightPolicy::Warn)];

/// A variable whose value is one of `names`.
fn choice<T: Copy, const N: usize>(
    env: &dyn Env,
    var: &'static str,
    expected: &'static str,
    names: [(&str, T); N],
) -> std::result::Result<Option<T>, EnvError> {
    parse(env, var, expected, |v| names.into_iter().find(|(n, _)| *n == v).map(|(_, t)| t))
}

fn parse_secs(v: &str) -> Option<Duration> {
    v.parse::<u64>().ok().filter(|s| *s > 0).map(Duration::from_secs)
}

fn valid_mirror(m: &str) -> bool {
    let m = m.trim_end_matches('/');
    !m.is_empty()
        && !m.contains("://")
        && !m.contains(char::is_whitespace)
        && m.split_once(':').is_none_or(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
}

static SETTINGS: Lazy<std::result::Result<Settings, EnvError>> = Lazy::new(|| Settings::from_env(&ProcessEnv));

/// The settings of this process, read from its environment once.
pub(crate) fn settings() -> Result<&'static Settings> {
    SETTINGS.as_ref().map_err(|(var, value, expected)| Error::InvalidEnv { var, value: value.clone(), expected })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&'static str, &'static str)]) -> std::result::Result<Settings, EnvError> {
        let env: HashMap<&str, &str> = pairs.iter().copied().collect();
        Settings::from_env(&env)
    }

    #[test]
    fn defaults_pin_alpine_and_remove_everything() {
        let s = from(&[]).unwrap();
        assert_eq!(s.image, "alpine:3.19.1");
        assert_eq!(s.pull, PullPolicy::Missing);
        assert_eq!(s.keep, KeepPolicy::Never);
        assert_eq!(s.preflight, PreflightPolicy::Clean);
        assert_eq!(s.mirror, None);
        assert_eq!(s.keep_ttl, Duration::from_secs(86400));
        assert_eq!((s.logs, s.log_lines), (LogPolicy::OnFailure, 50));
    }

    #[test]
    fn every_switch_is_read() {
        let s = from(&[
            ("DOCKER_HARNESS_IMAGE", "busybox:1"),
            ("DOCKER_HARNESS_PULL", "never"),
            ("DOCKER_HARNESS_KEEP", "on-failure"),
            ("DOCKER_HARNESS_KEEP_TTL", "60"),
            ("DOCKER_HARNESS_PREFLIGHT", "fail"),
            ("DOCKER_HARNESS_REGISTRY_MIRROR", "127.0.0.1:5055/"),
            ("DOCKER_HARNESS_LOGS", "always"),
            ("DOCKER_HARNESS_LOG_LINES", " 200 "),
        ])
        .unwrap();
        assert_eq!((s.logs, s.log_lines), (LogPolicy::Always, 200));
        assert_eq!(s.image, "busybox:1");
        assert_eq!(s.pull, PullPolicy::Never);
        assert_eq!(s.keep, KeepPolicy::OnFailure);
        assert_eq!(s.keep_ttl, Duration::from_secs(60));
        assert_eq!(s.preflight, PreflightPolicy::Fail);
        assert_eq!(s.mirror.as_deref(), Some("127.0.0.1:5055"));
    }

    #[test]
    fn a_bad_value_names_the_variable_and_what_would_do() {
        let (var, value, expected) = from(&[("DOCKER_HARNESS_PULL", "sometimes")]).unwrap_err();
        assert_eq!((var, value.as_str()), ("DOCKER_HARNESS_PULL", "sometimes"));
        assert!(expected.contains("missing"));
        let err = Error::InvalidEnv { var, value, expected };
        assert!(err.to_string().contains("help: fix or unset DOCKER_HARNESS_PULL"));
    }

    #[test]
    fn a_mirror_with_a_scheme_or_bad_port_is_refused() {
        assert!(from(&[("DOCKER_HARNESS_REGISTRY_MIRROR", "http://mirror:5000")]).is_err());
        assert!(from(&[("DOCKER_HARNESS_REGISTRY_MIRROR", "mirror:port")]).is_err());
        assert!(from(&[("DOCKER_HARNESS_REGISTRY_MIRROR", "mirror.local")]).is_ok());
    }

    #[test]
    fn a_log_policy_is_one_of_three_words_and_a_line_count_a_positive_number() {
        assert_eq!(from(&[("DOCKER_HARNESS_LOGS", "never")]).unwrap().logs, LogPolicy::Never);
        let (var, value, expected) = from(&[("DOCKER_HARNESS_LOGS", "on_failure")]).unwrap_err();
        assert_eq!((var, value.as_str()), ("DOCKER_HARNESS_LOGS", "on_failure"));
        assert_eq!(expected, "on-failure, always or never");
        for bad in ["0", "-3", "fifty", "1.5"] {
            let pairs = [("DOCKER_HARNESS_LOG_LINES", bad)];
            let env: HashMap<&str, &str> = pairs.into_iter().collect();
            let (var, value, expected) = Settings::from_env(&env).unwrap_err();
            assert_eq!((var, value.as_str()), ("DOCKER_HARNESS_LOG_LINES", bad));
            let text = Error::InvalidEnv { var, value, expected }.to_string();
            assert!(
                text.contains("at least 1") && text.contains("help: fix or unset DOCKER_HARNESS_LOG_LINES"),
                "{text}"
            );
        }
    }

    /// Every switch this module reads, given garbage: one error that names the variable, the
    /// value as given and what it accepts.
    #[test]
    fn every_switch_given_garbage_names_itself_its_value_and_what_it_accepts() {
        let table: [(&str, &[&str], &str); 9] = [
            ("DOCKER_HARNESS_PULL", &["sometimes", "MISSING", "1"], "missing, always or never"),
            ("DOCKER_HARNESS_REGISTRY_MIRROR", &["http://m:5000", "m:port", "a b:1", ":5000"], "host:port"),
            ("DOCKER_HARNESS_KEEP", &["yes", "on_failure", "\u{1F4A5}"], "never, on-failure or always"),
            ("DOCKER_HARNESS_KEEP_TTL", &["0", "-1", "1h", "1e3", "99999999999999999999"], "number of seconds"),
            ("DOCKER_HARNESS_PREFLIGHT", &["remove", "Clean"], "clean, fail or warn"),
            ("DOCKER_HARNESS_TTL", &["0", "soon", "3.5"], "number of seconds"),
            ("DOCKER_HARNESS_LOGS", &["all", "true"], "on-failure, always or never"),
            ("DOCKER_HARNESS_LOG_LINES", &["0", "-3", "lots"], "at least 1"),
            ("DOCKER_HARNESS_REQUEST_TIMEOUT", &["0", "2m", "-5", "forever", "1.5"], "seconds, at least 1"),
        ];
        for (var, values, accepted) in table {
            for value in values {
                let pairs = [(var, *value)];
                let env: HashMap<&str, &str> = pairs.into_iter().collect();
                let (named, got, expected) = Settings::from_env(&env).unwrap_err();
                assert_eq!((named, got.as_str()), (var, *value));
                let text = Error::InvalidEnv { var: named, value: got, expected }.to_string();
                assert!(
                    text.contains(var) && text.contains(accepted) && text.contains(&format!("{value:?}")),
                    "{text}"
                );
                assert!(text.contains(&format!("help: fix or unset {var}")), "{text}");
            }
        }
    }

    #[test]
    fn a_request_timeout_is_read_in_whole_seconds() {
        assert_eq!(from(&[]).unwrap().request_timeout, DEFAULT_REQUEST_TIMEOUT);
        assert_eq!(from(&[("DOCKER_HARNESS_REQUEST_TIMEOUT", " 8 ")]).unwrap().request_timeout, Duration::from_secs(8));
    }

    #[test]
    fn a_zero_or_negative_ttl_is_refused() {
        assert!(from(&[("DOCKER_HARNESS_KEEP_TTL", "0")]).is_err());
        assert!(from(&[("DOCKER_HARNESS_TTL", "-5")]).is_err());
    }
}
