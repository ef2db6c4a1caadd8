//! qbind-net benchmarks: full KEMTLS handshakes per core, encrypted stream
//! throughput on loopback next to raw AEAD sealing and plain TCP, and bytes
//! on the wire per handshake. Results: docs/benchmarks.md, "Network (qbind-net)".

use std::net::IpAddr;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use qbind_core::types::NetworkEnvironment;
use qbind_net::frame::{read_frame, write_frame};
use qbind_net::handshake::cookie::{CookieJar, ReplayGuard};
use qbind_net::handshake::machine::{
    HandshakeConfig, Initiator, InitiatorRandomness, Responder, ResponderRandomness,
};
use qbind_net::record::RecordSealer;
use qbind_net::{
    Acceptor, ChannelConfig, CipherSuite, SecureChannel, StaticIdentity, connect_addr,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use zeroize::Zeroizing;

fn ident(n: u8) -> StaticIdentity {
    StaticIdentity::from_seed(&[n; 32], &[n ^ 1; 32])
}

/// One complete handshake, both roles, in memory; returns bytes on the wire
/// (messages plus their 4-byte frame headers).
fn handshake_once(
    i: &StaticIdentity,
    r: &StaticIdentity,
    responder: &Responder,
    replay: &mut ReplayGuard,
) -> usize {
    let cfg = HandshakeConfig {
        chain_id: NetworkEnvironment::Devnet.chain_id().0,
        suites: vec![CipherSuite::Aes256Gcm, CipherSuite::ChaCha20Poly1305],
    };
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let allowed = vec![i.public().clone()];
    let (st, m0) = Initiator::start(i, r.public(), &cfg, InitiatorRandomness::random()).unwrap();
    let m1 = responder.on_client_hello(ip, 0, &m0).unwrap();
    let (st, m2) = st.on_cookie(&m1).unwrap();
    let (rst, m3) = responder
        .on_key_exchange(ip, 0, &m2, &allowed, replay, ResponderRandomness::random())
        .unwrap();
    let (m4, _) = st.on_server_finished(&m3).unwrap();
    rst.on_client_finished(&m4).unwrap();
    [m0, m1, m2, m3, m4].iter().map(|m| m.len() + 4).sum()
}

fn handshakes(c: &mut Criterion) {
    let (i, r) = (ident(1), ident(2));
    let cfg = HandshakeConfig {
        chain_id: NetworkEnvironment::Devnet.chain_id().0,
        suites: vec![CipherSuite::Aes256Gcm],
    };
    let responder = Responder::new(&r, &cfg, CookieJar::with_secret([9; 32], 30));
    let mut replay = ReplayGuard::new(usize::MAX, 60);
    let wire = handshake_once(&i, &r, &responder, &mut replay);
    eprintln!("bytes on the wire per handshake (both directions, with frame headers): {wire}");
    let mut g = c.benchmark_group("handshake");
    g.bench_function("full_both_roles_one_core", |b| {
        b.iter(|| handshake_once(&i, &r, &responder, &mut replay));
    });
    let rt = Runtime::new().unwrap();
    let ccfg = ChannelConfig::new(NetworkEnvironment::Devnet);
    let (addr, _server) = rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut loose = ccfg.clone();
        loose.handshake_burst = u32::MAX;
        loose.handshakes_per_ip_per_sec = 1e9;
        let acceptor = Acceptor::new(&r, &loose);
        let allowed = vec![i.public().clone()];
        let h = tokio::spawn(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                let _ = acceptor.accept(s, &allowed).await;
            }
        });
        (addr, h)
    });
    g.bench_function("tcp_loopback_connect_and_handshake", |b| {
        b.iter(|| rt.block_on(async { connect_addr(addr, &i, r.public(), &ccfg).await.unwrap() }));
    });
    g.finish();
}

fn aead_seal(c: &mut Criterion) {
    let mut g = c.benchmark_group("aead_seal");
    for size in [64 << 10, 1 << 20] {
        let msg = vec![0x5au8; size];
        g.throughput(Throughput::Bytes(size as u64));
        for suite in [CipherSuite::Aes256Gcm, CipherSuite::ChaCha20Poly1305] {
            let mut sealer = RecordSealer::new(suite, Zeroizing::new([3; 32]), 1 << 32);
            let mut out = Vec::with_capacity(size + 64);
            g.bench_with_input(
                BenchmarkId::new(format!("{suite:?}"), size),
                &msg,
                |b, msg| {
                    b.iter(|| {
                        out.clear();
                        sealer.seal_data(msg, &mut out).unwrap();
                    });
                },
            );
        }
    }
    g.finish();
}

async fn channel_pair(suite: CipherSuite) -> (SecureChannel, SecureChannel) {
    let (i, r) = (ident(1), ident(2));
    let mut cfg = ChannelConfig::new(NetworkEnvironment::Devnet);
    cfg.suites = vec![suite];
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let acceptor = Acceptor::new(&r, &cfg);
    let allowed = vec![i.public().clone()];
    let server = async {
        let (s, _) = l.accept().await.unwrap();
        acceptor.accept(s, &allowed).await.unwrap().0
    };
    let (a, b) = tokio::join!(connect_addr(addr, &i, r.public(), &cfg), server);
    (a.unwrap(), b)
}

fn streams(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let mut g = c.benchmark_group("stream_loopback");
    g.measurement_time(Duration::from_secs(4));
    for size in [64 << 10, 1 << 20] {
        let msg = vec![0xa5u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        for suite in [CipherSuite::Aes256Gcm, CipherSuite::ChaCha20Poly1305] {
            let (tx, rx) = rt.block_on(channel_pair(suite));
            let (mut tx, _) = tx.into_split();
            let (_, mut rx) = rx.into_split();
            g.bench_with_input(
                BenchmarkId::new(format!("kemtls_{suite:?}"), size),
                &msg,
                |b, msg| {
                    b.iter_custom(|iters| {
                        rt.block_on(async {
                            let start = Instant::now();
                            let send = async {
                                for _ in 0..iters {
                                    tx.send(msg).await.unwrap();
                                }
                            };
                            let recv = async {
                                for _ in 0..iters {
                                    rx.recv().await.unwrap();
                                }
                            };
                            tokio::join!(send, recv);
                            start.elapsed()
                        })
                    });
                },
            );
        }
        let (mut a, mut b2) = rt.block_on(async {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let (a, b) = tokio::join!(TcpStream::connect(addr), l.accept());
            (a.unwrap(), b.unwrap().0)
        });
        g.bench_with_input(
            BenchmarkId::new("plain_tcp_frames", size),
            &msg,
            |b, msg| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        let (mut r, _) = b2.split();
                        let (_, mut w) = a.split();
                        let send = async {
                            for _ in 0..iters {
                                write_frame(&mut w, msg, 2 << 20).await.unwrap();
                            }
                        };
                        let recv = async {
                            for _ in 0..iters {
                                read_frame(&mut r, 2 << 20).await.unwrap();
                            }
                        };
                        tokio::join!(send, recv);
                        start.elapsed()
                    })
                });
            },
        );
    }
    g.finish();
}

#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, handshakes, aead_seal, streams);
}
criterion_main!(group::benches);
