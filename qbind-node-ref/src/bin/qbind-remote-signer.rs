//! `qbind-remote-signer --config /etc/qbind/remote_signer.toml`: the
//! remote signing daemon (spec §6.5; runbook §4.1 option B, §4.2, §10.2).
//!
//! It unlocks its backend (encrypted-fs keystore or PKCS#11 token; the
//! passphrase / PIN come from owner-only files — `passphrase_file`,
//! `identity_passphrase_file`, the HSM config's `pin_file` — or, weaker,
//! environment variables), runs the startup check, opens the durable
//! double-sign record (which must exist unless `--init-double-sign-record`
//! is given), signs only the kinds its config allows (consensus kinds by
//! default; `allow_key_rotation` for rotations), then accepts KEMTLS
//! connections on `listen_addr` from the one node whose P2P identity key is
//! `allowed_client_pub`, signing at most `rate_limit_rps` requests per
//! second. `/metrics` is served over plain HTTP on `metrics_addr`
//! (loopback only). Exit codes: 0 on SIGINT/SIGTERM, 1 if startup fails.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use qbind_core::key_rotation::KeyRole;
use qbind_core::traits::Signer;
use qbind_core::types::ValidatorId;
use qbind_net::{PeerPublic, StaticIdentity};
use qbind_signer::keystore::{self, KdfPolicy, Passphrase};
use qbind_signer::pkcs11::{HsmConfig, Pkcs11Signer};
use qbind_signer::remote::daemon::{bind_metrics, serve_metrics};
use qbind_signer::remote::{
    BackendMode, DaemonConfig, KemtlsListener, PeerIdentity, RemoteSignerDaemon,
};
use qbind_signer::{DoubleSignGuard, EncryptedFsSigner, GuardedSigner, SignerMetrics};

#[derive(Parser)]
#[command(
    name = "qbind-remote-signer",
    version,
    about = "QBIND remote signing daemon (KEMTLS)"
)]
struct Cli {
    /// Path of remote_signer.toml.
    #[arg(long)]
    config: PathBuf,
    /// Write the double-sign record (JSON, docs/signer.md) to this file and
    /// exit, for moving the signer to another host. Stop the daemon first.
    #[arg(long, conflicts_with = "import_double_sign_record")]
    export_double_sign_record: Option<PathBuf>,
    /// Merge a record exported on the old host into `double_sign_dir`
    /// (marks only rise) and exit.
    #[arg(long)]
    import_double_sign_record: Option<PathBuf>,
    /// Create an EMPTY double-sign record in `double_sign_dir` if there is
    /// none (first start of a new key only; see docs/signer.md "Losing the
    /// record"). Without it a missing record stops start-up.
    #[arg(long)]
    init_double_sign_record: bool,
}

/// Most client connections served at once (the daemon has one node; a few
/// spare slots let a restarted node reconnect before the old one times out).
const MAX_CONNECTIONS: usize = 4;

struct Started {
    daemon: Arc<RemoteSignerDaemon>,
    listener: Arc<KemtlsListener>,
    metrics_listener: tokio::net::TcpListener,
}

