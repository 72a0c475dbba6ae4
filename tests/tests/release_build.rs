//! A release build of the provider has no fault hooks (issue 13, item 9):
//! the hooks are behind the `fault-injection` cargo feature, which only the
//! tests enable. `cargo test --workspace` unifies features, so the debug
//! binaries the other tests start have them; this test builds the release
//! binary of the provider package alone, as an operator would, and asks it.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn release_provider_binary_has_no_fault_hooks() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // The workspace target directory: the release profile has its own
    // subdirectory (and lock), so this does not wait on the running test
    // build and later runs reuse it.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let status = Command::new(&cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "sharecall-provider",
            "--bin",
            "sharecall-provider",
            "--target-dir",
        ])
        .arg(&target)
        .status()
        .expect("run cargo build --release");
    assert!(status.success(), "cargo build --release failed");
    let bin = target.join("release").join("sharecall-provider");
    let out = Command::new(&bin)
        .arg("build-info")
        .env("SHARECALL_FAULT_TAMPER_ANSWERS", "1")
        .env("SHARECALL_FAULT_EXIT_BEFORE_COMMIT", "1")
        .output()
        .expect("run the release binary");
    assert!(out.status.success(), "build-info failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.trim() == "fault-injection: off"),
        "the release binary reports fault hooks: {text}"
    );
    // The hook names are not even in the binary.
    let bytes = std::fs::read(&bin).expect("read the binary");
    for name in [
        "SHARECALL_FAULT_TAMPER_ANSWERS",
        "SHARECALL_FAULT_EXIT_BEFORE_COMMIT",
    ] {
        assert!(
            !bytes.windows(name.len()).any(|w| w == name.as_bytes()),
            "{name} is compiled into the release binary"
        );
    }
}
