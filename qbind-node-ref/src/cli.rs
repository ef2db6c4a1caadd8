//! What the operator tools share (docs/operator-tools.md "Every tool"):
//! their exit statuses, the `--output text|json` choice and how a tool
//! reports its result, so that a script driving `qbind-admin`,
//! `qbind-snapshot`, `qbind-envelope`, `qbind-validator-registry`,
//! `qbind-key-rotation`, `qbind-keygen` or `qbind-genesis` reads them all
//! the same way:
//!
//! - the result goes to stdout (with `--output json`, one JSON value);
//! - a failure goes to stderr as `TOOL: message` and, with `--output json`,
//!   also to stdout as `{"result": "error", "error": "message"}`;
//! - the exit status is [`EXIT_OK`], [`EXIT_FAILED`] or [`EXIT_USAGE`]
//!   (clap's own for bad arguments). Which failure is which is each
//!   tool's to say (docs/operator-tools.md); `qbind-keygen` and
//!   `qbind-key-rotation` give [`EXIT_FAILED`] for every problem they find,
//!   `qbind-genesis` [`EXIT_USAGE`].

use std::process::ExitCode;

/// Done (for a check: it passed).
pub const EXIT_OK: u8 = 0;
/// The request was well formed and the answer is no: the node refused or
/// the action failed, a verification failed, the input is invalid.
pub const EXIT_FAILED: u8 = 1;
/// Usage: bad arguments, an unreadable or malformed file, no connection
/// (also clap's status for arguments it refuses).
pub const EXIT_USAGE: u8 = 2;

/// `--output`: how a tool prints its result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON object on stdout, also for a failure.
    Json,
}

/// Why a tool failed, with its exit status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// [`EXIT_FAILED`] or [`EXIT_USAGE`].
    pub code: u8,
    /// What went wrong, for stderr.
    pub message: String,
}

impl Failure {
    /// Refused or failed ([`EXIT_FAILED`]).
    #[must_use]
    pub fn failed(message: impl Into<String>) -> Self {
        Failure {
            code: EXIT_FAILED,
            message: message.into(),
        }
    }

    /// Bad usage or input ([`EXIT_USAGE`]).
    #[must_use]
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    /// What `--output json` prints on stdout for this failure.
    #[must_use]
    pub fn json(&self) -> String {
        serde_json::json!({ "result": "error", "error": self.message }).to_string()
    }

    /// Print this failure (stderr, and stdout with `--output json`) and
    /// give the tool's exit status.
    #[must_use]
    pub fn report(&self, tool: &str, output: Output) -> ExitCode {
        if output == Output::Json {
            println!("{}", self.json());
        }
        eprintln!("{tool}: {}", self.message);
        ExitCode::from(self.code)
    }
}

/// End a tool: print its result on stdout (status 0) or report its
/// failure ([`Failure::report`]).
#[must_use]
pub fn finish(tool: &str, output: Output, result: Result<String, Failure>) -> ExitCode {
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::from(EXIT_OK)
        }
        Err(f) => f.report(tool, output),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_carry_their_status_and_json() {
        let f = Failure::failed("refused \"x\"");
        assert_eq!(f.code, EXIT_FAILED);
        let v: serde_json::Value = serde_json::from_str(&f.json()).expect("json");
        assert_eq!(v["result"], "error");
        assert_eq!(v["error"], "refused \"x\"");
        assert_eq!(Failure::usage("bad").code, EXIT_USAGE);
        assert_eq!(Output::default(), Output::Text);
        use clap::ValueEnum;
        assert_eq!(
            Output::from_str("json", false).expect("json parses"),
            Output::Json
        );
    }
}