async fn start(
    cfg: &DaemonConfig,
    policy: &KdfPolicy,
    init_record: bool,
) -> Result<Started, String> {
    let env = cfg.network().map_err(|e| e.to_string())?;
    let validator = ValidatorId(cfg.validator_id);
    let metrics = SignerMetrics::shared();
    let backend: Box<dyn Signer> = match cfg.backend_mode {
        BackendMode::EncryptedFs => {
            let dir = cfg.keystore_path.as_ref().ok_or("keystore_path missing")?;
            let pass = match (&cfg.passphrase_file, cfg.passphrase_env.as_deref()) {
                (Some(f), _) => Passphrase::from_file(f),
                (None, Some(var)) => Passphrase::from_env(var),
                (None, None) => return Err("passphrase_file or passphrase_env missing".into()),
            }
            .map_err(|e| e.to_string())?;
            let signer =
                EncryptedFsSigner::open(dir, validator, KeyRole::Consensus, env, &pass, policy)
                    .map_err(|e| e.to_string())?;
            metrics.set_startup_ok(true);
            Box::new(signer)
        }
        BackendMode::HsmPkcs11 => {
            let path = cfg
                .hsm_config_path
                .as_ref()
                .ok_or("hsm_config_path missing")?;
            let hsm = HsmConfig::load(path).map_err(|e| e.to_string())?;
            Box::new(
                Pkcs11Signer::open_from_env(&hsm, validator, env, Arc::clone(&metrics))
                    .map_err(|e| e.to_string())?,
            )
        }
    };
    let guard = if init_record {
        tracing::warn!(
            dir = %cfg.double_sign_dir.display(),
            "--init-double-sign-record: creating an empty double-sign record if none exists"
        );
        DoubleSignGuard::init(&cfg.double_sign_dir, validator, env)
    } else {
        DoubleSignGuard::open(&cfg.double_sign_dir, validator, env)
    };
    let guard = Arc::new(guard.map_err(|e| e.to_string())?);
    let guarded: Arc<dyn Signer> =
        Arc::new(GuardedSigner::new(backend, guard, Arc::clone(&metrics)));

    let id_pass = Passphrase::from_file_or_env(
        cfg.identity_passphrase_file.as_deref(),
        &cfg.identity_passphrase_env,
    )
    .map_err(|e| e.to_string())?;
    let id_key = keystore::load_key_file(
        &cfg.identity_key_path,
        None,
        KeyRole::P2pIdentity,
        &id_pass,
        policy,
    )
    .map_err(|e| format!("identity key: {e}"))?;
    let (d, z) = id_key
        .kem_seed()
        .ok_or("identity key is not an ML-KEM key")?;
    let identity = StaticIdentity::from_seed(&d, &z);
    let client_key = cfg.allowed_client_key().map_err(|e| e.to_string())?;
    let client =
        PeerPublic::from_bytes(&client_key).map_err(|e| format!("allowed_client_pub: {e}"))?;
    let allowed = PeerIdentity::of_key(&client_key);

    let daemon = Arc::new(
        RemoteSignerDaemon::new(guarded, allowed, cfg.rate_limit_rps, metrics)
            .with_kind_policy(cfg.kind_policy()),
    );
    let tcp = tokio::net::TcpListener::bind(&cfg.listen_addr)
        .await
        .map_err(|e| format!("listen_addr {}: {e}", cfg.listen_addr))?;
    let listener = Arc::new(KemtlsListener::new(tcp, &identity, client, env));
    let metrics_listener = bind_metrics(&cfg.metrics_addr, false)
        .await
        .map_err(|e| format!("metrics_addr {}: {e}", cfg.metrics_addr))?;
    Ok(Started {
        daemon,
        listener,
        metrics_listener,
    })
}

