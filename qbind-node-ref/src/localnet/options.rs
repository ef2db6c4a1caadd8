//! `qbind-localnet`'s option values: `--kill V@SECS[+DELAY]` and `--rate`.

use std::time::Duration;

/// How long a killed validator stays down unless `--kill` says otherwise.
pub const DEFAULT_RESTART_DELAY: Duration = Duration::from_secs(3);

/// `--duration`: "30s", "2m", "500ms" or plain seconds; positive and
/// finite (also read by `benches/localnet_targets.rs`).
///
/// # Errors
/// The text, and the forms expected.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.strip_suffix("ms") {
        Some(n) => (n, 0.001),
        None => match text.strip_suffix('m') {
            Some(n) => (n, 60.0),
            None => (text.strip_suffix('s').unwrap_or(text), 1.0),
        },
    };
    number
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0 && *v * unit < 1e7)
        .map(|v| Duration::from_secs_f64(v * unit))
        .ok_or_else(|| format!("{text:?}: expected a duration such as 30s, 2m or 500ms"))
}

/// Why an option value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    /// `--kill` is not `V@SECS` or `V@SECS+DELAY`.
    #[error(
        "--kill {0:?}: expected VALIDATOR@SECONDS or VALIDATOR@SECONDS+RESTART_DELAY (e.g. 2@5 or 2@5+3)"
    )]
    KillSyntax(String),
    /// `--rate` is not a number, `0` or `max`.
    #[error("--rate {0:?}: expected transfers per second, or 0 / max for a closed loop")]
    RateSyntax(String),
}

/// `--kill V@SECS[+DELAY]`: SIGKILL validator `validator` `at` after the
/// load starts, restart it on the same data directory `restart_after`
/// later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KillSpec {
    /// The validator's index.
    pub validator: usize,
    /// When it is killed, from the start of the load.
    pub at: Duration,
    /// How long it stays down.
    pub restart_after: Duration,
}

fn seconds(text: &str) -> Option<Duration> {
    let secs: f64 = text.trim_end_matches('s').parse().ok()?;
    (0.0..1e6)
        .contains(&secs)
        .then(|| Duration::from_secs_f64(secs))
}

impl std::str::FromStr for KillSpec {
    type Err = OptionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || OptionError::KillSyntax(text.to_owned());
        let (validator, rest) = text.split_once('@').ok_or_else(bad)?;
        let validator = validator.trim().parse().map_err(|_| bad())?;
        let (at, delay) = match rest.split_once('+') {
            Some((at, delay)) => (at, Some(delay)),
            None => (rest, None),
        };
        let at = seconds(at.trim()).ok_or_else(bad)?;
        let restart_after = match delay {
            Some(d) => seconds(d.trim()).ok_or_else(bad)?,
            None => DEFAULT_RESTART_DELAY,
        };
        Ok(KillSpec {
            validator,
            at,
            restart_after,
        })
    }
}

/// `--rate`: an open loop at a fixed rate, or a closed loop that keeps a
/// bounded number of transfers in flight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// Transfers per second, whatever the network does with them.
    Open(f64),
    /// As many as the network accepts, with a bounded number in flight.
    Closed,
}

impl std::str::FromStr for Rate {
    type Err = OptionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("max") {
            return Ok(Rate::Closed);
        }
        match text.parse::<f64>() {
            Ok(r) if r.is_finite() && r > 0.0 => Ok(Rate::Open(r)),
            Ok(r) if r.is_finite() && r >= 0.0 => Ok(Rate::Closed),
            _ => Err(OptionError::RateSyntax(text.to_owned())),
        }
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rate::Open(r) => write!(f, "{r}"),
            Rate::Closed => f.write_str("max"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_specs_parse_with_and_without_a_restart_delay() {
        assert_eq!(
            "2@5".parse::<KillSpec>(),
            Ok(KillSpec {
                validator: 2,
                at: Duration::from_secs(5),
                restart_after: DEFAULT_RESTART_DELAY
            })
        );
        assert_eq!(
            "0@1.5+4s".parse::<KillSpec>(),
            Ok(KillSpec {
                validator: 0,
                at: Duration::from_millis(1500),
                restart_after: Duration::from_secs(4)
            })
        );
        for bad in [
            "", "2", "@5", "x@5", "2@", "2@-1", "2@5+", "2@5+x", "2@nan", "-1@3",
        ] {
            assert!(
                matches!(bad.parse::<KillSpec>(), Err(OptionError::KillSyntax(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn rates_are_open_or_closed() {
        assert_eq!("250".parse::<Rate>(), Ok(Rate::Open(250.0)));
        assert_eq!("0".parse::<Rate>(), Ok(Rate::Closed));
        assert_eq!("MAX".parse::<Rate>(), Ok(Rate::Closed));
        for bad in ["-3", "inf", "fast", ""] {
            assert!(bad.parse::<Rate>().is_err(), "{bad:?} accepted");
        }
    }
}
