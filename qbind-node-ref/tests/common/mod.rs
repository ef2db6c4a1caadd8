//! What the multi-process tests share: following `qbind-node`'s progress
//! lines, waiting with deadlines, stopping processes, and comparing state
//! roots. Each test binary uses a subset.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Per validator: executed height → state root (hex prefix), from the
/// "height N ... state root R" lines each process prints.
pub type Roots = Arc<Mutex<Vec<BTreeMap<u64, String>>>>;

/// Empty [`Roots`] for `n` validators.
pub fn roots(n: usize) -> Roots {
    Arc::new(Mutex::new(vec![BTreeMap::new(); n]))
}

/// Record validator `i`'s progress lines from `child`'s stdout (piped).
pub fn follow(i: usize, child: &mut Child, roots: &Roots) {
    follow_lines(i, child, roots, None);
}

/// [`follow`], also adding up the transfers the node reports applied
/// (`transfers ok N` of each height line) in `applied`.
pub fn follow_counting(
    i: usize,
    child: &mut Child,
    roots: &Roots,
    applied: &Arc<std::sync::atomic::AtomicU64>,
) {
    follow_lines(i, child, roots, Some(Arc::clone(applied)));
}

fn follow_lines(
    i: usize,
    child: &mut Child,
    roots: &Roots,
    applied: Option<Arc<std::sync::atomic::AtomicU64>>,
) {
    let stdout = child.stdout.take().expect("stdout is piped");
    let roots = Arc::clone(roots);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // "height     12  transfers ok ... state root 9e7baf9552aba061"
            let Some(rest) = line.strip_prefix("height") else {
                continue;
            };
            let mut words = rest.split_whitespace();
            let height = words.next().and_then(|h| h.parse().ok());
            if let Some(applied) = &applied {
                let ok = words
                    .skip_while(|w| *w != "ok")
                    .nth(1)
                    .and_then(|n| n.parse::<u64>().ok());
                applied.fetch_add(ok.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
            }
            let root = line.rsplit(' ').next().map(str::to_string);
            if let (Some(h), Some(r)) = (height, root) {
                roots.lock().expect("lock")[i].insert(h, r);
            }
        }
    });
}

/// Validator `i`'s highest executed height so far.
pub fn highest(roots: &Roots, i: usize) -> u64 {
    roots.lock().expect("lock")[i]
        .keys()
        .next_back()
        .copied()
        .unwrap_or(0)
}

/// Every validator's highest executed height.
pub fn heights(roots: &Roots) -> Vec<u64> {
    let n = roots.lock().expect("lock").len();
    (0..n).map(|i| highest(roots, i)).collect()
}

/// Poll `f` every 100 ms until it holds (true) or `limit` passed (false).
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Wait up to `limit` for `child` to exit; kill it if it does not.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let mut status = None;
    wait_until(limit, || {
        status = child.try_wait().expect("wait");
        status.is_some()
    });
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    status
}

/// Send SIGINT (what Ctrl-C sends) to `child`.
pub fn interrupt(child: &Child) {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
}

/// SIGINT every child, then require each to exit successfully within 30 s.
pub fn interrupt_all_and_expect_clean_exit(children: &mut [Child]) {
    for child in children.iter() {
        interrupt(child);
    }
    for (i, child) in children.iter_mut().enumerate() {
        let status = wait_exit(child, Duration::from_secs(30));
        assert!(
            status.is_some_and(|s| s.success()),
            "validator {i} did not stop cleanly: {status:?}"
        );
    }
}

/// Every validator reported the same root as validator 0 at heights
/// `1..=up_to`.
pub fn assert_equal_roots(roots: &Roots, up_to: u64) {
    let roots = roots.lock().expect("lock");
    for h in 1..=up_to {
        let first = &roots[0][&h];
        for (i, m) in roots.iter().enumerate() {
            assert_eq!(&m[&h], first, "validator {i} state root at height {h}");
        }
    }
}

