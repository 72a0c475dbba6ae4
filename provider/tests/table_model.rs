//! The table protocols against their plaintext meaning: random sequences
//! of register/resolve/update/delete (with expiry and ownership), split
//! into random batches, executed by three engines over loopback TLS on
//! every table variant, must give exactly the answers of a plain map.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use proptest::prelude::*;
use rand::rngs::OsRng;
use sharecall_proto::bits::share_bits;
use sharecall_proto::encoding::{Endpoint, Pseudonym};
use sharecall_proto::sharing::{reconstruct_all, share};
use sharecall_proto::{BitShare, Share};
use sharecall_provider::execution::batch::{self, Answer, Code, Op, Request};
use sharecall_provider::execution::store;
use sharecall_provider::smc::local::LocalCluster;
use sharecall_provider::smc::{EngineConfig, PoolSizing, SmcError};
use sharecall_provider::tables::hash::Hash;
use sharecall_provider::tables::list::List;
use sharecall_provider::tables::part::{Kind, Part};
use sharecall_provider::tables::tree::Tree;
use sharecall_provider::tables::{Index, Variant};
use tokio::sync::Mutex;

struct Shared {
    rt: tokio::runtime::Runtime,
    cluster: LocalCluster,
    next_id: AtomicU64,
    lane: Mutex<()>,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let config = EngineConfig {
            lanes: 1,
            op_timeout: Duration::from_secs(30),
            squares: PoolSizing {
                target: 4096,
                chunk: 1024,
            },
            bit_blocks: PoolSizing {
                target: 256,
                chunk: 64,
            },
            ..EngineConfig::default()
        };
        let cluster = rt
            .block_on(LocalCluster::start(&config))
            .expect("cluster links");
        Shared {
            rt,
            cluster,
            next_id: AtomicU64::new(1),
            lane: Mutex::new(()),
        }
    })
}

struct Party {
    _dir: tempfile::TempDir,
    db: redb::Database,
    index: Index,
}

fn party() -> Party {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = redb::Database::create(dir.path().join("t.redb")).expect("db");
    Party {
        _dir: dir,
        db,
        index: Index::default(),
    }
}

#[derive(Debug, Clone)]
enum Action {
    Register(usize, usize, u8, u64),
    Resolve(usize),
    Update(usize, usize, u8, u64),
    Delete(usize, u8),
    Sweep,
    /// Bulk import by owner 1, ttl 3 s: (name, endpoint) rows, sent in key
    /// order when the flag is set (as the client library does).
    Import(Vec<(usize, usize)>, bool),
}

const NAMES: [&str; 4] = ["+49 30 1111", "+49 30 2222", "alice", "bob.smith"];
const ENDPOINTS: [&str; 3] = [
    "sip:a@192.0.2.1:5060",
    "sip:b@[2001:db8::1]:5061",
    "sip:c@example.org;transport=tcp",
];

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        (0..4usize, 0..3usize, 1..3u8, 1..4u64)
            .prop_map(|(n, e, o, t)| Action::Register(n, e, o, t)),
        (0..4usize).prop_map(Action::Resolve),
        (0..4usize, 0..3usize, 1..3u8, 1..4u64).prop_map(|(n, e, o, t)| Action::Update(n, e, o, t)),
        (0..4usize, 1..3u8).prop_map(|(n, o)| Action::Delete(n, o)),
        Just(Action::Sweep),
        (
            prop::collection::vec((0..4usize, 0..3usize), 1..6),
            any::<bool>()
        )
            .prop_map(|(rows, sorted)| Action::Import(rows, sorted)),
    ]
}

/// What the plain map answers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    Code(Code),
    Found(String),
    /// Import: (imported, skipped).
    Imported(u64, u64),
}

/// An import's rows in the order they are sent.
fn import_rows(rows: &[(usize, usize)], sorted: bool) -> Vec<(usize, usize)> {
    let mut rows = rows.to_vec();
    if sorted {
        rows.sort_by_key(|(n, _)| Pseudonym::parse(NAMES[*n]).expect("name").key());
    }
    rows
}

#[derive(Default)]
struct Model {
    /// name → (endpoint, owner, expires_at_ms)
    map: HashMap<usize, (usize, u8, u64)>,
}

