//! The validator processes: the genesis directory, `qbind-node init`, one
//! `qbind-node` per validator (own keys, KEMTLS on 127.0.0.1, the public
//! API on its own port), SIGKILL and restart, a clean stop, and what
//! `/proc` says about each process (peak RSS, CPU seconds).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use qbind_client::QbindClient;
use qbind_node_ref::genesis_dir::{LocalGenesis, LocalGenesisSpec, write_local_genesis};
use qbind_node_ref::profile::Profile;
use qbind_signer::keystore::{KdfPolicy, Passphrase};

use crate::cpu::Split;

/// How long a validator gets to stop after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// What `/proc` said about one process.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ProcSample {
    /// `VmHWM`: peak resident set, KiB.
    pub(crate) peak_rss_kib: u64,
    /// `VmRSS`: resident set now, KiB.
    pub(crate) rss_kib: u64,
    /// User + system CPU time, seconds.
    pub(crate) cpu_secs: f64,
}

/// `/proc/<pid>/status` `VmHWM` and `VmRSS`, and `/proc/<pid>/stat` utime + stime.
pub(crate) fn sample(pid: u32) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |field: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    let peak_rss_kib = kib("VmHWM:")?;
    let rss_kib = kib("VmRSS:")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at
    // field 3 (state); utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let hz = rustix::param::clock_ticks_per_second().max(1);
    Some(ProcSample {
        peak_rss_kib,
        rss_kib,
        cpu_secs: ticks as f64 / hz as f64,
    })
}

/// One validator process.
pub(crate) struct Validator {
    /// Its index.
    pub(crate) index: usize,
    /// Its API address.
    pub(crate) api: SocketAddr,
    /// A client of its API.
    pub(crate) client: QbindClient,
    /// Its `/metrics` address (the CPU split).
    metrics: SocketAddr,
    /// The CPU split of its earlier (killed) processes.
    split_before: Split,
    /// The last split read from the running process.
    split_last: Split,
    child: Option<Child>,
    /// CPU seconds of its earlier (killed) processes.
    cpu_before: f64,
    /// Peak RSS over its earlier processes.
    rss_before: u64,
    /// The last sample of the running process.
    last: ProcSample,
    /// Times it was restarted.
    pub(crate) restarts: u32,
    /// Its resident set over the run: (seconds since the load started, MiB).
    pub(crate) rss_series: Vec<(f64, f64)>,
}

impl Validator {
    /// CPU seconds over all its processes so far, and the highest peak RSS.
    pub(crate) fn usage(&mut self) -> ProcSample {
        if let Some(s) = self.child.as_ref().and_then(|c| sample(c.id())) {
            self.last = s;
        }
        ProcSample {
            peak_rss_kib: self.rss_before.max(self.last.peak_rss_kib),
            rss_kib: self.last.rss_kib,
            cpu_secs: self.cpu_before + self.last.cpu_secs,
        }
    }

    /// Record its resident set now (`at`: seconds since the load started);
    /// nothing while it is down.
    pub(crate) fn record_rss(&mut self, at: f64) {
        if let Some(s) = self.child.as_ref().and_then(|c| sample(c.id())) {
            self.last = s;
            self.rss_series.push((at, s.rss_kib as f64 / 1024.0));
        }
    }

    /// The CPU split over all its processes, as last read.
    pub(crate) fn split(&self) -> Split {
        crate::cpu::add(self.split_before, self.split_last)
    }

    /// Whether its process is running (not exited).
    pub(crate) fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

/// The network: its files and its processes. Dropping it kills every
/// process still running (by PID).
pub(crate) struct LocalNet {
    /// The genesis directory (keystores, accounts file).
    pub(crate) net_dir: PathBuf,
    /// The validators' data directory.
    data_dir: PathBuf,
    logs_dir: PathBuf,
    /// What was generated.
    pub(crate) genesis: LocalGenesis,
    node_bin: PathBuf,
    passphrase_file: PathBuf,
    base_timeout_ms: u64,
    /// The validators.
    pub(crate) validators: Vec<Validator>,
}

/// `qbind-node`, next to this executable.
pub(crate) fn node_binary() -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| format!("locating qbind-localnet: {e}"))?;
    let bin = me.with_file_name("qbind-node");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "qbind-node not found at {} (qbind-localnet runs the qbind-node built next to it: \
             cargo build --release -p qbind-node-ref --bins)",
            bin.display()
        ))
    }
}

