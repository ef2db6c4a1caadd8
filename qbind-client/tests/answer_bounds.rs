//! The client reads a node's answer only up to a bound: a node (or anything
//! at its address) that streams an endless body cannot make the client hold
//! more than `MAX_JSON_ANSWER` bytes of a JSON answer, or
//! `MAX_ERROR_ANSWER` of an error. State sync lists a peer's snapshots with
//! this client, so before the bound any peer given to `--state-sync-from`
//! could fill the syncing node's memory.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use qbind_client::{ClientError, MAX_ERROR_ANSWER, MAX_JSON_ANSWER, QbindClient};

/// Streamed before the server gives up by itself.
const SERVER_LIMIT: usize = 64 << 20;

/// A server on 127.0.0.1 that answers one request with `status` and an
/// endless chunked body of JSON-looking bytes; its URL, and the number of
/// body bytes it managed to send before the client hung up.
fn endless_server(status: &'static str) -> (String, mpsc::Receiver<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (sent_tx, sent) = mpsc::channel();
    std::thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
            line.clear();
        }
        let mut stream = stream;
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        let mut sent = 0usize;
        if stream.write_all(head.as_bytes()).is_ok() {
            let chunk = vec![b' '; 64 << 10];
            let framed = [
                format!("{:x}\r\n", chunk.len()).into_bytes(),
                chunk,
                b"\r\n".to_vec(),
            ]
            .concat();
            while sent < SERVER_LIMIT && stream.write_all(&framed).is_ok() {
                sent += 64 << 10;
            }
        }
        let _ = sent_tx.send(sent);
    });
    (url, sent)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn an_endless_json_answer_is_refused_at_the_bound() {
    let (url, sent) = endless_server("200 OK");
    let client = QbindClient::new(&url).expect("client");
    let answer = runtime().block_on(client.status());
    match answer {
        Err(ClientError::Unexpected {
            status: 200,
            detail,
        }) => assert_eq!(
            detail,
            format!("answer longer than {MAX_JSON_ANSWER} bytes")
        ),
        other => panic!("{other:?}"),
    }
    // The client hung up long before the server's own limit.
    let sent = sent.recv_timeout(Duration::from_secs(30)).expect("server");
    assert!(sent < SERVER_LIMIT, "the client read {sent} bytes");
}

#[test]
fn an_endless_error_answer_is_refused_at_the_bound() {
    let (url, _) = endless_server("500 Internal Server Error");
    let client = QbindClient::new(&url).expect("client");
    match runtime().block_on(client.state_snapshots()) {
        Err(ClientError::Unexpected {
            status: 500,
            detail,
        }) => assert_eq!(
            detail,
            format!("answer longer than {MAX_ERROR_ANSWER} bytes")
        ),
        other => panic!("{other:?}"),
    }
}

/// An answer that announces more than the bound is refused before any of
/// its body is read (here it never sends one); so is one for state-sync
/// bytes above the caller's bound.
#[test]
fn an_announced_length_above_the_bound_is_refused_at_once() {
    for (path, max) in [
        ("/v1/status", MAX_JSON_ANSWER),
        ("/v1/state-sync/1/proof", 1_000),
    ] {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let announced = max + 1;
        std::thread::spawn(move || {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {announced}\r\n\r\n");
            let _ = stream.write_all(head.as_bytes());
            // Hold the connection open without a body.
            std::thread::sleep(Duration::from_secs(20));
        });
        let client = QbindClient::new(&url).expect("client");
        let rt = runtime();
        let answer = if path == "/v1/status" {
            rt.block_on(client.status()).map(|_| Vec::new())
        } else {
            rt.block_on(client.state_bytes(path, max))
        };
        match answer {
            Err(ClientError::Unexpected {
                status: 200,
                detail,
            }) => {
                assert_eq!(detail, format!("answer longer than {max} bytes"));
            }
            other => panic!("{path}: {other:?}"),
        }
    }
}
