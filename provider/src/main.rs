//! `sharecall-provider`: one of the three sharecall providers.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sharecall_provider::identity::Identity;

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
    }
    Ok(())
}