/// `qbind-keygen generate` of encrypted `roles` for `validator` into `out`,
/// with the production-minimum Argon2id cost (to keep tests quick) and the
/// passphrase `pass` in variable `pass_var`.
pub fn keygen(out: &Path, validator: usize, roles: &str, pass_var: &str, pass: &str) {
    let status = Command::new(env!("CARGO_BIN_EXE_qbind-keygen"))
        .arg("generate")
        .arg("--output")
        .arg(out)
        .args([
            "--validator-id",
            &validator.to_string(),
            "--key-roles",
            roles,
            "--encrypt",
            "--passphrase-env",
            pass_var,
            "--kdf-memory-kib",
            "19456",
            "--kdf-iterations",
            "2",
        ])
        .env(pass_var, pass)
        .stdout(Stdio::null())
        .status()
        .expect("run qbind-keygen");
    assert!(status.success(), "qbind-keygen for validator {validator}");
}

/// Write `root/validators.toml`: a DevNet validator-set file (`header`
/// lines first, e.g. `epoch_length = 10`) of `n` validators with stake 1
/// at `127.0.0.1:base + i`, validator `i`'s consensus key from
/// `consensus_pub(i)` and P2P key from `v<i>/p2p_identity.pub` (paths
/// relative to `root`, as `qbind-keygen` lays them out); returns its path.
pub fn write_validator_set(
    root: &Path,
    n: usize,
    base: u16,
    header: &str,
    consensus_pub: impl Fn(usize) -> String,
) -> std::path::PathBuf {
    let mut set = format!("network = \"devnet\"\n{header}");
    for i in 0..n {
        set.push_str(&format!(
            "[[validator]]\nid = {i}\nstake = 1\naddress = \"127.0.0.1:{}\"\n\
             consensus_pub_file = \"{}\"\np2p_pub_file = \"v{i}/p2p_identity.pub\"\n",
            base + i as u16,
            consensus_pub(i),
        ));
    }
    let path = root.join("validators.toml");
    std::fs::write(&path, set).expect("write the validator set");
    path
}

/// `qbind-node` for validator `i` of the validator-set file `set`, with its
/// data under `root/data`, its keystore `root/v<i>`, quick timeouts, and
/// stdout piped for [`follow`]; add `--signer-mode` and the mode's flags.
pub fn own_keys_node(root: &Path, set: &Path, i: usize, pass_var: &str, pass: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qbind-node"));
    cmd.arg("--data-dir")
        .arg(root.join("data"))
        .arg("--validator-set")
        .arg(set)
        .args([
            "--validator-index",
            &i.to_string(),
            "--base-timeout-ms",
            "500",
            "--tx-interval-ms",
            "10",
            "--signer-passphrase-env",
            pass_var,
        ])
        .arg("--signer-keystore-path")
        .arg(root.join(format!("v{i}")))
        .env(pass_var, pass)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    cmd
}

/// Kills every child still running when dropped (a failing test leaves no
/// processes behind).
pub struct Reaper(pub Vec<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Read a spawned child's piped stdout and stderr to their ends on two
/// threads (so that neither pipe fills and blocks it); join for the text.
pub fn collect_output(
    child: &mut Child,
) -> (
    std::thread::JoinHandle<String>,
    std::thread::JoinHandle<String>,
) {
    use std::io::Read;
    let read = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = read(Box::new(child.stdout.take().expect("stdout is piped")));
    let err = read(Box::new(child.stderr.take().expect("stderr is piped")));
    (out, err)
}

/// The last lines a child wrote to its standard error, kept by
/// [`stderr_tail`].
pub type StderrTail = std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<String>>>;

/// Read a spawned child's piped stderr to its end on a thread, keeping its
/// last `keep` lines: what a test prints when the child fails.
pub fn stderr_tail(child: &mut Child, keep: usize) -> StderrTail {
    use std::io::BufRead;
    let tail = StderrTail::default();
    let stderr = child.stderr.take().expect("stderr is piped");
    let kept = std::sync::Arc::clone(&tail);
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let mut t = kept
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if t.len() == keep {
                t.pop_front();
            }
            t.push_back(line);
        }
    });
    tail
}

