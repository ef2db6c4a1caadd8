//! A one-connection KEMTLS echo server, used by the cross-process test and
//! as a usage example of the secure-channel API.
//!
//! `secure_echo <listen-addr> <server-seed-byte> <client-seed-byte>`: binds,
//! prints `LISTENING <addr>`, accepts one channel from the client identity,
//! echoes every message until the client closes, then exits 0.

use std::process::ExitCode;

use qbind_core::types::NetworkEnvironment;
use qbind_net::{ChannelConfig, NetError, StaticIdentity, accept};
use tokio::net::TcpListener;

fn identity(seed: u8) -> StaticIdentity {
    StaticIdentity::from_seed(&[seed; 32], &[seed ^ 0xff; 32])
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(addr), Some(s), Some(c)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("usage: secure_echo <listen-addr> <server-seed> <client-seed>");
        return ExitCode::from(2);
    };
    let (Ok(s), Ok(c)) = (s.parse::<u8>(), c.parse::<u8>()) else {
        eprintln!("seeds are bytes (0-255)");
        return ExitCode::from(2);
    };
    match run(addr, s, c).await {
        Ok(n) => {
            println!("ECHOED {n}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(addr: &str, server_seed: u8, client_seed: u8) -> Result<u64, NetError> {
    let listener = TcpListener::bind(addr).await?;
    println!("LISTENING {}", listener.local_addr()?);
    let cfg = ChannelConfig::new(NetworkEnvironment::Devnet);
    let (stream, _) = listener.accept().await?;
    let allowed = vec![identity(client_seed).public().clone()];
    let (mut chan, _peer) = accept(stream, &identity(server_seed), &allowed, &cfg).await?;
    let mut n = 0;
    loop {
        match chan.recv().await {
            Ok(msg) => {
                chan.send(&msg).await?;
                n += 1;
            }
            Err(NetError::Closed) => return Ok(n),
            Err(e) => return Err(e),
        }
    }
}
