//! `qbind-envelope`: inspect, digest, sign and verify upgrade envelopes
//! (runbook §11.2, §11.6, §11.8; format and exit codes in
//! docs/operator-tools.md).
//!
//! ```text
//! qbind-envelope inspect upgrade-envelope.json [--output json]
//! qbind-envelope digest upgrade-envelope.json [--output json]
//! qbind-envelope verify --envelope upgrade-envelope.json --council-keys council-pubkeys.json \
//!     [--binary /path/to/qbind-node --platform linux-x86_64] [--output json]
//! qbind-envelope sign upgrade-envelope.json --member council-3 --key council-3/consensus.key \
//!     [--passphrase-file FILE | --passphrase-env VAR] [--council-keys council-pubkeys.json]
//! ```
//!
//! Exit codes: 0 success (for `verify`: threshold met, every signature
//! valid, binary hash matches), 1 verification failed, 2 invalid arguments,
//! unreadable or malformed files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use qbind_core::key_rotation::KeyRole;
use qbind_core::types::Hash32;
use qbind_signer::keystore::{self, KdfPolicy, Passphrase};
use serde_json::json;

use qbind_node_ref::cli::{EXIT_FAILED, EXIT_OK, Failure, Output};
use qbind_node_ref::upgrade::council::{self, Council, SignatureReport, check_approvals};
use qbind_node_ref::upgrade::envelope::{Approval, Envelope, parse_hash};

