//! `qbind-node --api-addr`: a DevNet of four local validators (load
//! generator off) serves the public API; a transfer submitted with
//! `qbind-client` from a funded DevNet seed account to a new account is
//! committed, its receipt and the new balance read back; a bad signature,
//! a stale nonce, a wrong chain, a huge body and malformed JSON each get
//! their 4xx and change nothing;
//! the node stops cleanly on SIGINT; restarted on its data directory, it
//! still reports the transfer's receipt and the block's state root.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::Reaper;
use qbind_api::wire::TxStatusView;
use qbind_client::{ClientError, QbindClient};
use qbind_core::codec::Encode;
use qbind_core::crypto::KeyPair;
use qbind_core::execution::{Transaction, TransferPayload, TransferPayloadV1};
use qbind_core::types::{AccountId, NetworkEnvironment};

const AMOUNT: u128 = 12_345;

fn transfer(key: &KeyPair, nonce: u64, to: AccountId, amount: u128) -> Transaction {
    let payload = TransferPayload::V1(TransferPayloadV1 {
        recipient: to,
        amount,
        gas_limit: 40_000,
        max_fee_per_gas: 1,
    });
    Transaction::sign(key, NetworkEnvironment::Devnet, nonce, payload)
}

fn api_code(result: Result<qbind_core::types::Hash32, ClientError>) -> (u16, String) {
    match result {
        Err(ClientError::Api { status, code, .. }) => (status, code),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Start `qbind-node` with four local validators and the API on a free
/// port over `dir`; returns it (reaped on drop) and the API's URL.
fn start_node(dir: &std::path::Path) -> (Reaper, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_qbind-node"))
        .arg("--data-dir")
        .arg(dir)
        .args([
            "--local-validators",
            "4",
            "--load-generator",
            "false",
            "--base-timeout-ms",
            "500",
            "--api-addr",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start qbind-node");
    let stdout = child.stdout.take().expect("stdout is piped");
    let nodes = Reaper(vec![child]);
    let (addr_tx, addr_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line
                .strip_prefix("API of validator 0 on ")
                .map(str::to_owned)
            {
                let _ = addr_tx.send(url);
            }
        }
    });
    let url = addr_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the node prints its API address");
    (nodes, url)
}

#[test]
fn node_serves_the_api_transfer_commits_and_bad_inputs_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut nodes, url) = start_node(dir.path());

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (hash, committed, root, tx) = runtime.block_on(async {
        let client = QbindClient::new(&url).expect("client");
        let sender_key = qbind_node_ref::local::account_key(0);
        let sender = AccountId::from_public_key(sender_key.public_key());
        let recipient_key = KeyPair::from_seed(&[0x5a; 32]);
        let recipient = AccountId::from_public_key(recipient_key.public_key());

        let before = client.account(sender).await.expect("sender account");
        assert_eq!(before.nonce, 0);
        assert_eq!(before.balance, qbind_node_ref::local::DEVNET_BALANCE);
        assert_eq!(client.account(recipient).await.expect("new").balance, 0);

        // A transfer to a new account is committed with a receipt.
        let tx = transfer(&sender_key, 0, recipient, AMOUNT);
        let hash = client.submit(&tx).await.expect("submit");
        let view = client
            .wait(hash, Duration::from_secs(45), Duration::from_millis(200))
            .await
            .expect("committed");
        let TxStatusView::Committed {
            height, outcome, ..
        } = view
        else {
            panic!("not committed: {view:?}");
        };
        assert_eq!(outcome.result, "success", "{outcome:?}");
        assert!(height >= 1);
        let block = client.block(height).await.expect("block");
        assert!(
            block.tx_hashes.contains(&hash.to_string()),
            "{block:?} lacks {hash}"
        );
        let got = client.account(recipient).await.expect("recipient");
        assert_eq!(got.balance, AMOUNT);
        let after = client.account(sender).await.expect("sender");
        assert_eq!(after.nonce, 1);
        assert!(after.balance < before.balance - AMOUNT, "the fee was paid");

        // The same transaction again: already known.
        assert_eq!(
            api_code(client.submit(&tx).await),
            (409, "already_known".into())
        );
        // A stale nonce (a new transaction with the used nonce 0).
        let stale = transfer(&sender_key, 0, recipient, 1);
        assert_eq!(
            api_code(client.submit(&stale).await),
            (422, "stale_nonce".into())
        );
        // A bad signature.
        let mut forged = transfer(&sender_key, 1, recipient, 1).to_bytes();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert_eq!(
            api_code(client.submit_bytes(&forged).await),
            (422, "invalid_signature".into())
        );
        // Signed for another network.
        let other = Transaction::sign(
            &sender_key,
            NetworkEnvironment::Testnet,
            1,
            TransferPayload::V1(TransferPayloadV1 {
                recipient,
                amount: 1,
                gas_limit: 40_000,
                max_fee_per_gas: 1,
            }),
        );
        assert_eq!(
            api_code(client.submit(&other).await),
            (422, "wrong_chain".into())
        );
        // A body over the limit.
        let huge = reqwest::Client::new()
            .post(format!("{url}/v1/tx"))
            .header("content-type", "application/json")
            .body(format!("{{\"tx\": \"{}\"}}", "00".repeat(20_000)))
            .send()
            .await
            .expect("post");
        assert_eq!(huge.status().as_u16(), 413);
        // Malformed JSON.
        let response = reqwest::Client::new()
            .post(format!("{url}/v1/tx"))
            .header("content-type", "application/json")
            .body("{\"tx\": ")
            .send()
            .await
            .expect("post");
        assert_eq!(response.status().as_u16(), 400);
        let body: serde_json::Value = response.json().await.expect("error body");
        assert_eq!(body["code"], "malformed_json");

        // Nothing changed: a few more blocks later the accounts are as they
        // were and the refused transactions are unknown.
        let status = client.status().await.expect("status");
        let target = status.executed_height + 3;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while client.status().await.expect("status").executed_height < target {
            assert!(tokio::time::Instant::now() < deadline, "the chain stalled");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(client.account(sender).await.expect("sender"), after);
        assert_eq!(client.account(recipient).await.expect("recipient"), got);
        for refused in [stale.to_bytes(), forged, other.to_bytes()] {
            let h = qbind_core::types::Hash32::digest(&refused);
            let e = client.tx_status(h).await.expect_err("unknown");
            assert_eq!(e.api_code(), Some("tx_not_found"));
        }
        let root = block
            .state_root
            .clone()
            .expect("an executed block has a root");
        let view = client.tx_status(hash).await.expect("status");
        (hash, view, (height, root), tx)
    });

    common::interrupt_all_and_expect_clean_exit(&mut nodes.0);
    drop(nodes);

    // Restarted on the same data directory: the receipt and the block's
    // state root come from the store (the memory index starts empty).
    let (mut nodes, url) = start_node(dir.path());
    runtime.block_on(async {
        let client = QbindClient::new(&url).expect("client");
        let view = client.tx_status(hash).await.expect("known after a restart");
        assert_eq!(view, committed, "the same receipt after a restart");
        let (height, root) = root;
        let block = client.block(height).await.expect("block");
        assert_eq!(
            block.state_root,
            Some(root),
            "the same state root after a restart"
        );
        // The same transaction again: still known (from the store).
        assert_eq!(
            api_code(client.submit(&tx).await),
            (409, "already_known".into())
        );
    });
    common::interrupt_all_and_expect_clean_exit(&mut nodes.0);
}
