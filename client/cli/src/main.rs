//! `sharecall`: the sharecall command line tool.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: the SMC, HTTP and TLS paths allocate many short-lived buffers
/// across threads, where glibc's arenas contend (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod commands;
mod demo;
mod demo_call;
mod sip;

/// sharecall: a VoIP location service run by three providers that only
/// ever hold secret shares of who is reachable where.
#[derive(Parser)]
#[command(
    version,
    about,
    after_help = "Provider URLs come from --providers URL,URL,URL or SHARECALL_PROVIDERS; \
                  the account key from --key FILE or SHARECALL_KEY \
                  (default ~/.config/sharecall/account.key).\n\
                  Exit status: 0 ok, 1 error, 2 usage error, 3 executed with a negative \
                  result (not_found, exists, forbidden)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a local three-provider cluster (real TLS between the providers),
    /// register pseudonyms and resolve them with secure multiparty
    /// computation, printing what each provider sees.
    Demo(demo::DemoArgs),
    /// Create a new account key (ed25519), stored with mode 0600.
    Keygen(commands::KeygenArgs),
    /// Enroll the account's public key with the three providers.
    Enroll(commands::EnrollArgs),
    /// Register a pseudonym -> endpoint binding (shared; each provider gets
    /// only its part).
    Register(commands::EntryArgs),
    /// Look up a pseudonym's endpoint, reconstructed and checked locally.
    Resolve(commands::PseudonymArgs),
    /// Replace the endpoint of a pseudonym this account registered.
    Update(commands::EntryArgs),
    /// Remove a pseudonym this account registered.
    Delete(commands::PseudonymArgs),
    /// Bulk-import pseudonym,endpoint,ttl,owner rows from a CSV file
    /// (importer accounts only); resumable.
    Import(commands::ImportArgs),
    /// Run the SIP front end (registrar, digest authentication, proxy or
    /// redirect server over UDP, TCP and TLS) on its configuration file,
    /// until ctrl-c or SIGTERM.
    Sip(sip::SipArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Demo(args) => runtime.block_on(demo::run(args)),
        Command::Keygen(args) => return commands::keygen(&args),
        Command::Enroll(args) => return runtime.block_on(commands::enroll(args)),
        Command::Register(args) => {
            return runtime.block_on(commands::entry(commands::EntryKind::Register, args))
        }
        Command::Resolve(args) => return runtime.block_on(commands::resolve(args)),
        Command::Update(args) => {
            return runtime.block_on(commands::entry(commands::EntryKind::Update, args))
        }
        Command::Delete(args) => return runtime.block_on(commands::delete(args)),
        Command::Import(args) => return runtime.block_on(commands::import(args)),
        Command::Sip(args) => return runtime.block_on(sip::run(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