/// A random passphrase for the throw-away keystores, in an owner-only file.
fn passphrase_file(dir: &Path) -> Result<PathBuf, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut bytes = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    let path = dir.join("keystore-passphrase");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(hex::encode(bytes).as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

impl LocalNet {
    /// Generate the genesis (fresh validator and account keys) in
    /// `root/net` and `qbind-node init` every validator's store in
    /// `root/data`. Nothing runs yet.
    pub(crate) fn create(
        root: &Path,
        validators: usize,
        accounts: usize,
        base_port: u16,
        base_timeout_ms: u64,
    ) -> Result<LocalNet, String> {
        let node_bin = node_binary()?;
        let net_dir = root.join("net");
        let data_dir = root.join("data");
        let logs_dir = root.join("logs");
        for dir in [&net_dir, &logs_dir] {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let passphrase_file = passphrase_file(&net_dir)?;
        let pass = Passphrase::from_file(&passphrase_file).map_err(|e| e.to_string())?;
        let spec = LocalGenesisSpec {
            profile: Profile::Devnet,
            validators,
            accounts,
            out: net_dir.clone(),
            ip: Some(Ipv4Addr::LOCALHOST.into()),
            loopback_per_validator: Some(false),
            base_port,
            // The floor of the production policy: these keys live for one run.
            kdf: KdfPolicy::PRODUCTION.min,
            // Its load generator reads accounts.json; no CLI key files for
            // thousands of accounts.
            cli_key_files: false,
        };
        let genesis = write_local_genesis(&spec, &pass).map_err(|e| e.to_string())?;
        let init = Command::new(&node_bin)
            .arg("init")
            .arg("--genesis")
            .arg(&genesis.genesis_path)
            .arg("-d")
            .arg(&data_dir)
            .stdout(Stdio::null())
            .output()
            .map_err(|e| format!("running {} init: {e}", node_bin.display()))?;
        if !init.status.success() {
            return Err(format!(
                "qbind-node init failed: {}",
                String::from_utf8_lossy(&init.stderr).trim()
            ));
        }
        let n = u16::try_from(validators).map_err(|_| "too many validators")?;
        let api_base = base_port.checked_add(n).ok_or("--base-port too high")?;
        let metrics_base = api_base.checked_add(n).ok_or("--base-port too high")?;
        let validators = (0..validators)
            .map(|i| {
                let port = api_base
                    .checked_add(u16::try_from(i).unwrap_or(u16::MAX))
                    .ok_or("--base-port too high")?;
                let api = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
                let metrics_port = metrics_base
                    .checked_add(u16::try_from(i).unwrap_or(u16::MAX))
                    .ok_or("--base-port too high")?;
                let metrics = SocketAddr::from((Ipv4Addr::LOCALHOST, metrics_port));
                let client =
                    QbindClient::new(&format!("http://{api}")).map_err(|e| e.to_string())?;
                Ok(Validator {
                    index: i,
                    api,
                    client,
                    metrics,
                    split_before: Split::default(),
                    split_last: Split::default(),
                    child: None,
                    cpu_before: 0.0,
                    rss_before: 0,
                    last: ProcSample::default(),
                    restarts: 0,
                    rss_series: Vec::new(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(LocalNet {
            net_dir,
            data_dir,
            logs_dir,
            genesis,
            node_bin,
            passphrase_file,
            base_timeout_ms,
            validators,
        })
    }

    /// Start validator `i`'s process (output appended to `logs/validator-<i>.log`).
    pub(crate) fn start(&mut self, i: usize) -> Result<(), String> {
        let log_path = self.logs_dir.join(format!("validator-{i}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("{}: {e}", log_path.display()))?;
        let err = log
            .try_clone()
            .map_err(|e| format!("{}: {e}", log_path.display()))?;
        let v = self
            .validators
            .get_mut(i)
            .ok_or_else(|| format!("no validator {i}"))?;
        let child = Command::new(&self.node_bin)
            .arg("--genesis")
            .arg(&self.genesis.genesis_path)
            .arg("-d")
            .arg(&self.data_dir)
            .args(["--validator-index", &i.to_string()])
            .args(["--signer-mode", "encrypted-fs"])
            .arg("--signer-keystore-path")
            .arg(LocalGenesis::keystore(&self.net_dir, i))
            .arg("--signer-passphrase-file")
            .arg(&self.passphrase_file)
            .args(["--load-generator", "false"])
            .args(["--api-addr", &v.api.to_string(), "--api-rate-limit", "0"])
            .args(["--metrics-addr", &v.metrics.to_string()])
            .args(["--base-timeout-ms", &self.base_timeout_ms.to_string()])
            // The pipe's other end is ours (kept in `Child::stdin`): when
            // this process ends, however it ends, the validator stops.
            .arg("--stop-with-stdin")
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.node_bin.display()))?;
        v.child = Some(child);
        v.last = ProcSample::default();
        Ok(())
    }

    /// SIGKILL validator `i` (its usage so far is kept).
    pub(crate) fn kill(&mut self, i: usize) {
        let Some(v) = self.validators.get_mut(i) else {
            return;
        };
        let usage = v.usage();
        if let Some(mut child) = v.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        v.cpu_before = usage.cpu_secs;
        v.rss_before = usage.peak_rss_kib;
        v.last = ProcSample::default();
        v.split_before = v.split();
        v.split_last = Split::default();
    }

    /// Read the CPU split of every running validator (or of `only`), all at
    /// once; a validator that does not answer keeps its last split.
    pub(crate) async fn refresh_splits(&mut self, only: Option<usize>) {
        let mut reads = tokio::task::JoinSet::new();
        for v in &self.validators {
            if v.child.is_some() && only.is_none_or(|i| i == v.index) {
                let (i, addr) = (v.index, v.metrics);
                reads.spawn(async move { (i, crate::cpu::scrape(addr).await) });
            }
        }
        while let Some(read) = reads.join_next().await {
            if let Ok((i, Some(split))) = read
                && let Some(v) = self.validators.get_mut(i)
            {
                v.split_last = split;
            }
        }
    }

    /// Bytes in the validators' data directory (every validator's store).
    pub(crate) fn data_bytes(&self) -> u64 {
        dir_bytes(&self.data_dir)
    }

    /// Restart validator `i` on its data directory.
    pub(crate) fn restart(&mut self, i: usize) -> Result<(), String> {
        self.start(i)?;
        if let Some(v) = self.validators.get_mut(i) {
            v.restarts += 1;
        }
        Ok(())
    }

    /// Wait until every running validator's API answers `/v1/status`.
    pub(crate) async fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        for i in 0..self.validators.len() {
            loop {
                if !self.validators[i].running() {
                    return Err(format!(
                        "validator {i} exited at start-up; see {}",
                        self.logs_dir.join(format!("validator-{i}.log")).display()
                    ));
                }
                if self.validators[i].client.status().await.is_ok() {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "validator {i}'s API did not answer within {limit:?}"
                    ));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// Stop every process: SIGTERM (a clean stop: the block is finished and
    /// flushed), SIGKILL whatever still runs after [`STOP_GRACE`]. Returns
    /// the validators that did not exit cleanly.
    pub(crate) fn stop(&mut self) -> Vec<usize> {
        for v in &mut self.validators {
            if let Some(child) = &v.child {
                let _ = rustix::process::kill_process(
                    rustix::process::Pid::from_child(child),
                    rustix::process::Signal::TERM,
                );
            }
        }
        let deadline = Instant::now() + STOP_GRACE;
        let mut unclean = Vec::new();
        for v in &mut self.validators {
            let Some(mut child) = v.child.take() else {
                continue;
            };
            let status = loop {
                match child.try_wait() {
                    Ok(Some(status)) => break Some(status),
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    _ => break None,
                }
            };
            if !status.is_some_and(|s| s.success()) {
                let _ = child.kill();
                let _ = child.wait();
                unclean.push(v.index);
            }
        }
        unclean
    }
}

/// Bytes of the regular files under `dir` (apparent sizes; unreadable
/// entries count as 0).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

impl Drop for LocalNet {
    fn drop(&mut self) {
        for v in &mut self.validators {
            if let Some(mut child) = v.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
