//! Upgrade envelopes signed by the M-of-N council (runbook §11): the file
//! formats, their checks and canonical digest ([`envelope`]), and the
//! council and its thresholds ([`council`]). `qbind-envelope` is the
//! command-line tool over them (docs/operator-tools.md); the parsers live
//! here so that the fuzz target `upgrade_envelope` runs them.

pub mod council;
pub mod envelope;