impl Model {
    fn apply(&mut self, a: &Action, at: u64) -> Option<Expect> {
        let live = |m: &HashMap<usize, (usize, u8, u64)>, n: usize| {
            m.get(&n).filter(|(_, _, exp)| *exp > at).copied()
        };
        Some(match *a {
            Action::Register(n, e, o, ttl) => match live(&self.map, n) {
                Some(_) => Expect::Code(Code::Exists),
                None => {
                    self.map.insert(n, (e, o, at + ttl * 1000));
                    Expect::Code(Code::Ok)
                }
            },
            Action::Resolve(n) => match live(&self.map, n) {
                Some((e, _, _)) => Expect::Found(ENDPOINTS[e].to_string()),
                None => Expect::Code(Code::NotFound),
            },
            Action::Update(n, e, o, ttl) => match live(&self.map, n) {
                Some((_, owner, _)) if owner != o => Expect::Code(Code::Forbidden),
                Some(_) => {
                    self.map.insert(n, (e, o, at + ttl * 1000));
                    Expect::Code(Code::Ok)
                }
                None => Expect::Code(Code::NotFound),
            },
            Action::Delete(n, o) => match live(&self.map, n) {
                Some((_, owner, _)) if owner != o => Expect::Code(Code::Forbidden),
                Some(_) => {
                    self.map.remove(&n);
                    Expect::Code(Code::Ok)
                }
                None => Expect::Code(Code::NotFound),
            },
            Action::Sweep => return None,
            Action::Import(ref rows, sorted) => {
                let (mut imported, mut skipped) = (0, 0);
                for (n, e) in import_rows(rows, sorted) {
                    if live(&self.map, n).is_some() {
                        skipped += 1;
                    } else {
                        self.map.insert(n, (e, 1, at + 3000));
                        imported += 1;
                    }
                }
                Expect::Imported(imported, skipped)
            }
        })
    }
}

/// The three parties' requests for one action.
fn requests(a: &Action, seq: u64, at_ms: u64) -> [Request; 3] {
    let id = format!("r{seq}");
    let key_parts = |n: usize| -> [(Share, BitShare); 3] {
        let key = Pseudonym::parse(NAMES[n]).expect("name").key();
        let field = share(key.to_field(), &mut OsRng);
        let bits = share_bits(key.as_u128(), &mut OsRng);
        [0, 1, 2].map(|i| (field[i], bits[i]))
    };
    let entry_parts = |n: usize, e: usize, ttl: u64| -> [Part; 3] {
        let keys = key_parts(n);
        let mut eps: [Vec<Share>; 3] = Default::default();
        for el in Endpoint::parse(ENDPOINTS[e]).expect("endpoint").pack() {
            for (i, s) in share(el, &mut OsRng).into_iter().enumerate() {
                eps[i].push(s);
            }
        }
        std::array::from_fn(|i| Part {
            key: keys[i].0,
            key_bits: Some(keys[i].1),
            endpoint: eps[i].clone(),
            ttl_s: ttl,
            extra: b"x".to_vec(),
        })
    };
    let key_only = |n: usize| -> [Part; 3] {
        key_parts(n).map(|k| Part {
            key: k.0,
            key_bits: Some(k.1),
            endpoint: Vec::new(),
            ttl_s: 0,
            extra: Vec::new(),
        })
    };
    let (ops, owner): ([Op; 3], u8) = match a {
        Action::Import(rows, sorted) => {
            let mut per: [Vec<(Part, [u8; 32])>; 3] = Default::default();
            for (n, e) in import_rows(rows, *sorted) {
                for (i, p) in entry_parts(n, e, 3).into_iter().enumerate() {
                    per[i].push((p, [1; 32]));
                }
            }
            (per.map(Op::Import), 1)
        }
        _ => match *a {
            Action::Register(n, e, o, t) => (
                entry_parts(n, e, t).map(|p| Op::Table(Kind::Register, p)),
                o,
            ),
            Action::Update(n, e, o, t) => {
                (entry_parts(n, e, t).map(|p| Op::Table(Kind::Update, p)), o)
            }
            Action::Resolve(n) => (key_only(n).map(|p| Op::Table(Kind::Resolve, p)), 9),
            Action::Delete(n, o) => (key_only(n).map(|p| Op::Table(Kind::Delete, p)), o),
            Action::Sweep => ([Op::Sweep, Op::Sweep, Op::Sweep], 0),
            Action::Import(..) => unreachable!("handled above"),
        },
    };
    ops.map(|op| Request {
        seq,
        id: id.clone(),
        op,
        at_ms,
        account: [owner; 32],
    })
}