#[derive(Parser)]
#[command(
    name = "qbind-envelope",
    version,
    about = "Inspect, digest, sign and verify QBIND upgrade envelopes",
    after_help = "Exit codes: 0 success (verify: threshold met, every signature valid, binary hash \
                  matches); 1 verification failed; 2 invalid arguments, unreadable or malformed files."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the envelope's fields, approvals and digest.
    Inspect {
        /// The envelope file.
        envelope: PathBuf,
        /// text or json.
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Print the canonical digest (SHA3-256, hex) the council signs.
    Digest {
        /// The envelope file.
        envelope: PathBuf,
        /// text or json.
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Check the council signatures against the threshold (5 of 7 normal,
    /// 4 of 7 emergency) and, with --binary, the binary's SHA3-256.
    Verify {
        /// The envelope file.
        #[arg(long)]
        envelope: PathBuf,
        /// The council file (7 members' public keys).
        #[arg(long)]
        council_keys: PathBuf,
        /// A release binary whose hash must match the envelope's.
        #[arg(long)]
        binary: Option<PathBuf>,
        /// The platform of --binary (default: this machine's, e.g. linux-x86_64).
        #[arg(long, requires = "binary")]
        platform: Option<String>,
        /// text or json.
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Add a council member's signature to the envelope.
    Sign {
        /// The envelope file (rewritten atomically unless --to is given).
        envelope: PathBuf,
        /// The member's name in the council file.
        #[arg(long)]
        member: String,
        /// The member's encrypted ML-DSA-44 key file (qbind-keygen, consensus role).
        #[arg(long)]
        key: PathBuf,
        /// File with the key's passphrase (preferred over --passphrase-env).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// Environment variable with the key's passphrase.
        #[arg(long, default_value = "QBIND_COUNCIL_PASSPHRASE")]
        passphrase_env: String,
        /// Check that the key is the member's key in this council file.
        #[arg(long)]
        council_keys: Option<PathBuf>,
        /// Write the signed envelope here instead.
        #[arg(long)]
        to: Option<PathBuf>,
    },
}

/// A command's outcome: what to print and the exit code.
struct Outcome {
    text: String,
    code: u8,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let output = match &cli.command {
        Command::Inspect { output, .. }
        | Command::Digest { output, .. }
        | Command::Verify { output, .. } => *output,
        Command::Sign { .. } => Output::Text,
    };
    match run(cli.command) {
        Ok(outcome) => {
            println!("{}", outcome.text);
            ExitCode::from(outcome.code)
        }
        Err(message) => Failure::usage(message).report("qbind-envelope", output),
    }
}

fn run(command: Command) -> Result<Outcome, String> {
    match command {
        Command::Inspect { envelope, output } => inspect(&envelope, output),
        Command::Digest { envelope, output } => {
            let e = Envelope::load(&envelope).map_err(|e| e.to_string())?;
            let digest = hex::encode(e.digest().map_err(|e| e.to_string())?.as_bytes());
            let text = match output {
                Output::Text => digest,
                Output::Json => json!({ "digest": digest }).to_string(),
            };
            Ok(Outcome {
                text,
                code: EXIT_OK,
            })
        }
        Command::Verify {
            envelope,
            council_keys,
            binary,
            platform,
            output,
        } => verify(
            &envelope,
            &council_keys,
            binary.as_deref(),
            platform,
            output,
        ),
        Command::Sign {
            envelope,
            member,
            key,
            passphrase_file,
            passphrase_env,
            council_keys,
            to,
        } => {
            let passphrase =
                Passphrase::from_file_or_env(passphrase_file.as_deref(), &passphrase_env)
                    .map_err(|e| e.to_string())?;
            sign(
                &envelope,
                &member,
                &key,
                &passphrase,
                council_keys.as_deref(),
                to.as_deref().unwrap_or(&envelope),
            )
        }
    }
}

fn inspect(path: &Path, output: Output) -> Result<Outcome, String> {
    let e = Envelope::load(path).map_err(|e| e.to_string())?;
    let digest = hex::encode(e.digest().map_err(|e| e.to_string())?.as_bytes());
    let text = match output {
        Output::Json => json!({ "digest": digest, "envelope": e }).to_string(),
        Output::Text => {
            let mut lines = vec![
                format!("upgrade envelope (format {})", e.format_version),
                format!("  network:           {}", e.network),
                format!("  protocol version:  {}", e.protocol_version),
                format!(
                    "  kind:              {} (needs {} of {} council signatures)",
                    e.kind.name(),
                    council::threshold(e.kind),
                    council::COUNCIL_SIZE
                ),
                format!("  activation height: {}", e.activation.height),
                "  binary hashes (SHA3-256):".to_string(),
            ];
            for (platform, hash) in &e.binary_hashes {
                lines.push(format!("    {platform}: {hash}"));
            }
            lines.push(format!(
                "  council approvals: {} (not verified here: use `verify`)",
                e.council_approvals.len()
            ));
            for (i, a) in e.council_approvals.iter().enumerate() {
                let short: String = a.signature.chars().take(16).collect();
                lines.push(format!("    #{i} {}: {short}…", a.member));
            }
            lines.push(format!("  digest:            {digest}"));
            lines.join("\n")
        }
    };
    Ok(Outcome {
        text,
        code: EXIT_OK,
    })
}

/// The binary check of `verify`.
#[derive(serde::Serialize)]
struct BinaryReport {
    path: String,
    platform: String,
    expected: Option<String>,
    actual: String,
    matches: bool,
}

fn check_binary(
    e: &Envelope,
    path: &Path,
    platform: Option<String>,
) -> Result<BinaryReport, String> {
    let platform =
        platform.unwrap_or_else(|| format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH));
    let bytes = std::fs::read(path).map_err(|err| format!("{}: {err}", path.display()))?;
    let actual = Hash32::digest(&bytes);
    let expected = e.binary_hashes.get(&platform).cloned();
    let matches = expected
        .as_deref()
        .and_then(parse_hash)
        .is_some_and(|h| h == actual.0);
    Ok(BinaryReport {
        path: path.display().to_string(),
        platform,
        expected,
        actual: hex::encode(actual.as_bytes()),
        matches,
    })
}

fn verify(
    envelope_path: &Path,
    council_path: &Path,
    binary: Option<&Path>,
    platform: Option<String>,
    output: Output,
) -> Result<Outcome, String> {
    let e = Envelope::load(envelope_path).map_err(|e| e.to_string())?;
    let council = Council::load(council_path).map_err(|e| e.to_string())?;
    let report = check_approvals(&e, &council).map_err(|e| e.to_string())?;
    let binary = binary.map(|b| check_binary(&e, b, platform)).transpose()?;
    let digest = hex::encode(e.digest().map_err(|e| e.to_string())?.as_bytes());
    let failures = failures(&report, binary.as_ref());
    let passed = failures.is_empty();
    let text = match output {
        Output::Json => json!({
            "result": if passed { "passed" } else { "failed" },
            "digest": digest,
            "network": e.network,
            "protocol_version": e.protocol_version,
            "kind": e.kind,
            "activation_height": e.activation.height,
            "signatures": report,
            "binary": binary,
            "failures": failures,
        })
        .to_string(),
        Output::Text => {
            let mut lines = vec![format!(
                "envelope {} ({} upgrade to {} on {}, activation height {})",
                envelope_path.display(),
                e.kind.name(),
                e.protocol_version,
                e.network,
                e.activation.height
            )];
            lines.push(format!("digest {digest}"));
            for a in &report.approvals {
                lines.push(format!(
                    "signature #{} by {}: {}",
                    a.index,
                    a.member,
                    a.verdict.text()
                ));
            }
            lines.push(format!(
                "{} of {} council members signed validly; a {} upgrade needs {}",
                report.valid,
                report.council_size,
                e.kind.name(),
                report.threshold
            ));
            if let Some(b) = &binary {
                lines.push(format!(
                    "binary {} ({}): sha3-256 {}, envelope {}: {}",
                    b.path,
                    b.platform,
                    b.actual,
                    b.expected
                        .as_deref()
                        .unwrap_or("(no hash for this platform)"),
                    if b.matches { "match" } else { "MISMATCH" }
                ));
            }
            if passed {
                lines.push("VERIFIED".to_string());
            } else {
                lines.push(format!("FAILED: {}", failures.join("; ")));
            }
            lines.join("\n")
        }
    };
    Ok(Outcome {
        text,
        code: if passed { EXIT_OK } else { EXIT_FAILED },
    })
}

/// Why verification failed (empty: it passed).
fn failures(report: &SignatureReport, binary: Option<&BinaryReport>) -> Vec<String> {
    use crate::council::SignatureVerdict::{Invalid, UnknownSigner};
    let mut out = Vec::new();
    if report.valid < report.threshold {
        out.push(format!(
            "threshold not met ({} of {} needed)",
            report.valid, report.threshold
        ));
    }
    let invalid = report
        .approvals
        .iter()
        .filter(|a| a.verdict == Invalid)
        .count();
    if invalid > 0 {
        out.push(format!("{invalid} invalid signature(s)"));
    }
    let unknown = report
        .approvals
        .iter()
        .filter(|a| a.verdict == UnknownSigner)
        .count();
    if unknown > 0 {
        out.push(format!("{unknown} signature(s) by unknown signers"));
    }
    if let Some(b) = binary {
        if b.expected.is_none() {
            out.push(format!(
                "the envelope has no hash for platform {}",
                b.platform
            ));
        } else if !b.matches {
            out.push("binary hash mismatch".to_string());
        }
    }
    debug_assert_eq!(
        out.is_empty(),
        report.passed() && binary.is_none_or(|b| b.matches)
    );
    out
}

fn sign(
    path: &Path,
    member: &str,
    key_path: &Path,
    passphrase: &Passphrase,
    council_path: Option<&Path>,
    to: &Path,
) -> Result<Outcome, String> {
    let mut e = Envelope::load(path).map_err(|e| e.to_string())?;
    if e.council_approvals.iter().any(|a| a.member == member) {
        return Err(format!("{member} has already signed this envelope"));
    }
    let key = keystore::load_key_file(
        key_path,
        None,
        KeyRole::Consensus,
        passphrase,
        &KdfPolicy::PRODUCTION,
    )
    .map_err(|e| e.to_string())?
    .into_signing_key()
    .ok_or_else(|| format!("{}: not an ML-DSA-44 key", key_path.display()))?;
    if let Some(council_path) = council_path {
        let council = Council::load(council_path).map_err(|e| e.to_string())?;
        match council.key_of(member) {
            None => return Err(format!("{member} is not in {}", council_path.display())),
            Some(k) if k != key.public_key() => {
                return Err(format!(
                    "{} is not {member}'s key in {}",
                    key_path.display(),
                    council_path.display()
                ));
            }
            Some(_) => {}
        }
    }
    let preimage = e.signing_preimage().map_err(|e| e.to_string())?;
    let signature = key.try_sign(&preimage).map_err(|e| e.to_string())?;
    qbind_core::crypto::verify(key.public_key(), &preimage, &signature)
        .map_err(|e| format!("self-check failed: {e}"))?;
    e.council_approvals.push(Approval {
        member: member.to_string(),
        signature: hex::encode(signature.as_bytes()),
    });
    e.check().map_err(|e| e.to_string())?;
    let mut bytes = serde_json::to_vec_pretty(&e).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    qbind_signer::durable::write_atomic(to, &bytes)
        .map_err(|err| format!("{}: {err}", to.display()))?;
    Ok(Outcome {
        text: format!(
            "{member} signed envelope digest {} ({} approval(s)); wrote {}",
            hex::encode(e.digest().map_err(|e| e.to_string())?.as_bytes()),
            e.council_approvals.len(),
            to.display()
        ),
        code: EXIT_OK,
    })
}
