//! The `qbind` CLI end to end: a qbind-api server over the fake node on
//! 127.0.0.1, the CLI's `run` in-process (and the built binary once).

#[allow(dead_code)]
mod fake_node {
    include!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../qbind-api/tests/support/fake_node.rs"
    ));
}

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fake_node::FakeNode;
use qbind_api::{ApiConfig, ApiServer};
use qbind_client::cli::{exit, run};
use qbind_client::keyfile::{account_of, read_key_file};
use qbind_client::{ClientError, QbindClient};
use qbind_core::types::{AccountId, NetworkEnvironment};
use serde_json::Value;
use tokio::sync::oneshot;

const FUNDS: u128 = 1_000_000_000;

struct Node {
    url: String,
    fake: Arc<FakeNode>,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), qbind_api::ApiServerError>>,
    blocks: tokio::task::JoinHandle<()>,
}

/// A node funding `accounts` that commits its pool every 50 ms.
async fn start_node(accounts: &[AccountId]) -> Node {
    let funded: Vec<_> = accounts.iter().map(|a| (*a, FUNDS)).collect();
    let fake = Arc::new(FakeNode::new(NetworkEnvironment::Testnet, &funded, 64));
    let server = ApiServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        Arc::clone(&fake),
        ApiConfig::default(),
    )
    .await
    .unwrap();
    let url = format!("http://{}", server.local_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let ticker = Arc::clone(&fake);
    let blocks = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if !ticker.state.lock().unwrap().pool.is_empty() {
                ticker.commit_block();
            }
        }
    });
    Node {
        url,
        fake,
        stop,
        server,
        blocks,
    }
}

