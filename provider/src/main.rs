//! `sharecall-provider`: one of the three sharecall providers.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sharecall_provider::config::ProviderConfig;
use sharecall_provider::identity::Identity;

/// mimalloc: the SMC, HTTP and TLS paths allocate many short-lived buffers
/// across threads, where glibc's arenas contend (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One of the three sharecall providers.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create this provider's key and self-signed certificate and print the
    /// fingerprint the other two providers must pin.
    Init {
        /// Directory for provider.cert.pem and provider.key.pem.
        #[arg(long)]
        data_dir: PathBuf,
        /// Common name written into the certificate (for operators' eyes).
        #[arg(long, default_value = "sharecall-provider")]
        name: String,
        /// Replace an existing identity (the old fingerprint stops working).
        #[arg(long)]
        force: bool,
    },
    /// Print the fingerprint of an existing identity.
    Fingerprint {
        /// Directory holding provider.cert.pem.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Run the provider (see docs/provider.example.toml).
    Run {
        /// The provider's TOML configuration.
        #[arg(long)]
        config: PathBuf,
    },
    /// Run a task through a running provider's orchestration core and print
    /// the result (JSON).
    Job {
        /// The provider's admin address.
        #[arg(long, default_value = "127.0.0.1:7402")]
        admin: String,
        /// Task kind: secure-sum or noop.
        #[arg(long, default_value = "secure-sum")]
        kind: String,
        /// Task parameters as JSON (e.g. '{"repeat": 10}').
        #[arg(long)]
        params: Option<String>,
        /// Purpose recorded with the task.
        #[arg(long, default_value = "operator request")]
        purpose: String,
    },
    /// Print what this binary was built with (`fault-injection: on|off`).
    BuildInfo,
    /// Show a running provider's view of its peers (JSON).
    Peers {
        /// The provider's admin address.
        #[arg(long, default_value = "127.0.0.1:7402")]
        admin: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Init {
            data_dir,
            name,
            force,
        } => {
            let identity = Identity::generate(&name)?;
            identity.save(&data_dir, force)?;
            println!("wrote {}", data_dir.display());
            println!("fingerprint: {}", identity.fingerprint());
        }
        Command::Fingerprint { data_dir } => {
            let identity = Identity::load(&data_dir)?;
            println!("fingerprint: {}", identity.fingerprint());
        }
        Command::Run { config } => {
            let config = ProviderConfig::load(&config)?;
            init_tracing(&config.log.filter);
            let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
            runtime.block_on(sharecall_provider::server::run(config, shutdown_signal()))?;
        }
        Command::Job {
            admin,
            kind,
            params,
            purpose,
        } => {
            let params: serde_json::Value = match params {
                Some(p) => serde_json::from_str(&p).context("--params is not valid JSON")?,
                None => serde_json::Value::Null,
            };
            let body = serde_json::json!({"kind": kind, "params": params, "purpose": purpose});
            let url = format!("http://{admin}/v1/admin/jobs");
            print_response(ureq::post(&url).send_json(body), &url)?;
        }
        Command::BuildInfo => {
            println!("version: {}", env!("CARGO_PKG_VERSION"));
            let on = sharecall_provider::FAULT_INJECTION;
            println!("fault-injection: {}", if on { "on" } else { "off" });
        }
        Command::Peers { admin } => {
            let url = format!("http://{admin}/v1/admin/peers");
            print_response(ureq::get(&url).call(), &url)?;
        }
    }
    Ok(())
}

fn print_response(result: Result<ureq::Response, ureq::Error>, url: &str) -> anyhow::Result<()> {
    match result {
        Ok(r) => {
            let v: serde_json::Value = r.into_json().context("response is not JSON")?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(())
        }
        Err(ureq::Error::Status(code, r)) => {
            let text = r.into_string().unwrap_or_default();
            anyhow::bail!("{url} answered {code}: {text}")
        }
        Err(e) => anyhow::bail!("cannot reach {url}: {e}"),
    }
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Completes on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
