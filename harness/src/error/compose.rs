//! What goes wrong with a compose file: its own enum, wrapped by [`super::Error::Compose`],
//! so that the crate's error stays one page.

use std::path::PathBuf;

use super::parts::indent;

/// A compose file could not be brought up or used ([`super::Error::Compose`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ComposeError {
    /// Neither the `docker compose` plugin nor the standalone `docker-compose` can be run.
    #[error(
        "no compose program can run a compose file: tried {tried}.\n  \
         help: install the `docker compose` plugin or the standalone `docker-compose` \
         (Debian: `apt-get install docker-compose`), or name the command in \
         DOCKER_HARNESS_COMPOSE (e.g. `docker-compose`, or `docker compose`)"
    )]
    Unavailable {
        /// What was tried, and how each failed.
        tried: String,
    },

    /// A compose file asks for what parallel tests would share (a `container_name`, a fixed
    /// network or volume name), names an absent image, or cannot be read.
    #[error("compose file {} cannot be brought up as it is: {reason}.\n  help: {help}", .file.display())]
    File {
        /// The file.
        file: PathBuf,
        /// What is wrong with it.
        reason: String,
        /// The fix.
        help: String,
    },

    /// A compose command failed.
    #[error(
        "`{command}` failed for compose project {project} ({status}); its last {} line(s) of output:\n{}\n  \
         help: the output above is compose's own and says why", .output.len(), indent(.output)
    )]
    Failed {
        /// The project name the harness gave the file.
        project: String,
        /// The command, as it would be typed.
        command: String,
        /// How it ended, and which compose it was.
        status: String,
        /// The last lines of its output (stderr, then stdout).
        output: Vec<String>,
    },

    /// A compose project has no service of that name.
    #[error(
        "compose project {project} has no service {service:?}; it has {}.\n  help: name one of those",
        .known.join(", ")
    )]
    NoService {
        /// The project.
        project: String,
        /// The service asked for.
        service: String,
        /// The services it has.
        known: Vec<String>,
    },
}
