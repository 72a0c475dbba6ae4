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

// Degraded and tampered answers, which need provider processes with
// fault hooks, are tested in tests/tests/client_contract.rs.
mod real;

use std::path::Path;

use real::{entries, real_cluster};

/// Runs `sharecall` with `HOME` at `home` and no `SHARECALL_*` settings
/// from the environment except those in `env`; returns the exit code,
/// stdout and stderr.
fn run_in(home: &Path, env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sharecall"));
    cmd.args(args)
        .env("HOME", home)
        .env_remove("SHARECALL_PROVIDERS")
        .env_remove("SHARECALL_KEY")
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run sharecall");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

fn home() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Three URLs nobody listens on.
fn closed_ports() -> String {
    let urls: Vec<String> = (0..3)
        .map(|_| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            format!("https://{}", l.local_addr().expect("addr"))
        })
        .collect();
    urls.join(",")
}

#[test]
fn keygen_writes_a_private_key_and_refuses_to_overwrite() {
    let h = home();
    let (code, out, err) = run_in(h.path(), &[], &["keygen"]);
    assert_eq!(code, Some(0), "{err}");
    let path = h.path().join(".config/sharecall/account.key");
    assert!(out.contains(&path.display().to_string()), "{out}");
    assert!(out.contains("account "), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path)
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let first = std::fs::read_to_string(&path).expect("read");

    let (code, _, err) = run_in(h.path(), &[], &["keygen"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), first);

    let (code, out, err) = run_in(h.path(), &[], &["keygen", "--force", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["account"].as_str().map(str::len), Some(64));
    assert_ne!(std::fs::read_to_string(&path).expect("read"), first);

    // --key and SHARECALL_KEY choose another file.
    let other = h.path().join("k/other.key");
    let other_s = other.display().to_string();
    let (code, _, err) = run_in(h.path(), &[("SHARECALL_KEY", &other_s)], &["keygen"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(other.exists());
}

#[test]
fn bad_pseudonym_and_endpoint_are_refused_before_anything_else() {
    let h = home();
    let (code, _, err) = run_in(h.path(), &[], &["resolve", "030 1234567"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("bad pseudonym: phone number has no country code"),
        "{err}"
    );

    let (code, _, err) = run_in(h.path(), &[], &["delete", "alice smith"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("bad pseudonym"), "{err}");

    let (code, _, err) = run_in(h.path(), &[], &["register", "alice", "sip:a@h\r\nVia: x"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("bad endpoint: endpoint contains the control character"),
        "{err}"
    );

    let long = format!("sip:{}@example.org", "a".repeat(400));
    let (code, _, err) = run_in(h.path(), &[], &["update", "alice", &long]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("bad endpoint: endpoint is 416 bytes long"),
        "{err}"
    );

    // With --json the error is also one JSON object on stdout.
    let (code, out, _) = run_in(h.path(), &[], &["resolve", "--json", "030 1234567"]);
    assert_eq!(code, Some(1));
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("bad pseudonym")),
        "{out}"
    );
}

#[test]
fn bad_ttl_and_extra_are_refused() {
    let h = home();
    let (code, _, err) = run_in(
        h.path(),
        &[],
        &["register", "alice", "sip:a@h", "--ttl", "soon"],
    );
    assert_eq!(code, Some(2), "a usage error");
    assert!(err.contains("--ttl"), "{err}");

    let (code, _, err) = run_in(
        h.path(),
        &[],
        &["register", "alice", "sip:a@h", "--ttl", "400d"],
    );
    assert_eq!(code, Some(1));
    assert!(
        err.contains("ttl must be whole seconds from 1 s to 365 days"),
        "{err}"
    );

    let extra = "x".repeat(1025);
    let (code, _, err) = run_in(
        h.path(),
        &[],
        &["register", "alice", "sip:a@h", "--extra", &extra],
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("extra data is 1025 bytes long"), "{err}");
}

#[test]
fn missing_key_and_providers_are_explained() {
    let h = home();
    let (code, _, err) = run_in(
        h.path(),
        &[],
        &[
            "resolve",
            "alice",
            "--providers",
            "http://a,http://b,http://c",
        ],
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("no account key at"), "{err}");
    assert!(err.contains("sharecall keygen"), "{err}");

    assert_eq!(run_in(h.path(), &[], &["keygen"]).0, Some(0));
    let (code, _, err) = run_in(h.path(), &[], &["resolve", "alice"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no provider URLs"), "{err}");
    assert!(err.contains("SHARECALL_PROVIDERS"), "{err}");

    let (code, _, err) = run_in(
        h.path(),
        &[("SHARECALL_PROVIDERS", "http://a,http://b")],
        &["resolve", "alice"],
    );
    assert_eq!(code, Some(1));
    assert!(
        err.contains("expected three provider URLs (P0,P1,P2), got 2"),
        "{err}"
    );

    let (code, _, err) = run_in(
        h.path(),
        &[],
        &["enroll", "--providers", "http://a,ftp://b,http://c"],
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("provider URL 1"), "{err}");

    let (code, _, err) = run_in(
        h.path(),
        &[],
        &[
            "resolve",
            "alice",
            "--providers",
            "http://a,http://b,http://c",
            "--window",
            "10m1s",
        ],
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("the window must be 100 ms to 600 s"), "{err}");
}

#[test]
fn unreachable_providers_are_named() {
    let h = home();
    assert_eq!(run_in(h.path(), &[], &["keygen"]).0, Some(0));
    let urls = closed_ports();
    let (code, out, err) = run_in(
        h.path(),
        &[],
        &[
            "resolve",
            "alice",
            "--providers",
            &urls,
            "--timeout",
            "5s",
            "--json",
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("resolve request c-"), "{err}");
    assert!(err.contains("P0 (https://127.0.0.1:"), "{err}");
    assert!(err.contains("unreachable after 5 attempts"), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert!(
        v["error"]["request_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("c-")),
        "{out}"
    );

    let (code, _, err) = run_in(h.path(), &[], &["enroll", "--providers", &urls]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("enrollment failed: P0 (https://127.0.0.1:"),
        "{err}"
    );
}

#[test]
fn full_cycle_against_real_providers() {
    let data = home();
    let (rt, cluster) = real_cluster(data.path(), &[]);
    let urls = cluster.urls().join(",");
    let h = home();
    let key = h.path().join("alice.key");
    let key_s = key.display().to_string();
    let env = [("SHARECALL_PROVIDERS", urls.as_str())];
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--key", &key_s]);
        run_in(h.path(), &env, &all)
    };

    assert_eq!(run(&["keygen"]).0, Some(0));
    let (code, out, err) = run(&["enroll", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["providers"][2]["status"], "enrolled", "{out}");

    let (code, out, err) = run(&[
        "register",
        "+49 30 1234567",
        "sip:alice@192.0.2.10:5060",
        "--ttl",
        "2h",
        "--extra",
        "desk phone",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("registered +49301234567 -> sip:alice@192.0.2.10:5060 for 2h"),
        "{out}"
    );

    let (code, _, err) = run(&["register", "+49301234567", "sip:other@h"]);
    assert_eq!(code, Some(3), "{err}");

    let (code, out, err) = run(&["resolve", "0049 30 1234567", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["code"], "ok");
    assert_eq!(v["endpoint"], "sip:alice@192.0.2.10:5060");
    assert_eq!(v["extra"], "desk phone");
    assert!(v["expires_at_ms"].as_u64().is_some(), "{out}");
    assert!(v["degraded"].is_null(), "{out}");

    let (code, out, err) = run(&["resolve", "+49301234567"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("+49301234567 -> sip:alice@192.0.2.10:5060\n"),
        "{out}"
    );
    assert!(out.contains("extra \"desk phone\""), "{out}");

    let (code, out, err) = run(&[
        "update",
        "+49301234567",
        "sip:alice@198.51.100.1",
        "--ttl",
        "60s",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("updated +49301234567 -> sip:alice@198.51.100.1 for 1m"),
        "{out}"
    );
    let (code, out, err) = run(&["resolve", "+49301234567"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("sip:alice@198.51.100.1"), "{out}");

    let (code, out, err) = run(&["delete", "+49301234567"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("deleted +49301234567"), "{out}");
    let (code, out, _) = run(&["resolve", "+49301234567"]);
    assert_eq!(code, Some(3));
    assert!(out.contains("+49301234567 is not registered"), "{out}");
    rt.block_on(cluster.stop()).expect("stop providers");
}

#[test]
fn import_csv_against_real_providers_and_resume() {
    let h = home();
    let key = h.path().join("importer.key");
    let key_s = key.display().to_string();
    let stranger = h.path().join("stranger.key");
    let stranger_s = stranger.display().to_string();
    let (code, out, err) = run_in(h.path(), &[], &["keygen", "--json", "--key", &key_s]);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let me_hex = v["account"].as_str().expect("account").to_owned();
    let mut me = [0u8; 32];
    hex::decode_to_slice(&me_hex, &mut me).expect("hex");
    assert_eq!(
        run_in(h.path(), &[], &["keygen", "--key", &stranger_s]).0,
        Some(0)
    );

    // The providers list `me` as an importer (a static setting).
    let data = home();
    let (rt, cluster) = real_cluster(data.path(), std::slice::from_ref(&me_hex));
    let urls = cluster.urls().join(",");
    let env = [("SHARECALL_PROVIDERS", urls.as_str())];
    let run_as = |key: &str, args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--key", key]);
        run_in(h.path(), &env, &all)
    };
    let run = |args: &[&str]| run_as(&key_s, args);
    assert_eq!(run(&["enroll"]).0, Some(0));
    assert_eq!(run_as(&stranger_s, &["enroll"]).0, Some(0));

    let other = hex::encode([0x11u8; 32]);
    let mut csv = String::from("pseudonym,endpoint,ttl,owner\n");
    for i in 0..25 {
        let owner = if i == 3 { other.as_str() } else { "" };
        let ttl = if i % 2 == 0 { "" } else { "120" };
        csv.push_str(&format!(
            "+4930555{i:04},sip:u{i}@192.0.2.1:5060,{ttl},{owner}\n"
        ));
    }
    let file = h.path().join("rows.csv");
    std::fs::write(&file, &csv).expect("write csv");
    let file_s = file.display().to_string();

    // Not an importer: refused, nothing acknowledged.
    let (code, _, err) = run_as(&stranger_s, &["import", &file_s, "--chunk", "10"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("not_importer"), "{err}");
    assert!(!h.path().join("rows.csv.import-state").exists());

    let (code, out, err) = run(&["import", &file_s, "--chunk", "10", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["imported"], 25, "{out}");
    assert_eq!(v["skipped"], 0, "{out}");
    assert_eq!(v["requests"], 3, "{out}");
    for i in 0..3 {
        assert_eq!(entries(&cluster, i), 25);
    }
    let state = h.path().join("rows.csv.import-state");
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state).expect("state")).expect("state json");
    assert_eq!(st["next_row"], 25);

    // The rows resolve, and row 3 belongs to the other account.
    let (code, out, err) = run(&["resolve", "+49305550007"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("+49305550007 -> sip:u7@192.0.2.1:5060"),
        "{out}"
    );
    let (code, _, err) = run(&["delete", "+49305550003"]);
    assert_eq!(code, Some(3), "{err}");
    let (code, _, err) = run(&["delete", "+49305550004"]);
    assert_eq!(code, Some(0), "{err}");
    let stored = entries(&cluster, 0);

    // Same resume file: nothing new is sent (the deleted row stays gone).
    let (code, out, err) = run(&["import", &file_s]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("nothing to send"), "{out}");
    assert_eq!(entries(&cluster, 0), stored);
    assert_eq!(run(&["resolve", "+49305550004"]).0, Some(3));

    // Without it: everything is sent again; the deleted row comes back.
    std::fs::remove_file(&state).expect("rm state");
    let (code, out, err) = run(&["import", &file_s, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        (v["imported"].clone(), v["skipped"].clone()),
        (1.into(), 24.into()),
        "{out}"
    );

    // A changed file does not match the resume file.
    std::fs::write(&file, format!("{csv}+493055509999,sip:x@h,,\n")).expect("write");
    let (code, _, err) = run(&["import", &file_s]);
    assert_eq!(code, Some(1));
    assert!(err.contains("different file"), "{err}");

    // A bad row is named and nothing is sent.
    let bad = h.path().join("bad.csv");
    std::fs::write(
        &bad,
        "+493055501000,sip:a@h,,\n+493055501001,sip:b@h,soon,\n",
    )
    .expect("write");
    let stored = entries(&cluster, 0);
    let (code, _, err) = run(&["import", &bad.display().to_string()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("line 2: bad ttl"), "{err}");
    assert_eq!(entries(&cluster, 0), stored);
    assert_eq!(run(&["resolve", "+493055501000"]).0, Some(3));
    rt.block_on(cluster.stop()).expect("stop providers");
}
