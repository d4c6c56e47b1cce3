//! What a failed wait saw, and how log lines are laid out under an error's message.

use std::time::Duration;

/// What a failed wait saw: [`Error::WaitTimeout`](crate::Error::WaitTimeout) and [`Error::ExitedWhileWaiting`](crate::Error::ExitedWhileWaiting).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WaitFailure {
    /// The container's name.
    pub container: String,
    /// What was waited for, e.g. "print a line matching /ready/ on stdout".
    pub strategy: String,
    /// How long was waited.
    pub after: Duration,
    /// The container's state at the end, e.g. "running (health: starting)" or "exited".
    pub state: String,
    /// Its exit code, once it has exited.
    pub exit_code: Option<i64>,
    /// What the last check saw, e.g. "connection refused".
    pub last_attempt: String,
    /// The last lines of its logs (stdout and stderr, in order, each marked with its stream).
    pub logs: Vec<String>,
}

/// Log lines indented under an error message.
pub(crate) fn indent(lines: &[String]) -> String {
    if lines.is_empty() {
        return "    (no output)".to_string();
    }
    lines.iter().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}
