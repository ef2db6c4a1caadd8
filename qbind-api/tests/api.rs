//! The API over loopback against a fake node: every route's happy path, each
//! class of bad input (right status and code, node state unchanged), rate
//! limits, panics, graceful shutdown, and the OpenAPI description's routes.

#[allow(dead_code)]
mod fake_node {
    include!("support/fake_node.rs");
}

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use fake_node::FakeNode;
use qbind_api::backend::{ApiBackend, BackendError, BlockInfo, ChainStatus, TxLookup};
use qbind_api::limiter::RateLimitConfig;
use qbind_api::submit::{CheckedTx, SubmitError};
use qbind_api::wire::{
    AccountView, BlockView, ErrorBody, StatusView, SubmitBatchResponse, SubmitTxResponse, SyncView,
    TxStatusView,
};
use qbind_api::{ApiConfig, ApiServer, ROUTES, codes};
use qbind_core::codec::Encode;
use qbind_core::crypto::KeyPair;
use qbind_core::execution::{Account, Transaction, TransferPayload, TransferPayloadV1};
use qbind_core::types::{AccountId, Hash32, Height, NetworkEnvironment};
use serde_json::json;
use tokio::sync::oneshot;

const ENV: NetworkEnvironment = NetworkEnvironment::Devnet;
const FUNDS: u128 = 1_000_000_000;

fn alice() -> KeyPair {
    KeyPair::from_seed(&[1u8; 32])
}

fn id(key: &KeyPair) -> AccountId {
    AccountId::from_public_key(key.public_key())
}

fn bob() -> AccountId {
    AccountId([0xB0; 32])
}

fn transfer(key: &KeyPair, env: NetworkEnvironment, nonce: u64, amount: u128) -> Transaction {
    let payload = TransferPayload::V1(TransferPayloadV1 {
        recipient: bob(),
        amount,
        gas_limit: 40_000,
        max_fee_per_gas: 1,
    });
    Transaction::sign(key, env, nonce, payload)
}

fn tx_hex(tx: &Transaction) -> String {
    hex::encode(tx.to_bytes())
}

struct Running {
    base: String,
    node: Arc<FakeNode>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), qbind_api::ApiServerError>>,
    http: reqwest::Client,
}

impl Running {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server stops after the shutdown signal")
            .expect("server task")
            .expect("server ran without error");
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    async fn post_json(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }
}

fn no_limit() -> ApiConfig {
    ApiConfig {
        rate_limit: None,
        ..ApiConfig::default()
    }
}

async fn start_backend<B: ApiBackend>(
    backend: Arc<B>,
    config: ApiConfig,
) -> (
    String,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), qbind_api::ApiServerError>>,
) {
    let server = ApiServer::bind("127.0.0.1:0".parse().unwrap(), backend, config)
        .await
        .unwrap();
    let addr = server.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    (format!("http://{addr}"), stop, task)
}

async fn start(config: ApiConfig, pool_capacity: usize) -> Running {
    let node = Arc::new(FakeNode::new(ENV, &[(id(&alice()), FUNDS)], pool_capacity));
    let (base, stop, task) = start_backend(Arc::clone(&node), config).await;
    Running {
        base,
        node,
        stop: Some(stop),
        task,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
    }
}

async fn error_of(response: reqwest::Response) -> (u16, ErrorBody) {
    let status = response.status().as_u16();
    (status, response.json::<ErrorBody>().await.unwrap())
}

