//! `qbind-localnet`'s command line: everything has a default.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use qbind_node_ref::localnet::options::{KillSpec, Rate, parse_duration};

/// How the summary is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Output {
    /// Lines for people.
    Text,
    /// One JSON object on stdout (progress lines stay on stderr).
    Json,
}

/// Run a local QBIND network of validator processes and load it with
/// signed transfers through the public API.
#[derive(Debug, Parser)]
#[command(name = "qbind-localnet", version, about)]
pub(crate) struct Args {
    /// Validator processes (one `qbind-node` each, KEMTLS on 127.0.0.1).
    #[arg(long, default_value_t = 4)]
    pub(crate) validators: usize,
    /// How long the load runs (30s, 2m, 500ms).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub(crate) duration: Duration,
    /// Transfers per second (open loop), or 0 / max: a closed loop that
    /// keeps --in-flight transfers waiting for commit.
    #[arg(long, default_value = "max")]
    pub(crate) rate: Rate,
    /// Closed loop: transfers submitted and not yet committed, at most.
    #[arg(long, default_value_t = 1_000)]
    pub(crate) in_flight: usize,
    /// Funded accounts the transfers move between (fresh keys).
    #[arg(long, default_value_t = 1_000)]
    pub(crate) accounts: usize,
    /// Keep the network here (a new directory; default: a temporary one,
    /// removed at the end unless the run failed).
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// VALIDATOR@SECONDS[+DOWN]: SIGKILL that validator's process that long
    /// after the load starts and restart it on its data directory DOWN
    /// seconds later (default 3). Repeatable.
    #[arg(long)]
    pub(crate) kill: Vec<KillSpec>,
    /// Leave the network running after the summary, print the API URLs and
    /// stop on Ctrl-C.
    #[arg(long)]
    pub(crate) keep: bool,
    /// Validator i's P2P port is this + i, its API port this + validators
    /// + i, its metrics port this + 2 × validators + i.
    #[arg(long, default_value_t = 29_000)]
    pub(crate) base_port: u16,
    /// The validators' base view timeout in milliseconds.
    #[arg(long, default_value_t = 1_000)]
    pub(crate) base_timeout_ms: u64,
    /// Summary format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub(crate) output: Output,
}

impl Args {
    /// Checks clap cannot express.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.validators == 0 {
            return Err("--validators must be at least 1".into());
        }
        if self.accounts < 2 {
            return Err("--accounts must be at least 2".into());
        }
        if self.in_flight == 0 {
            return Err("--in-flight must be at least 1".into());
        }
        let ports = 3 * self.validators;
        if usize::from(self.base_port) + ports > usize::from(u16::MAX) {
            return Err("--base-port + 3 × validators exceeds 65535".into());
        }
        if let Some(k) = self.kill.iter().find(|k| k.validator >= self.validators) {
            return Err(format!(
                "--kill {}@…: there are only {} validators",
                k.validator, self.validators
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        let args =
            Args::try_parse_from(std::iter::once("qbind-localnet").chain(args.iter().copied()))
                .map_err(|e| e.to_string())?;
        args.check()?;
        Ok(args)
    }

    #[test]
    fn defaults_need_nothing() {
        let a = parse(&[]).expect("defaults");
        assert_eq!(a.validators, 4);
        assert_eq!(a.duration, Duration::from_secs(30));
        assert_eq!(a.rate, Rate::Closed);
        assert!(a.kill.is_empty());
    }

    #[test]
    fn kill_flags_parse_and_are_checked_against_the_validators() {
        let a = parse(&["--kill", "2@5", "--kill", "1@10+2", "--duration", "20s"]).expect("kills");
        assert_eq!(a.kill.len(), 2);
        assert_eq!(a.kill[0].validator, 2);
        assert_eq!(a.kill[0].at, Duration::from_secs(5));
        assert_eq!(a.kill[1].restart_after, Duration::from_secs(2));
        assert!(parse(&["--kill", "4@5"]).is_err(), "validator 4 of 4");
        assert!(parse(&["--kill", "two@5"]).is_err());
        assert!(parse(&["--rate", "fast"]).is_err());
        assert_eq!(
            parse(&["--rate", "120"]).expect("rate").rate,
            Rate::Open(120.0)
        );
        assert_eq!(
            parse(&["--duration", "500ms"]).expect("ms").duration,
            Duration::from_millis(500)
        );
        assert!(parse(&["--duration", "0s"]).is_err());
    }
}