/// Serve until the task is dropped.
async fn serve(s: Started) {
    // The process's one registry, read at each scrape.
    let registry = qbind_node_ref::metrics::components::remote_signer_registry(
        Arc::clone(s.daemon.metrics()),
        Arc::clone(s.daemon.signer_metrics()),
    );
    let metrics_task = tokio::spawn(serve_metrics(s.metrics_listener, move || {
        qbind_node_ref::metrics::render(&registry)
    }));
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match s.listener.accept_tcp().await {
            Ok(st) => st,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!("too many connections; dropping one");
            continue;
        };
        let (listener, daemon) = (Arc::clone(&s.listener), Arc::clone(&s.daemon));
        tokio::spawn(async move {
            let _permit = permit;
            match listener.handshake(stream).await {
                Ok(mut ch) => {
                    if let Err(e) = daemon.serve(&mut ch).await {
                        tracing::warn!(error = %e, "connection ended with an error");
                    }
                }
                Err(e) => {
                    // An unknown or unauthenticated initiator is an
                    // unauthorised client; anything else is a bad request.
                    let counter = match e {
                        qbind_net::NetError::UnknownPeer
                        | qbind_net::NetError::AuthenticationFailed => {
                            &daemon.metrics().unauthorized
                        }
                        _ => &daemon.metrics().bad_requests,
                    };
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(error = %e, "KEMTLS handshake refused");
                }
            }
        });
        if metrics_task.is_finished() {
            break;
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let text = std::fs::read_to_string(&cli.config)
        .map_err(|e| format!("{}: {e}", cli.config.display()))?;
    let cfg = DaemonConfig::from_toml_str(&text).map_err(|e| e.to_string())?;
    if cli.export_double_sign_record.is_some() || cli.import_double_sign_record.is_some() {
        let env = cfg.network().map_err(|e| e.to_string())?;
        let guard = DoubleSignGuard::open(&cfg.double_sign_dir, ValidatorId(cfg.validator_id), env)
            .map_err(|e| e.to_string())?;
        if let Some(out) = &cli.export_double_sign_record {
            guard.export_to(out).map_err(|e| e.to_string())?;
            println!("exported double-sign record to {}", out.display());
        }
        if let Some(input) = &cli.import_double_sign_record {
            guard.import_from(input).map_err(|e| e.to_string())?;
            println!("imported double-sign record from {}", input.display());
        }
        return Ok(());
    }
    let started = start(&cfg, &KdfPolicy::PRODUCTION, cli.init_double_sign_record).await?;
    tracing::info!(listen = %cfg.listen_addr, metrics = %cfg.metrics_addr, validator = cfg.validator_id, "qbind-remote-signer ready");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        () = serve(started) => Err("listener stopped".into()),
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("SIGINT: shutting down");
            Ok(())
        }
        _ = term.recv() => {
            tracing::info!("SIGTERM: shutting down");
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("qbind-remote-signer: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(Cli::parse())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "qbind-remote-signer failed");
            eprintln!("qbind-remote-signer: error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qbind_core::signing::{SignKind, verify_domain};
    use qbind_core::traits::SignRequest;
    use qbind_core::types::NetworkEnvironment;
    use qbind_signer::keystore::KdfParams;
    use qbind_signer::remote::{RemoteSigner, connect_kemtls};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn daemon_from_config_signs_over_kemtls_and_serves_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let p = |s: &str| dir.path().join(s);
        let pass = Passphrase::new("correct horse battery staple".into());
        let policy = KdfPolicy::INSECURE_TEST_ONLY;
        let make_key = |d: &std::path::Path, role| {
            keystore::generate_key(
                d,
                ValidatorId(42),
                role,
                &pass,
                KdfParams::INSECURE_TEST,
                &policy,
            )
            .unwrap()
        };
        let consensus = make_key(&p("signer"), KeyRole::Consensus);
        make_key(&p("signer"), KeyRole::P2pIdentity);
        make_key(&p("node"), KeyRole::P2pIdentity);
        // Tests cannot set environment variables (edition 2024 makes that
        // unsafe), so `start` is checked on its failure paths and the
        // serving path is assembled from the same files below.
        let cfg = DaemonConfig::from_toml_str(&format!(
            r#"
listen_addr = "127.0.0.1:0"
validator_id = 42
backend_mode = "encrypted-fs"
keystore_path = "{ks}"
passphrase_env = "QBIND_TEST_NEVER_SET_PASSPHRASE"
rate_limit_rps = 50
network = "testnet"
allowed_client_pub = "{client}"
identity_key_path = "{idk}"
identity_passphrase_env = "QBIND_TEST_NEVER_SET_PASSPHRASE"
double_sign_dir = "{rec}"
metrics_addr = "127.0.0.1:0"
"#,
            ks = p("signer").display(),
            client = p("node/p2p_identity.pub").display(),
            idk = p("signer/p2p_identity.key").display(),
            rec = p("record").display(),
        ))
        .unwrap();
        // The passphrase variable is unset: startup must fail, naming it.
        let err = start(&cfg, &policy, false).await.err().unwrap();
        assert!(err.contains("QBIND_TEST_NEVER_SET_PASSPHRASE"), "{err}");
        // With a variable that is set (HOME is, but holds no passphrase):
        // startup fails with a wrong-passphrase error, not a panic.
        let mut cfg2 = cfg.clone();
        cfg2.passphrase_env = Some("HOME".into());
        let err = start(&cfg2, &policy, false).await.err().unwrap();
        assert!(
            err.contains("wrong passphrase") || err.contains("HOME"),
            "{err}"
        );
        // Passphrase files (owner-only) start the daemon for real; a missing
        // double-sign record stops it unless the operator initialises one.
        let pass_file = p("pass");
        std::fs::write(&pass_file, "correct horse battery staple\n").unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&pass_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let mut cfg3 = cfg.clone();
        cfg3.passphrase_file = Some(pass_file.clone());
        cfg3.identity_passphrase_file = Some(pass_file);
        let err = start(&cfg3, &policy, false).await.err().unwrap();
        assert!(err.contains("does not exist"), "{err}");
        let started = start(&cfg3, &policy, true).await.unwrap();
        drop(started);

        // Full path, with the backends built directly from the same files.
        let signer = EncryptedFsSigner::open(
            &p("signer"),
            ValidatorId(42),
            KeyRole::Consensus,
            NetworkEnvironment::Testnet,
            &pass,
            &policy,
        )
        .unwrap();
        let guard = Arc::new(
            DoubleSignGuard::open(p("record"), ValidatorId(42), NetworkEnvironment::Testnet)
                .unwrap(),
        );
        let metrics = SignerMetrics::shared();
        let guarded: Arc<dyn Signer> = Arc::new(GuardedSigner::new(
            Box::new(signer),
            guard,
            Arc::clone(&metrics),
        ));
        let id_key =
            keystore::load_key(&p("signer"), None, KeyRole::P2pIdentity, &pass, &policy).unwrap();
        let (d, z) = id_key.kem_seed().unwrap();
        let identity = StaticIdentity::from_seed(&d, &z);
        let node_key =
            keystore::load_key(&p("node"), None, KeyRole::P2pIdentity, &pass, &policy).unwrap();
        let (nd, nz) = node_key.kem_seed().unwrap();
        let node = StaticIdentity::from_seed(&nd, &nz);
        let client_key = cfg.allowed_client_key().unwrap();
        assert_eq!(node.public().as_bytes(), client_key.as_slice());
        let daemon = Arc::new(RemoteSignerDaemon::new(
            guarded,
            PeerIdentity::of_key(&client_key),
            50,
            metrics,
        ));
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listener = Arc::new(KemtlsListener::new(
            tcp,
            &identity,
            PeerPublic::from_bytes(&client_key).unwrap(),
            NetworkEnvironment::Testnet,
        ));
        let addr = listener.local_addr().unwrap();
        let metrics_listener = bind_metrics("127.0.0.1:0", false).await.unwrap();
        let maddr = metrics_listener.local_addr().unwrap();
        let task = tokio::spawn(serve(Started {
            daemon,
            listener,
            metrics_listener,
        }));

        let ch = connect_kemtls(
            &format!("kemtls://{addr}"),
            &node,
            identity.public(),
            NetworkEnvironment::Testnet,
            std::time::Duration::from_secs(10),
        )
        .await
        .unwrap();
        let client = RemoteSigner::connect(
            Box::new(ch),
            ValidatorId(42),
            NetworkEnvironment::Testnet,
            None,
            std::time::Duration::from_secs(10),
            SignerMetrics::shared(),
        )
        .await
        .unwrap();
        assert_eq!(client.public_key().as_bytes(), consensus.as_slice());
        let req = qbind_signer::slot::requests::vote(1, qbind_core::types::Hash32::digest(b"v"));
        let sig = client.sign(&req).await.unwrap();
        verify_domain(
            client.public_key(),
            NetworkEnvironment::Testnet,
            SignKind::Vote,
            &req.message,
            &sig,
        )
        .unwrap();
        // A key rotation is not a kind this daemon is configured to sign.
        assert!(
            client
                .sign(&SignRequest {
                    kind: SignKind::KeyRotation,
                    view: None,
                    message: vec![1],
                    digest_preimage: Vec::new(),
                })
                .await
                .is_err()
        );

        let mut s = tokio::net::TcpStream::connect(maddr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).await.unwrap();
        assert!(
            body.contains("qbind_remote_signer_signed_total 1\n"),
            "{body}"
        );
        assert!(
            body.contains("# TYPE qbind_remote_signer_signed_total counter\n"),
            "{body}"
        );
        assert!(body.contains("qbind_hsm_startup_ok "), "{body}");
        assert!(
            qbind_node_ref::metrics::families::duplicate_families(
                body.split_once("\r\n\r\n").map_or("", |(_, page)| page)
            )
            .is_empty(),
            "{body}"
        );
        task.abort();
    }
}