#[tokio::test]
async fn every_route_serves_its_happy_path() {
    let api = start(no_limit(), 64).await;
    let key = alice();
    let tx0 = transfer(&key, ENV, 0, 500);

    let r = api.post_json("/v1/tx", json!({ "tx": tx_hex(&tx0) })).await;
    assert_eq!(r.status().as_u16(), 202);
    let hash0 = r.json::<SubmitTxResponse>().await.unwrap().hash;
    assert_eq!(hash0, hex::encode(Hash32::digest(&tx0.to_bytes()).0));

    let pending: TxStatusView = api
        .get(&format!("/v1/tx/{hash0}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        pending,
        TxStatusView::Pending {
            hash: hash0.clone()
        }
    );

    let txs = [1u64, 2].map(|n| tx_hex(&transfer(&key, ENV, n, 7)));
    let r = api.post_json("/v1/txs", json!({ "txs": txs })).await;
    assert_eq!(r.status().as_u16(), 200);
    let batch: SubmitBatchResponse = r.json().await.unwrap();
    assert_eq!(batch.results.len(), 2);
    assert!(
        batch
            .results
            .iter()
            .all(|i| i.hash.is_some() && i.error.is_none())
    );

    assert_eq!(api.node.commit_block(), 1);

    let committed: TxStatusView = api
        .get(&format!("/v1/tx/{hash0}"))
        .await
        .json()
        .await
        .unwrap();
    match committed {
        TxStatusView::Committed {
            height,
            index,
            outcome,
            ..
        } => {
            assert_eq!((height, index), (1, 0));
            assert_eq!((outcome.result.as_str(), outcome.code), ("success", 0));
            assert_eq!(outcome.gas_used, 37_352);
            assert_eq!(outcome.fee, 37_352);
        }
        other => panic!("expected committed, got {other:?}"),
    }

    let account: AccountView = api
        .get(&format!("/v1/account/{}", hex::encode(bob().0)))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!((account.balance, account.nonce), (514, 0));
    let sender: AccountView = api
        .get(&format!("/v1/account/{}", hex::encode(id(&key).0)))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(sender.nonce, 3);
    assert_eq!(sender.balance, FUNDS - 514 - 3 * 37_352);

    let block: BlockView = api.get("/v1/block/1").await.json().await.unwrap();
    assert_eq!(block.height, 1);
    assert_eq!(block.tx_hashes.len(), 3);
    assert_eq!(block.tx_hashes[0], hash0);
    assert!(block.qc.is_some());
    let root = api.node.state.lock().unwrap().ledger.root();
    assert_eq!(block.state_root, Some(hex::encode(root.0)));

    let status: StatusView = api.get("/v1/status").await.json().await.unwrap();
    assert_eq!(status.network, "devnet");
    assert_eq!(status.chain_id, "0x51424e4444455600");
    assert_eq!((status.height, status.peers), (1, 3));
    assert_eq!(status.sync, SyncView::Synced);
    let pool = status.pool.expect("the fake node reports its pool");
    assert_eq!((pool.pending, pool.queued, pool.capacity), (0, 0, 64));
    api.stop().await;
}

#[tokio::test]
async fn each_bad_input_gets_its_status_and_code_and_changes_nothing() {
    let api = start(no_limit(), 64).await;
    let key = alice();
    // One committed transaction, so nonce 0 is stale from now on.
    let r = api
        .post_json(
            "/v1/tx",
            json!({ "tx": tx_hex(&transfer(&key, ENV, 0, 1)) }),
        )
        .await;
    assert_eq!(r.status().as_u16(), 202);
    api.node.commit_block();
    let before = api.node.fingerprint();
    let calls_before = api.node.state.lock().unwrap().submit_calls;

    let mut bad_sig = transfer(&key, ENV, 1, 1).to_bytes();
    let last = bad_sig.len() - 1;
    bad_sig[last] ^= 0x01;
    let huge = format!("{{\"tx\":\"{}\"}}", "00".repeat(64 * 1024));
    let stranger = KeyPair::from_seed(&[9u8; 32]);
    // A key-rotation system transaction: this backend takes none (the
    // trait's default), so it is refused before any pool sees it.
    let rotation = {
        use qbind_core::key_rotation::{KeyRole, KeyRotationEvent};
        let event = KeyRotationEvent {
            validator_id: qbind_core::types::ValidatorId(0),
            key_kind: KeyRole::Consensus,
            old_key: key.public_key().as_bytes().to_vec(),
            new_key: stranger.public_key().as_bytes().to_vec(),
            effective_epoch: qbind_core::types::Epoch(5),
            grace_epochs: 1,
            emergency: false,
        };
        let signed = event.sign(ENV, &key).expect("sign");
        qbind_core::system_tx::SystemTx::KeyRotation(signed).to_bytes()
    };

    let cases: Vec<(&str, reqwest::Response, u16, &str)> = vec![
        (
            "malformed JSON",
            api.post_raw("/v1/tx", "{\"tx\": ").await,
            400,
            codes::MALFORMED_JSON,
        ),
        (
            "wrong JSON shape",
            api.post_json("/v1/tx", json!({ "txs": [] })).await,
            400,
            codes::MALFORMED_JSON,
        ),
        (
            "huge body",
            api.post_raw("/v1/tx", huge.clone()).await,
            413,
            codes::BODY_TOO_LARGE,
        ),
        (
            "bad hex",
            api.post_json("/v1/tx", json!({ "tx": "zz" })).await,
            400,
            codes::BAD_HEX,
        ),
        (
            "not a transaction",
            api.post_json("/v1/tx", json!({ "tx": "00ff" })).await,
            400,
            codes::MALFORMED_TRANSACTION,
        ),
        (
            "bad signature",
            api.post_json("/v1/tx", json!({ "tx": hex::encode(&bad_sig) }))
                .await,
            422,
            codes::INVALID_SIGNATURE,
        ),
        (
            "a key rotation this backend does not take",
            api.post_json("/v1/tx", json!({ "tx": hex::encode(&rotation) }))
                .await,
            422,
            codes::KEY_ROTATION_REFUSED,
        ),
        (
            "wrong chain",
            api.post_json(
                "/v1/tx",
                json!({ "tx": tx_hex(&transfer(&key, NetworkEnvironment::Mainnet, 1, 1)) }),
            )
            .await,
            422,
            codes::WRONG_CHAIN,
        ),
        (
            "stale nonce",
            api.post_json(
                "/v1/tx",
                json!({ "tx": tx_hex(&transfer(&key, ENV, 0, 2)) }),
            )
            .await,
            422,
            codes::STALE_NONCE,
        ),
        (
            "nonce gap",
            api.post_json(
                "/v1/tx",
                json!({ "tx": tx_hex(&transfer(&key, ENV, 5, 2)) }),
            )
            .await,
            422,
            codes::NONCE_TOO_HIGH,
        ),
        (
            "unfunded sender",
            api.post_json(
                "/v1/tx",
                json!({ "tx": tx_hex(&transfer(&stranger, ENV, 0, 2)) }),
            )
            .await,
            422,
            codes::INSUFFICIENT_BALANCE,
        ),
        (
            "empty batch",
            api.post_json("/v1/txs", json!({ "txs": [] })).await,
            400,
            codes::EMPTY_BATCH,
        ),
        (
            "batch too large",
            api.post_json("/v1/txs", json!({ "txs": vec!["00"; 129] }))
                .await,
            413,
            codes::BATCH_TOO_LARGE,
        ),
        (
            "huge batch body",
            api.post_raw(
                "/v1/txs",
                format!("{{\"txs\":[\"{}\"]}}", "00".repeat(1 << 20)),
            )
            .await,
            413,
            codes::BODY_TOO_LARGE,
        ),
        (
            "bad hash",
            api.get("/v1/tx/1234").await,
            400,
            codes::BAD_HEX,
        ),
        (
            "unknown tx",
            api.get(&format!("/v1/tx/{}", "ab".repeat(32))).await,
            404,
            codes::TX_NOT_FOUND,
        ),
        (
            "bad account",
            api.get("/v1/account/xyz").await,
            400,
            codes::BAD_HEX,
        ),
        (
            "bad height",
            api.get("/v1/block/-1").await,
            400,
            codes::BAD_PATH,
        ),
        (
            "unknown block",
            api.get("/v1/block/99").await,
            404,
            codes::BLOCK_NOT_FOUND,
        ),
        (
            "unknown route",
            api.get("/v2/nothing").await,
            404,
            codes::NOT_FOUND,
        ),
        (
            "wrong method",
            api.get("/v1/tx").await,
            405,
            codes::METHOD_NOT_ALLOWED,
        ),
    ];
    for (what, response, status, code) in cases {
        let (got_status, body) = error_of(response).await;
        assert_eq!(
            (got_status, body.code.as_str()),
            (status, code),
            "{what}: {}",
            body.message
        );
        assert!(!body.message.is_empty(), "{what}");
    }
    // A batch refuses its bad items one by one and keeps none of them.
    let r = api
        .post_json(
            "/v1/txs",
            json!({ "txs": ["zz", hex::encode(&bad_sig), tx_hex(&transfer(&key, ENV, 0, 3))] }),
        )
        .await;
    assert_eq!(r.status().as_u16(), 200);
    let batch: SubmitBatchResponse = r.json().await.unwrap();
    let item_codes: Vec<_> = batch
        .results
        .iter()
        .map(|i| i.error.as_ref().map(|e| e.code.clone()).unwrap_or_default())
        .collect();
    assert_eq!(
        item_codes,
        [codes::BAD_HEX, codes::INVALID_SIGNATURE, codes::STALE_NONCE]
    );

    assert_eq!(
        api.node.fingerprint(),
        before,
        "no bad input changed the node"
    );
    // Only the stateful refusals reached the backend at all.
    assert_eq!(
        api.node.state.lock().unwrap().submit_calls - calls_before,
        4
    );
    api.stop().await;
}

#[tokio::test]
async fn a_full_pool_answers_429_with_retry_after() {
    let api = start(no_limit(), 1).await;
    let key = alice();
    let r = api
        .post_json(
            "/v1/tx",
            json!({ "tx": tx_hex(&transfer(&key, ENV, 0, 1)) }),
        )
        .await;
    assert_eq!(r.status().as_u16(), 202);
    let r = api
        .post_json(
            "/v1/tx",
            json!({ "tx": tx_hex(&transfer(&key, ENV, 1, 1)) }),
        )
        .await;
    assert_eq!(r.headers().get("retry-after").unwrap(), "1");
    let (status, body) = error_of(r).await;
    assert_eq!((status, body.code.as_str()), (429, codes::POOL_FULL));
    api.stop().await;
}

/// Issue #19/#21: a transaction the pool accepted and later let go is
/// `dropped` with its reason, not `pending` forever nor `rejected` (which
/// means a block refused it).
#[tokio::test]
async fn a_transaction_the_pool_let_go_is_dropped_with_its_reason() {
    let api = start(no_limit(), 10).await;
    let key = alice();
    let tx = transfer(&key, ENV, 0, 1);
    let r = api.post_json("/v1/tx", json!({ "tx": tx_hex(&tx) })).await;
    assert_eq!(r.status().as_u16(), 202);
    let hash = Hash32::digest(&tx.to_bytes());
    let path = format!("/v1/tx/{}", hex::encode(hash.0));
    let view: TxStatusView = api.get(&path).await.json().await.unwrap();
    assert!(matches!(view, TxStatusView::Pending { .. }));
    {
        let mut s = api.node.state.lock().unwrap();
        s.pool.clear();
        let reason = qbind_core::pool_drops::PoolDropReason::Refused("pool_full");
        s.drops.insert(hash, reason.into());
    }
    let r = api.get(&path).await;
    assert_eq!(r.status().as_u16(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], "dropped");
    assert_eq!(body["reason"], "refused");
    assert_eq!(body["hash"], hex::encode(hash.0));
    assert!(body["message"].as_str().unwrap().contains("pool_full"));
    let view: TxStatusView = serde_json::from_value(body).unwrap();
    assert!(view.is_final());
    api.stop().await;
}

fn limited(per_second: u32, burst: u32, max_clients: usize) -> ApiConfig {
    ApiConfig {
        rate_limit: Some(RateLimitConfig {
            per_second,
            burst,
            max_clients: NonZeroUsize::new(max_clients).unwrap(),
        }),
        ..ApiConfig::default()
    }
}

fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::from(ip)))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test]
async fn clients_over_their_rate_get_429_and_others_do_not() {
    let api = start(limited(1, 3, 16), 64).await;
    let url = api.url("/v1/status");
    let a = client_from([127, 0, 0, 2]);
    for _ in 0..3 {
        assert_eq!(a.get(&url).send().await.unwrap().status().as_u16(), 200);
    }
    let r = a.get(&url).send().await.unwrap();
    assert_eq!(r.headers().get("retry-after").unwrap(), "1");
    let (status, body) = error_of(r).await;
    assert_eq!((status, body.code.as_str()), (429, codes::RATE_LIMITED));
    let b = client_from([127, 0, 0, 3]);
    assert_eq!(b.get(&url).send().await.unwrap().status().as_u16(), 200);
    // A batch costs one token per transaction: 3 transactions, 1 token left.
    let txs: Vec<String> = (0..3)
        .map(|n| tx_hex(&transfer(&alice(), ENV, n, 1)))
        .collect();
    let r = b
        .post(api.url("/v1/txs"))
        .json(&json!({ "txs": txs }))
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(r).await;
    assert_eq!((status, body.code.as_str()), (429, codes::RATE_LIMITED));
    assert!(api.node.fingerprint().pool.is_empty());
    api.stop().await;
}

