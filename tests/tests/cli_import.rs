//! `sharecall import` end to end against three real providers: an
//! importer account imports ~3000 rows from CSV in chunks, the rows
//! resolve, and a second import of the same file (resume file deleted)
//! skips every row.

use std::path::Path;
use std::process::Command;

use sharecall_tests::bin;
use sharecall_tests::cluster::{Cluster, ClusterOptions};

const ROWS: usize = 3000;

fn sharecall(home: &Path, key: &Path, providers: &str, args: &[&str]) -> (i32, String, String) {
    let key = key.display().to_string();
    let mut all = args.to_vec();
    all.extend(["--key", key.as_str()]);
    sharecall_tests::sharecall(home, providers, &all)
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[test]
fn import_three_thousand_rows_resolve_and_reimport_skips() {
    let home = tempfile::tempdir().expect("tempdir");
    let key = home.path().join("importer.key");
    // The key comes first: the providers must list it as an importer.
    let out = Command::new(bin("sharecall"))
        .args(["keygen", "--json", "--key"])
        .arg(&key)
        .env("HOME", home.path())
        .output()
        .expect("keygen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let account = json(&String::from_utf8_lossy(&out.stdout))["account"]
        .as_str()
        .expect("account")
        .to_owned();

    let cluster = Cluster::start(ClusterOptions {
        importers: vec![account.clone()],
        ..Default::default()
    });
    let providers = (0..3)
        .map(|i| cluster.api_url(i))
        .collect::<Vec<_>>()
        .join(",");
    let run = |args: &[&str]| sharecall(home.path(), &key, &providers, args);

    let (code, _, err) = run(&["enroll"]);
    assert_eq!(code, 0, "{err}");

    let other = "11".repeat(32);
    let mut csv = String::from("pseudonym,endpoint,ttl,owner\n");
    for i in 0..ROWS {
        let ttl = if i % 3 == 0 { "" } else { "7200" };
        let owner = if i % 10 == 7 { other.as_str() } else { "" };
        csv.push_str(&format!(
            "+4940{i:07},sip:user{i}@198.51.100.{}:5060,{ttl},{owner}\n",
            i % 250
        ));
    }
    let file = home.path().join("rows.csv");
    std::fs::write(&file, &csv).expect("write csv");
    let file_s = file.display().to_string();
    let state = home.path().join("rows.csv.import-state");

    let (code, out, err) = run(&[
        "import",
        &file_s,
        "--chunk",
        "1000",
        "--timeout",
        "120s",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}\n{out}");
    let v = json(&out);
    assert_eq!(v["imported"], ROWS, "{out}");
    assert_eq!(v["skipped"], 0, "{out}");
    assert_eq!(v["requests"], 3, "{out}");
    assert!(state.exists());

    // Two of them resolve to what was imported.
    for i in [0usize, 2345] {
        let p = format!("+4940{i:07}");
        let (code, out, err) = run(&["resolve", &p, "--json"]);
        assert_eq!(code, 0, "{err}\n{out}");
        let v = json(&out);
        assert_eq!(v["code"], "ok", "{out}");
        assert_eq!(
            v["endpoint"],
            format!("sip:user{i}@198.51.100.{}:5060", i % 250),
            "{out}"
        );
    }
    // Row 7 belongs to the other account: this one may not delete it.
    let (code, _, err) = run(&["delete", "+49400000007"]);
    assert_eq!(code, 3, "{err}");

    // The same resume file: nothing is sent.
    let (code, out, err) = run(&["import", &file_s]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("nothing to send"), "{out}");

    // Without it: all rows are sent again and all are skipped.
    std::fs::remove_file(&state).expect("rm state");
    let (code, out, err) = run(&["import", &file_s, "--timeout", "120s", "--json"]);
    assert_eq!(code, 0, "{err}\n{out}");
    let v = json(&out);
    assert_eq!(v["imported"], 0, "{out}");
    assert_eq!(v["skipped"], ROWS, "{out}");
}