/// Runs one batch at all three parties and commits it; the answers by id.
fn run_batch(
    parties: &[Arc<Mutex<Party>>; 3],
    variant: &Variant,
    batch: [Vec<Request>; 3],
) -> [Vec<(String, Answer)>; 3] {
    let s = shared();
    s.rt.block_on(async {
        let _lane = s.lane.lock().await;
        let id = s.next_id.fetch_add(1, Ordering::SeqCst);
        let mut handles = Vec::new();
        for (p, requests) in batch.into_iter().enumerate() {
            let engine = &s.cluster.engines[p];
            let mut session = engine.session(0, id).await.expect("session");
            let party = parties[p].clone();
            let variant = variant.clone();
            handles.push(tokio::spawn(async move {
                let mut party = party.lock().await;
                let out = batch::run(&variant, &party.index, &party.db, &mut session, &requests)
                    .await
                    .map_err(|e| SmcError::InvalidInput(e.to_string()))?;
                let txn = party.db.begin_write().expect("txn");
                party.index.write(&txn, &out.changes).expect("write");
                store::record_batch(&txn, &out.answers, &out.transcript).expect("record");
                txn.commit().expect("commit");
                party.index.commit(out.changes);
                Ok::<_, SmcError>(out.answers)
            }));
        }
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.expect("task").expect("batch runs"));
        }
        out.try_into().map_err(|_| ()).expect("three")
    })
}

fn check(
    variant: Variant,
    actions: Vec<(Action, u64)>,
    cuts: Vec<usize>,
) -> Result<(), TestCaseError> {
    let parties: [Arc<Mutex<Party>>; 3] = std::array::from_fn(|_| Arc::new(Mutex::new(party())));
    let mut model = Model::default();
    let mut at = 1_000_000u64;
    let mut seq = 0u64;
    let mut expected: HashMap<String, Expect> = HashMap::new();
    let mut all: Vec<[Request; 3]> = Vec::new();
    for (a, dt) in &actions {
        at += dt;
        seq += 1;
        if let Some(e) = model.apply(a, at) {
            expected.insert(format!("r{seq}"), e);
        }
        all.push(requests(a, seq, at));
    }
    // Split into batches at the given cut sizes.
    let mut rest = all.into_iter();
    let mut cut = cuts.into_iter().cycle();
    loop {
        let size = cut.next().unwrap_or(1).max(1);
        let chunk: Vec<[Request; 3]> = rest.by_ref().take(size).collect();
        if chunk.is_empty() {
            break;
        }
        let mut batch: [Vec<Request>; 3] = Default::default();
        for r in chunk {
            for (p, req) in r.into_iter().enumerate() {
                batch[p].push(req);
            }
        }
        let answers = run_batch(&parties, &variant, batch);
        for (k, (id, a0)) in answers[0].iter().enumerate() {
            let (id1, a1) = &answers[1][k];
            let (id2, a2) = &answers[2][k];
            prop_assert_eq!(id, id1);
            prop_assert_eq!(id, id2);
            prop_assert!(
                a0.code == a1.code && a1.code == a2.code,
                "{} codes differ",
                id
            );
            prop_assert_eq!(a0.imported, a1.imported);
            prop_assert_eq!(a1.imported, a2.imported);
            let got = match (&a0.endpoint, &a1.endpoint, &a2.endpoint) {
                _ if a0.imported.is_some() => {
                    let (i, k) = a0.imported.unwrap_or_default();
                    Expect::Imported(i, k)
                }
                (Some(e0), Some(e1), Some(e2)) => {
                    let elements: Vec<_> = (0..e0.len())
                        .map(|i| reconstruct_all(&[e0[i], e1[i], e2[i]]).expect("consistent"))
                        .collect();
                    Expect::Found(
                        Endpoint::unpack(&elements)
                            .expect("endpoint")
                            .as_str()
                            .to_string(),
                    )
                }
                _ => Expect::Code(a0.code),
            };
            prop_assert_eq!(Some(&got), expected.get(id), "request {}", id);
        }
    }
    Ok(())
}

fn cases() -> impl Strategy<Value = (Vec<(Action, u64)>, Vec<usize>)> {
    (
        prop::collection::vec((action(), 0..2500u64), 1..24),
        prop::collection::vec(1..7usize, 1..5),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn hash_table_equals_a_plain_map((actions, cuts) in cases()) {
        check(Variant::new(Hash), actions, cuts)?;
    }

    #[test]
    fn list_table_equals_a_plain_map((actions, cuts) in cases()) {
        check(Variant::new(List), actions, cuts)?;
    }

    #[test]
    fn tree_table_equals_a_plain_map((actions, cuts) in cases()) {
        check(Variant::new(Tree::with_fanout(2).expect("fanout")), actions, cuts)?;
    }
}
