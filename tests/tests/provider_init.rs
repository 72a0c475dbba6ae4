//! `sharecall-provider init`: identity creation as an operator runs it.

use sharecall_tests::{run, text};

fn fingerprint_line(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint: "))
        .unwrap_or_else(|| panic!("no fingerprint line in {stdout:?}"))
        .to_string()
}

#[test]
fn init_creates_an_identity_and_refuses_to_overwrite_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("p0");
    let data = data.to_str().expect("utf-8 path");

    let out = run(
        "sharecall-provider",
        &["init", "--data-dir", data, "--name", "provider-a"],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let fp = fingerprint_line(&stdout);
    assert_eq!(fp.len(), 64);
    assert!(fp.chars().all(|c| c.is_ascii_hexdigit()));

    // The same fingerprint is read back, and it is the certificate's.
    let out = run("sharecall-provider", &["fingerprint", "--data-dir", data]);
    assert_eq!(fingerprint_line(&text(&out).0), fp);
    let id =
        sharecall_provider::identity::Identity::load(std::path::Path::new(data)).expect("load");
    assert_eq!(id.fingerprint().to_string(), fp);

    // A second init would silently change the pinned identity: refused.
    let out = run("sharecall-provider", &["init", "--data-dir", data]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("--force"), "{stderr}");
    let out = run("sharecall-provider", &["fingerprint", "--data-dir", data]);
    assert_eq!(fingerprint_line(&text(&out).0), fp);

    // With --force a new identity replaces it.
    let out = run(
        "sharecall-provider",
        &["init", "--data-dir", data, "--force"],
    );
    assert!(out.status.success());
    assert_ne!(fingerprint_line(&text(&out).0), fp);
}

#[test]
fn fingerprint_of_missing_identity_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(
        "sharecall-provider",
        &[
            "fingerprint",
            "--data-dir",
            dir.path().to_str().expect("utf-8 path"),
        ],
    );
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("provider.cert.pem"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
