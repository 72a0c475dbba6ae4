//! Helpers for sharecall's end-to-end tests, which run the real binaries.

use std::path::PathBuf;
use std::process::{Command, Output};

/// Path of a workspace binary built next to the running test.
///
/// `cargo test --workspace` builds `sharecall` and `sharecall-provider`
/// (their packages have integration tests); when running this crate alone,
/// build them first with `cargo build --bins`.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} not built: run `cargo test --workspace` or `cargo build --bins` first",
        path.display()
    );
    path
}

/// Runs a workspace binary to completion.
pub fn run(name: &str, args: &[&str]) -> Output {
    Command::new(bin(name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name}: {e}"))
}

/// Stdout and stderr of an output as text.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the `sharecall` CLI with `HOME` = `home` and `providers` as
/// `SHARECALL_PROVIDERS` (no `SHARECALL_KEY` from the environment), and
/// returns its exit code, stdout and stderr; a panic in it fails the test.
pub fn sharecall(home: &std::path::Path, providers: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin("sharecall"))
        .args(args)
        .env("HOME", home)
        .env("SHARECALL_PROVIDERS", providers)
        .env_remove("SHARECALL_KEY")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run sharecall");
    let (stdout, stderr) = text(&out);
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

pub mod cluster;
pub mod proxy;
pub mod sip;
pub mod sipp;
pub mod table;