impl Node {
    async fn stop(self) {
        self.blocks.abort();
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

/// Run the CLI; (exit code, stdout, stderr).
async fn qbind(args: &[&str]) -> (i32, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let argv = std::iter::once("qbind").chain(args.iter().copied());
    let code = tokio::time::timeout(Duration::from_secs(30), run(argv, &mut out, &mut err))
        .await
        .expect("the CLI returns within 30 s");
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn json(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn new_key(dir: &Path, name: &str) -> (String, AccountId) {
    let path = dir.join(name);
    let path_s = path.to_str().unwrap().to_string();
    let std_run = std::process::Command::new(env!("CARGO_BIN_EXE_qbind"))
        .args(["key", "new", "--out", &path_s, "--output", "json"])
        .output()
        .unwrap();
    assert!(std_run.status.success(), "{std_run:?}");
    let printed = json(&String::from_utf8(std_run.stdout).unwrap());
    let id = account_of(&read_key_file(&path).unwrap());
    assert_eq!(printed["account"], hex::encode(id.0));
    (path_s, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_balance_tx_and_wait_against_a_live_api() {
    let dir = tempfile::tempdir().unwrap();
    let (alice_key, alice) = new_key(dir.path(), "alice.key");
    let (_, bob) = new_key(dir.path(), "bob.key");
    let node = start_node(&[alice]).await;
    let n = ["--node", node.url.as_str()];
    let bob_hex = hex::encode(bob.0);
    let alice_hex = hex::encode(alice.0);

    let (code, out, _) = qbind(&[&n[..], &["status", "--output", "json"]].concat()).await;
    assert_eq!(code, exit::OK);
    assert_eq!(json(&out)["network"], "testnet");

    let (code, out, _) = qbind(&[&n[..], &["balance", &alice_hex]].concat()).await;
    assert_eq!(
        (code, out.trim()),
        (exit::OK, format!("balance {FUNDS} nonce 0").as_str())
    );

    // Nonce from the node, signed for the node's network, committed.
    let (code, out, err) = qbind(
        &[
            &n[..],
            &[
                "--output", "json", "transfer", "--key", &alice_key, "--to", &bob_hex,
            ],
            &["--amount", "500", "--wait", "--timeout", "20"],
        ]
        .concat(),
    )
    .await;
    assert_eq!(code, exit::OK, "{err}");
    let receipt = json(&out);
    assert_eq!(receipt["status"], "committed");
    assert_eq!(receipt["outcome"]["result"], "success");
    let hash = receipt["hash"].as_str().unwrap().to_string();

    let (code, out, _) =
        qbind(&[&n[..], &["--output", "json", "balance", &bob_hex]].concat()).await;
    assert_eq!(code, exit::OK);
    assert_eq!(json(&out)["balance"], "500");

    let (code, out, _) = qbind(&[&n[..], &["tx", &hash]].concat()).await;
    assert_eq!(code, exit::OK);
    assert!(out.contains("committed at height 1"), "{out}");
    let (code, out, _) = qbind(&[&n[..], &["wait", &hash, "--timeout", "5"]].concat()).await;
    assert_eq!(code, exit::OK, "{out}");

    // Without --wait: submitted, then `wait` sees it committed.
    let (code, out, _) = qbind(
        &[
            &n[..],
            &[
                "--output", "json", "transfer", "--key", &alice_key, "--to", &bob_hex, "--amount",
                "1",
            ],
        ]
        .concat(),
    )
    .await;
    assert_eq!(code, exit::OK);
    let submitted = json(&out);
    assert_eq!(submitted["nonce"], 1);
    let hash2 = submitted["hash"].as_str().unwrap().to_string();
    let (code, _, _) = qbind(&[&n[..], &["wait", &hash2, "--timeout", "20"]].concat()).await;
    assert_eq!(code, exit::OK);

    // A stale explicit nonce: refused by the node, nothing changes.
    let before = node.fake.fingerprint();
    let (code, _, err) = qbind(
        &[
            &n[..],
            &[
                "transfer", "--key", &alice_key, "--to", &bob_hex, "--amount", "1", "--nonce", "0",
            ],
        ]
        .concat(),
    )
    .await;
    assert_eq!(code, exit::REFUSED);
    assert!(err.contains("stale_nonce"), "{err}");
    assert_eq!(node.fake.fingerprint(), before);

    // Included-but-refused by execution (gas limit below the intrinsic gas): exit 1.
    let (code, out, _) = qbind(
        &[
            &n[..],
            &[
                "transfer", "--key", &alice_key, "--to", &bob_hex, "--amount", "1",
            ],
            &["--gas-limit", "21000", "--wait", "--timeout", "20"],
        ]
        .concat(),
    )
    .await;
    assert_eq!(code, exit::TX_NOT_SUCCESSFUL, "{out}");
    assert!(
        out.contains("rejected at height") && out.contains("gas_limit_below_intrinsic"),
        "{out}"
    );

    // Unknown hash: `tx` is refused (404), `wait` times out.
    let unknown = "cd".repeat(32);
    let (code, _, err) = qbind(&[&n[..], &["tx", &unknown]].concat()).await;
    assert_eq!(code, exit::REFUSED);
    assert!(err.contains("tx_not_found"), "{err}");
    let (code, _, _) = qbind(&[&n[..], &["wait", &unknown, "--timeout", "1"]].concat()).await;
    assert_eq!(code, exit::TIMEOUT);

    node.stop().await;
}

#[tokio::test]
async fn bad_input_and_unreachable_nodes_have_their_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = new_key(dir.path(), "k");
    // A port nothing listens on: bind one, then free it.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let cases: Vec<(Vec<&str>, i32)> = vec![
        (vec!["balance", "xyz"], exit::USAGE),
        (vec!["tx", "12"], exit::USAGE),
        (
            vec![
                "transfer",
                "--key",
                "/nonexistent/key",
                "--to",
                "00",
                "--amount",
                "1",
            ],
            exit::USAGE,
        ),
        (
            vec!["transfer", "--key", &key, "--to", "00", "--amount", "1"],
            exit::USAGE,
        ),
        (
            vec!["transfer", "--key", &key, "--amount", "1"],
            exit::USAGE,
        ),
        (vec!["key", "new", "--out", &key], exit::USAGE),
        (vec!["--node", "ftp://x", "status"], exit::USAGE),
        (vec!["--node", &closed, "status"], exit::UNREACHABLE),
        (vec!["nonsense"], exit::USAGE),
    ];
    for (args, want) in cases {
        let (code, _, err) = qbind(&args).await;
        assert_eq!(code, want, "{args:?}: {err}");
        assert!(!err.is_empty(), "{args:?} says why");
    }
    let (code, out, _) = qbind(&["--help"]).await;
    assert_eq!(code, exit::OK);
    assert!(out.contains("transfer"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_client_reads_blocks_and_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (key_path, alice) = new_key(dir.path(), "a");
    let node = start_node(&[alice]).await;
    let client = QbindClient::new(&node.url).unwrap();
    let key = read_key_file(Path::new(&key_path)).unwrap();
    let env = NetworkEnvironment::Testnet;
    let txs: Vec<_> = (0..3)
        .map(|n| {
            qbind_core::execution::Transaction::sign(
                &key,
                env,
                n,
                qbind_core::execution::TransferPayload::V1(
                    qbind_core::execution::TransferPayloadV1 {
                        recipient: AccountId([7u8; 32]),
                        amount: 10,
                        gas_limit: 40_000,
                        max_fee_per_gas: 1,
                    },
                ),
            )
        })
        .collect();
    let results = client.submit_batch(&txs).await.unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let last = *results[2].as_ref().unwrap();
    let view = client
        .wait(last, Duration::from_secs(20), Duration::from_millis(50))
        .await
        .unwrap();
    assert!(view.is_final());
    let block = client.block(1).await.unwrap();
    assert_eq!(block.tx_hashes.len(), 3);
    match client.block(999).await {
        Err(ClientError::Api { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (404, "block_not_found"));
        }
        other => panic!("expected 404, got {other:?}"),
    }
    node.stop().await;
}