#[tokio::test]
async fn rotating_client_addresses_cannot_grow_the_limiter() {
    // Room for 4 clients: a client evicted by newer ones starts with a full
    // bucket again (the limiter forgets, it does not grow).
    let api = start(limited(1, 1, 4), 64).await;
    let url = api.url("/v1/status");
    let victim = client_from([127, 0, 1, 1]);
    assert_eq!(
        victim.get(&url).send().await.unwrap().status().as_u16(),
        200
    );
    assert_eq!(
        victim.get(&url).send().await.unwrap().status().as_u16(),
        429
    );
    for i in 0..40u8 {
        let c = client_from([127, 0, 2, i + 1]);
        assert_eq!(c.get(&url).send().await.unwrap().status().as_u16(), 200);
    }
    assert_eq!(
        victim.get(&url).send().await.unwrap().status().as_u16(),
        200
    );
    api.stop().await;
}

/// A backend whose every method panics or fails.
struct Broken;

impl ApiBackend for Broken {
    fn network(&self) -> NetworkEnvironment {
        ENV
    }
    async fn submit(&self, _tx: CheckedTx) -> Result<(), SubmitError> {
        Err(SubmitError::Internal {
            detail: "secret disk path".into(),
        })
    }
    async fn tx_status(&self, _hash: Hash32) -> Result<TxLookup, BackendError> {
        Err(BackendError::Unavailable)
    }
    async fn account(&self, _id: AccountId) -> Result<Account, BackendError> {
        panic!("backend bug")
    }
    async fn block(&self, _height: Height) -> Result<Option<BlockInfo>, BackendError> {
        Err(BackendError::Internal {
            detail: "io".into(),
        })
    }
    async fn status(&self) -> Result<ChainStatus, BackendError> {
        Err(BackendError::Unavailable)
    }
}

