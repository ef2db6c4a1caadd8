//! `qbind-node`'s log output (`--log-format`, `--log-level`): `tracing`
//! events on stderr, as text or as one JSON object per line. Progress
//! lines of the built-in load generator stay on stdout.

use crate::args::LogFormat;

/// Install the process's log subscriber (once; a second call is ignored).
pub(crate) fn init(format: LogFormat, level: tracing::Level) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false);
    // An error means a subscriber is already installed: keep it.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
