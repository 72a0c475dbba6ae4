//! What a hash provider learns from an import's row order, checked on
//! what three real providers stored: rows imported from a file sorted by
//! key (the pseudonyms' encoded keys, the tree's order) land in slots in an order unrelated to the key order, unless the
//! importer asks for `--sorted-for-tree` (the control: then the test sees
//! the sorted order, so it can tell the two apart).

use std::path::Path;

use sharecall_proto::encoding::{Endpoint, Pseudonym};
use sharecall_proto::sharing::reconstruct_all;
use sharecall_provider::tables::index::Index;
use sharecall_tests::cluster::{Cluster, ClusterOptions};
use sharecall_tests::sharecall;

const ROWS: usize = 24;

/// The endpoints of every stored entry, in slot order, reconstructed from
/// the three providers' stores (the providers are stopped first: redb
/// holds a lock on an open database).
fn endpoints_in_slot_order(cluster: &mut Cluster) -> Vec<String> {
    for i in 0..3 {
        cluster.kill(i);
    }
    let dbs: Vec<redb::Database> = (0..3)
        .map(|i| redb::Database::open(cluster.data_dir(i).join("raft.redb")).expect("open store"))
        .collect();
    let slots: Vec<Vec<u64>> = dbs
        .iter()
        .map(|db| {
            Index::load(db)
                .expect("index")
                .meta
                .keys()
                .copied()
                .collect()
        })
        .collect();
    assert!(slots.iter().all(|s| *s == slots[0]), "slots differ");
    let mut out = Vec::new();
    for &slot in &slots[0] {
        let data: Vec<_> = dbs
            .iter()
            .map(|db| Index::data(db, slot).expect("read slot"))
            .collect();
        let (d0, d1, d2) = (
            data[0].as_ref().expect("slot at P0"),
            data[1].as_ref().expect("slot at P1"),
            data[2].as_ref().expect("slot at P2"),
        );
        let elements: Vec<_> = (0..d0.endpoint.len())
            .map(|e| {
                reconstruct_all(&[d0.endpoint[e], d1.endpoint[e], d2.endpoint[e]])
                    .expect("consistent shares")
            })
            .collect();
        out.push(Endpoint::unpack(&elements).expect("endpoint").to_string());
    }
    out
}

/// Imports `ROWS` rows whose keys ascend, numbered from `first`, and
/// returns their endpoints in file (= key) order.
fn import_sorted_file(
    home: &Path,
    key: &Path,
    providers: &str,
    first: usize,
    extra: &[&str],
) -> Vec<String> {
    // Sorted by the pseudonyms' keys, the order the tree uses.
    let mut rows: Vec<(String, String)> = (first..first + ROWS)
        .map(|i| {
            (
                format!("+4930{i:07}"),
                format!("sip:row{i:03}@198.51.100.7"),
            )
        })
        .collect();
    rows.sort_by_key(|(p, _)| Pseudonym::parse(p).expect("pseudonym").key());
    let mut csv = String::from("pseudonym,endpoint,ttl,owner\n");
    for (p, e) in &rows {
        csv.push_str(&format!("{p},{e},,\n"));
    }
    let endpoints: Vec<String> = rows.into_iter().map(|(_, e)| e).collect();
    let file = home.join(format!("rows-{first}.csv"));
    std::fs::write(&file, csv).expect("write csv");
    let file = file.display().to_string();
    let key = key.display().to_string();
    let mut args = vec!["import", file.as_str(), "--json", "--key", key.as_str()];
    args.extend(extra);
    let (code, out, err) = sharecall(home, providers, &args);
    assert_eq!(code, 0, "{err}\n{out}");
    endpoints
}

#[test]
fn hash_import_slots_do_not_follow_key_order() {
    let home = tempfile::tempdir().expect("tempdir");
    let key = home.path().join("importer.key");
    let keyarg = key.display().to_string();
    let (code, out, err) = sharecall(home.path(), "", &["keygen", "--json", "--key", &keyarg]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("keygen json");
    let account = v["account"].as_str().expect("account").to_owned();
    let mut cluster = Cluster::start(ClusterOptions {
        importers: vec![account],
        ..Default::default()
    });
    let providers = (0..3)
        .map(|i| cluster.api_url(i))
        .collect::<Vec<_>>()
        .join(",");
    let (code, _, err) = sharecall(home.path(), &providers, &["enroll", "--key", &keyarg]);
    assert_eq!(code, 0, "{err}");

    // Rows from a sorted file, as an export would give them.
    let shuffled = import_sorted_file(home.path(), &key, &providers, 0, &[]);
    // The control: the same kind of file, sent sorted on request.
    let sorted = import_sorted_file(home.path(), &key, &providers, 100, &["--sorted-for-tree"]);

    let stored = endpoints_in_slot_order(&mut cluster);
    assert_eq!(stored.len(), 2 * ROWS, "{stored:?}");
    let (first, second) = stored.split_at(ROWS);
    // The default run holds every row, but not in key order (24! orders:
    // the sorted one by chance is not a worry).
    assert_ne!(
        first,
        shuffled.as_slice(),
        "hash provider slots follow the key order"
    );
    let (mut got, mut all) = (first.to_vec(), shuffled.clone());
    got.sort();
    all.sort();
    assert_eq!(got, all, "the shuffled run holds every row");
    // The control shows the test sees the order when it is there.
    assert_eq!(
        second,
        sorted.as_slice(),
        "--sorted-for-tree keeps key order"
    );
}