/// The lines `tail` holds, one per line.
pub fn show_tail(tail: &StderrTail) -> String {
    let t = tail
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    t.iter().map(|l| format!("{l}\n")).collect()
}

/// `qbind-genesis devnet -P testnet` of four validators on 127.0.0.1 into
/// `out`, with `accounts` funded accounts and quick keystores (passphrase
/// `pass` in `pass_var`).
pub fn testnet_genesis(out: &Path, base_port: u16, accounts: usize, pass_var: &str, pass: &str) {
    let o = Command::new(env!("CARGO_BIN_EXE_qbind-genesis"))
        .args(["devnet", "-P", "testnet", "--ip", "127.0.0.1"])
        .args(["--validators", "4", "--accounts", &accounts.to_string()])
        .args(["--base-port", &base_port.to_string()])
        .args(["--passphrase-env", pass_var])
        .args(["--kdf-memory-kib", "19456", "--kdf-iterations", "2"])
        .arg("--out")
        .arg(out)
        .env(pass_var, pass)
        .output()
        .expect("run qbind-genesis");
    assert!(o.status.success(), "{o:?}");
}

/// `qbind-node` on the genesis in `net`: quick view timeouts, diversity
/// `warn` (every node shares 127.0.0.1), the keystore passphrase `pass` in
/// `pass_var`; add the role's flags.
pub fn genesis_node(net: &Path, pass_var: &str, pass: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qbind-node"));
    cmd.arg("--genesis")
        .arg(net.join("genesis.json"))
        .args(["--signer-passphrase-env", pass_var])
        .args(["--base-timeout-ms", "500", "--diversity-mode", "warn"])
        .env(pass_var, pass);
    cmd
}

/// The methods of a `qbind_api::ApiBackend` that serves only state sync:
/// everything else is unavailable and submissions are refused. Expands
/// inside the `impl ApiBackend for …` block, which adds `state_sync`.
#[macro_export]
macro_rules! state_sync_only_backend {
    ($network:expr) => {
        fn network(&self) -> qbind_core::types::NetworkEnvironment {
            $network
        }
        async fn submit(&self, _: qbind_api::CheckedTx) -> Result<(), qbind_api::SubmitError> {
            Err(qbind_api::SubmitError::NotAValidator)
        }
        async fn tx_status(
            &self,
            _: qbind_core::types::Hash32,
        ) -> Result<qbind_api::TxLookup, qbind_api::BackendError> {
            Err(qbind_api::BackendError::Unavailable)
        }
        async fn account(
            &self,
            _: qbind_core::types::AccountId,
        ) -> Result<qbind_core::execution::Account, qbind_api::BackendError> {
            Err(qbind_api::BackendError::Unavailable)
        }
        async fn block(
            &self,
            _: qbind_core::types::Height,
        ) -> Result<Option<qbind_api::BlockInfo>, qbind_api::BackendError> {
            Err(qbind_api::BackendError::Unavailable)
        }
        async fn status(&self) -> Result<qbind_api::ChainStatus, qbind_api::BackendError> {
            Err(qbind_api::BackendError::Unavailable)
        }
    };
}

/// Serve `backend` as a public API on 127.0.0.1 from its own thread, until
/// the test process ends; its URL.
pub fn serve_api<B: qbind_api::ApiBackend + 'static>(backend: B) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let server = qbind_api::ApiServer::bind(
                "127.0.0.1:0".parse().expect("address"),
                Arc::new(backend),
                qbind_api::ApiConfig::default(),
            )
            .await
            .expect("bind the API");
            let _ = tx.send(format!("http://{}", server.local_addr()));
            let _ = server.run(std::future::pending::<()>()).await;
        });
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the API listens")
}

/// `GET /metrics` at `url` (http://host:port/metrics): the whole response.
pub fn scrape(url: &str) -> String {
    try_scrape(url).expect("connect to /metrics")
}

/// As [`scrape`]; `None` if nothing listens (the process exited).
pub fn try_scrape(url: &str) -> Option<String> {
    use std::io::{Read, Write};
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics");
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut page = String::new();
    let _ = s.read_to_string(&mut page);
    Some(page)
}