#[tokio::test]
async fn backend_failures_and_panics_become_json_5xx() {
    let (base, stop, task) = start_backend(Arc::new(Broken), no_limit()).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/v1/tx"))
        .json(&json!({ "tx": tx_hex(&transfer(&alice(), ENV, 0, 1)) }))
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(r).await;
    assert_eq!((status, body.code.as_str()), (500, codes::INTERNAL));
    assert!(!body.message.contains("secret"));
    let r = http
        .get(format!("{base}/v1/account/{}", "00".repeat(32)))
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(r).await;
    assert_eq!((status, body.code.as_str()), (500, codes::INTERNAL));
    let r = http.get(format!("{base}/v1/status")).send().await.unwrap();
    assert!(r.headers().get("retry-after").is_some());
    let (status, body) = error_of(r).await;
    assert_eq!((status, body.code.as_str()), (503, codes::UNAVAILABLE));
    // The server still serves after the panic.
    let r = http.get(format!("{base}/v1/block/1")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 500);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// A full node's backend: reads work, it takes no transactions, and its
/// `submit` must never be reached.
struct FullNode;

impl ApiBackend for FullNode {
    fn network(&self) -> NetworkEnvironment {
        ENV
    }
    fn takes_transactions(&self) -> bool {
        false
    }
    async fn submit(&self, _tx: CheckedTx) -> Result<(), SubmitError> {
        panic!("a full node's submit was called")
    }
    async fn tx_status(&self, _hash: Hash32) -> Result<TxLookup, BackendError> {
        Ok(TxLookup::Unknown)
    }
    async fn account(&self, _id: AccountId) -> Result<Account, BackendError> {
        Ok(Account::default())
    }
    async fn block(&self, _height: Height) -> Result<Option<BlockInfo>, BackendError> {
        Ok(None)
    }
    async fn status(&self) -> Result<ChainStatus, BackendError> {
        Err(BackendError::Unavailable)
    }
}

#[tokio::test]
async fn a_full_node_refuses_submissions_before_checking_them() {
    let (base, stop, task) = start_backend(Arc::new(FullNode), no_limit()).await;
    let http = reqwest::Client::new();
    let good = tx_hex(&transfer(&alice(), ENV, 0, 1));
    // A good transaction, one signed for another network (its check would
    // fail), a batch: all 421 `not_a_validator`, without a retry hint.
    let other = tx_hex(&transfer(&alice(), NetworkEnvironment::Mainnet, 0, 1));
    for (path, body) in [
        ("/v1/tx", json!({ "tx": good })),
        ("/v1/tx", json!({ "tx": other })),
        ("/v1/txs", json!({ "txs": [good, other] })),
    ] {
        let r = http
            .post(format!("{base}{path}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.headers().get("retry-after").is_none());
        let (status, body) = error_of(r).await;
        assert_eq!(
            (status, body.code.as_str()),
            (421, codes::NOT_A_VALIDATOR),
            "{path}"
        );
        assert!(body.message.contains("submit to a validator"), "{body:?}");
    }
    // Reads are served.
    let r = http
        .get(format!("{base}/v1/account/{}", "00".repeat(32)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn shutdown_stops_the_server_and_frees_the_port() {
    let api = start(no_limit(), 4).await;
    let addr: SocketAddr = api.base.trim_start_matches("http://").parse().unwrap();
    assert_eq!(api.get("/v1/status").await.status().as_u16(), 200);
    api.stop().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn openapi_describes_exactly_the_routes_served() {
    let spec = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.yaml"));
    let documented: Vec<(String, String)> = {
        let mut out = Vec::new();
        let mut path: Option<String> = None;
        for line in spec.lines() {
            if let Some(p) = line.strip_prefix("  /").and_then(|p| p.strip_suffix(':')) {
                path = Some(format!("/{p}"));
            } else if let (Some(p), Some(m)) = (
                &path,
                line.strip_prefix("    ").and_then(|m| m.strip_suffix(':')),
            ) && ["get", "post", "put", "delete", "patch"].contains(&m)
            {
                out.push((m.to_uppercase(), p.clone()));
            } else if !line.starts_with(' ') && !line.is_empty() {
                path = None;
            }
        }
        out.sort();
        out
    };
    let mut served: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    served.sort();
    assert_eq!(
        documented, served,
        "docs/openapi.yaml and qbind_api::ROUTES differ"
    );

    // Every listed route is really routed (not the 404/405 fallbacks).
    let api = start(no_limit(), 4).await;
    for (method, path) in ROUTES {
        let concrete = path
            .replace("{hash}", &"ab".repeat(32))
            .replace("{id}", &"ab".repeat(32))
            .replace("{height}", "1");
        let r = match *method {
            "GET" => api.get(&concrete).await,
            _ => api.post_json(&concrete, json!({})).await,
        };
        let status = r.status().as_u16();
        let body: ErrorBody = match r.json().await {
            Ok(b) => b,
            Err(_) => continue,
        };
        assert!(
            body.code != codes::NOT_FOUND && body.code != codes::METHOD_NOT_ALLOWED,
            "{method} {path}: {status} {}",
            body.code
        );
    }
    api.stop().await;
}

#[tokio::test]
async fn idle_connections_are_closed_and_open_ones_capped() {
    use tokio::io::AsyncReadExt;
    let config = ApiConfig {
        max_connections: 2,
        idle_timeout: Duration::from_millis(300),
        ..no_limit()
    };
    let api = start(config, 4).await;
    let addr: SocketAddr = api.base.trim_start_matches("http://").parse().unwrap();
    // Two silent connections take both slots...
    let mut idle_a = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _idle_b = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // ...so a real request is served only once the idle timeout frees one.
    let started = std::time::Instant::now();
    assert_eq!(api.get("/v1/status").await.status().as_u16(), 200);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "served after {:?}: the cap did not hold",
        started.elapsed()
    );
    // The server closed the idle connection.
    let mut byte = [0u8; 1];
    match tokio::time::timeout(Duration::from_secs(5), idle_a.read(&mut byte)).await {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        other => panic!("idle connection still open: {other:?}"),
    }
    api.stop().await;
}

#[tokio::test]
async fn state_sync_routes_refuse_by_name_when_not_served() {
    let api = start(no_limit(), 4).await;
    let code = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let body: ErrorBody = r.json().await.expect("an error body");
        (status, body.code)
    };
    // A backend without snapshots serves nothing, by name.
    for path in [
        "/v1/state-sync/snapshots".to_string(),
        "/v1/state-sync/7/proof".to_string(),
        "/v1/state-sync/7/manifest".to_string(),
        "/v1/state-sync/7/chunk/0".to_string(),
        format!("/v1/state-sync/7/chunk/3?after={}", "ab".repeat(32)),
    ] {
        assert_eq!(
            code(api.get(&path).await).await,
            (404, codes::STATE_SYNC_UNAVAILABLE.to_string()),
            "{path}"
        );
    }
    // Malformed heights, indices and queries are refused before the backend.
    for path in [
        "/v1/state-sync/x/proof".to_string(),
        "/v1/state-sync/7/chunk/-1".to_string(),
        "/v1/state-sync/7/chunk/0?after=00".to_string(),
        format!("/v1/state-sync/7/chunk/0?before={}", "ab".repeat(32)),
        format!("/v1/state-sync/7/chunk/0?after={}&x=1", "ab".repeat(32)),
    ] {
        assert_eq!(
            code(api.get(&path).await).await,
            (400, codes::BAD_PATH.to_string()),
            "{path}"
        );
    }
    api.stop().await;
}
