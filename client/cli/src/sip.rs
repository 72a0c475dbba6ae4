//! `sharecall sip --config sip.toml`: runs the SIP front end (registrar,
//! proxy or redirect server) until ctrl-c or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use sharecall_frontend::config::Config;
use sharecall_frontend::server::{Server, ServerError};

/// Arguments of `sharecall sip`.
#[derive(clap::Args)]
pub struct SipArgs {
    /// The front end's configuration (see docs/sip.example.toml).
    #[arg(long, value_name = "FILE", default_value = "sip.toml")]
    config: PathBuf,
}

/// Resolves on ctrl-c or, on Unix, SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    eprintln!("sharecall sip: shutting down (waiting for transactions to finish)");
}

/// Explains a start-up failure in terms of what to fix.
fn explain(e: &ServerError) -> String {
    match e {
        ServerError::Transport(t) => {
            let s = t.to_string();
            if s.contains("in use") {
                format!("{s} (another process holds the port: stop it or change [listen])")
            } else {
                s
            }
        }
        other => other.to_string(),
    }
}

/// Runs the front end; exit status 1 with a message on any failure.
pub async fn run(args: SipArgs) -> ExitCode {
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match Server::bind(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {}", explain(&e));
            return ExitCode::FAILURE;
        }
    };
    match server.run_configured(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", explain(&e));
            ExitCode::FAILURE
        }
    }
}
