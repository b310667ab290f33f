//! Exit codes: the contract with CI scripts. They are listed in `--help`
//! (see [`EXIT_CODES_HELP`]) and in the README; changing one breaks pipelines.

use std::{fmt, process::ExitCode};

/// How a client command ended. Each variant is a documented exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Done; for `wait`/`watch`, the rollout succeeded.
    Success,
    /// Anything else: the server refused the request (409, 422 …), a file
    /// could not be read, the operator declined a confirmation.
    Failure,
    /// Bad command line (clap uses 2 too, so a wrong flag and a refused
    /// unconfirmed action look the same to a script).
    Usage,
    RolledBack,
    Failed,
    Aborted,
    TimedOut,
    /// 401 or 403: no token, a bad token, or a role too small.
    Auth,
    /// The server could not be reached or did not answer in time.
    Connection,
    /// The rollout (or plan, or other named thing) does not exist.
    NotFound,
    /// Ctrl-C stopped `watch` (the shell convention, 128 + SIGINT).
    Interrupted,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Failure => 1,
            Self::Usage => 2,
            Self::RolledBack => 10,
            Self::Failed => 11,
            Self::Aborted => 12,
            Self::TimedOut => 13,
            Self::Auth => 20,
            Self::Connection => 21,
            Self::NotFound => 22,
            Self::Interrupted => 130,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}

/// Shown after every client command's `--help`; keep in step with [`Exit`]
/// and the README's CLI section.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
   0  success; for `rollout wait|watch` and `release create --wait`: the rollout succeeded
   1  the server refused the request (e.g. 409, 422), or another error
   2  usage error (bad arguments; `rollback`/`abort` without --yes off a terminal)
  10  the rollout was rolled back
  11  the rollout failed
  12  the rollout was aborted
  13  timed out (--timeout) before the rollout ended
  20  authentication or authorization error (401/403): check --token / MERIDIAN_TOKEN
  21  cannot reach the server: check --server / MERIDIAN_URL
  22  not found (e.g. an unknown rollout id)
 130  interrupted (Ctrl-C during `rollout watch`)";

/// What went wrong, as one line for a person, and the code to exit with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    pub exit: Exit,
    pub message: String,
}

impl CliError {
    pub fn new(exit: Exit, message: impl Into<String>) -> CliError {
        CliError {
            exit,
            message: message.into(),
        }
    }

    pub fn failure(message: impl Into<String>) -> CliError {
        CliError::new(Exit::Failure, message)
    }

    pub fn usage(message: impl Into<String>) -> CliError {
        CliError::new(Exit::Usage, message)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exit_code_is_listed_in_the_help_text() {
        let all = [
            Exit::Success,
            Exit::Failure,
            Exit::Usage,
            Exit::RolledBack,
            Exit::Failed,
            Exit::Aborted,
            Exit::TimedOut,
            Exit::Auth,
            Exit::Connection,
            Exit::NotFound,
            Exit::Interrupted,
        ];
        for exit in all {
            let line = format!("{:>4}  ", exit.code());
            assert!(
                EXIT_CODES_HELP.lines().any(|l| l.starts_with(&line)),
                "{exit:?} ({}) is missing from EXIT_CODES_HELP",
                exit.code()
            );
        }
    }
}
