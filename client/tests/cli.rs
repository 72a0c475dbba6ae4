//! The `sharecall` binary's handling of bad input: a clear message and a
//! failing exit status, never a panic.

use std::process::Command;

fn sharecall(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sharecall"))
        .args(args)
        .output()
        .expect("run sharecall");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn registration_without_endpoint_is_refused_with_a_message() {
    let (ok, _, err) = sharecall(&["demo", "--register", "+49301234567"]);
    assert!(!ok);
    assert!(err.contains("expected PSEUDONYM=ENDPOINT"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn national_number_is_refused_with_a_message() {
    let (ok, _, err) = sharecall(&["demo", "--resolve", "030 1234567"]);
    assert!(!ok);
    assert!(err.contains("--resolve"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn oversized_endpoint_is_refused_with_a_message() {
    let long = format!("alice=sip:{}@example.org", "a".repeat(400));
    let (ok, _, err) = sharecall(&["demo", "--register", &long]);
    assert!(!ok);
    assert!(err.contains("endpoint"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let (ok, _, err) = sharecall(&["frobnicate"]);
    assert!(!ok);
    assert!(err.contains("Usage") || err.contains("usage"), "{err}");
}
