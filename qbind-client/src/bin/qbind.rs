//! `qbind`: the command-line client of a QBIND node's API (docs/api.md).

use std::process::ExitCode;

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("qbind: cannot start the async runtime: {e}");
            return ExitCode::from(4);
        }
    };
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let code = runtime.block_on(qbind_client::cli::run(
        std::env::args_os(),
        &mut out,
        &mut err,
    ));
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
