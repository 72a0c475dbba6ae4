//! A test client for the table API that speaks the wire protocol directly
//! (shares, parts, signatures), so tests can also send what a correct
//! client never would.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use rand::rngs::OsRng;
use serde_json::{json, Value};
use sharecall_proto::bits::share_bits;
use sharecall_proto::clock::now_ms;
use sharecall_proto::encoding::{Endpoint, Pseudonym, ENDPOINT_ELEMENTS};
pub use sharecall_proto::seal::{AnswerKey, AnswerKeys, Sealed};
use sharecall_proto::sharing::{reconstruct_all, share};
use sharecall_proto::{Fp, Share};

use crate::cluster::Cluster;

/// One provider's answer: Ok(body) on 2xx, Err((status, body)).
pub type Reply = Result<Value, (u16, String)>;

pub use sharecall_proto::layout::encode_share_vector as encode_shares;

/// Decodes shares from their hex wire form: all first components, then
/// all second (docs/API.md). Written from the document rather than taken
/// from `sharecall_proto::layout`, as an oracle for what providers send.
pub fn decode_shares(hex_str: &str) -> Vec<Share> {
    let bytes = hex::decode(hex_str).expect("hex shares");
    let n = bytes.len() / 64;
    let el = |i: usize| {
        let raw: [u8; 32] = bytes[i * 32..(i + 1) * 32].try_into().expect("32 bytes");
        Fp::from_bytes(&raw).expect("canonical")
    };
    (0..n)
        .map(|i| Share {
            first: el(i),
            second: el(n + i),
        })
        .collect()
}

/// The three part objects of a key-only request: the key shared over the
/// field and as XOR shares (docs/API.md).
pub fn key_parts(pseudonym: &str) -> [Value; 3] {
    let key = Pseudonym::parse(pseudonym).expect("pseudonym").key();
    let field = share(key.to_field(), &mut OsRng);
    let bits = share_bits(key.as_u128(), &mut OsRng);
    [0, 1, 2].map(|i| {
        json!({
            "key": hex::encode(encode_shares(&[field[i]])),
            "key_bits": hex::encode(bits[i].to_bytes()),
        })
    })
}

/// The three part objects of a register or update, with the public
/// fields (`ttl_s`) still in them: [`TestClient::bodies`] moves them into
/// the body's `public` object, as a correct client sends them.
pub fn entry_parts(pseudonym: &str, endpoint: &str, ttl_s: u64) -> [Value; 3] {
    let e = Endpoint::parse(endpoint).expect("endpoint");
    let mut parts = key_parts(pseudonym);
    let mut shares: [Vec<Share>; 3] = Default::default();
    for element in e.pack() {
        for (i, s) in share(element, &mut OsRng).into_iter().enumerate() {
            shares[i].push(s);
        }
    }
    for (p, s) in parts.iter_mut().zip(&shares) {
        p["endpoint"] = json!(hex::encode(encode_shares(s)));
        p["ttl_s"] = json!(ttl_s);
    }
    parts
}

/// The three parts of an import of `rows` (pseudonym, endpoint), all
/// owned by `owner`, with each row's public fields (`ttl_s`, `owner`)
/// still in it ([`TestClient::bodies`] moves them into `public.rows`).
pub fn import_parts(rows: &[(String, String)], ttl_s: u64, owner: &[u8; 32]) -> [Value; 3] {
    let mut out: [Vec<Value>; 3] = Default::default();
    for (p, e) in rows {
        let parts = entry_parts(p, e, ttl_s);
        for (i, mut part) in parts.into_iter().enumerate() {
            part["owner"] = json!(hex::encode(owner));
            out[i].push(part);
        }
    }
    out.map(|rows| json!({ "rows": rows }))
}

/// The public fields of a request (docs/API.md, "Public fields"), taken
/// out of `parts` as a correct client sends them: for a register or update
/// `ttl_s` and `extra` of the first part, for an import each row's `ttl_s`,
/// `extra` and `owner` of the first part; removed from every part. Parts of
/// other kinds are left as they are (and `public` is `{}`).
pub fn split_public(kind: &str, parts: &[Value; 3]) -> ([Value; 3], Value) {
    const FIELDS: [&str; 3] = ["ttl_s", "extra", "owner"];
    let mut parts = parts.clone();
    let take = |obj: &mut Value, public: &mut serde_json::Map<String, Value>, first: bool| {
        for f in FIELDS {
            if let Some(v) = obj.as_object_mut().and_then(|o| o.remove(f)) {
                if first {
                    public.insert(f.to_string(), v);
                }
            }
        }
    };
    match kind {
        "register" | "update" => {
            let mut public = serde_json::Map::new();
            for (i, p) in parts.iter_mut().enumerate() {
                take(p, &mut public, i == 0);
            }
            (parts, Value::Object(public))
        }
        "import" => {
            let n = parts[0]["rows"].as_array().map_or(0, Vec::len);
            let mut rows = vec![serde_json::Map::new(); n];
            for (i, p) in parts.iter_mut().enumerate() {
                if let Some(prow) = p["rows"].as_array_mut() {
                    for (r, row) in prow.iter_mut().enumerate() {
                        if let Some(out) = rows.get_mut(r) {
                            take(row, out, i == 0);
                        }
                    }
                }
            }
            let rows: Vec<Value> = rows.into_iter().map(Value::Object).collect();
            (parts, json!({ "rows": rows }))
        }
        _ => (parts, json!({})),
    }
}

/// The canonical bytes of a `public` object (docs/API.md, "Public
/// fields"), written from the document as an oracle: the context string,
/// a shape byte, then u64le ttl, u64le length and bytes of extra (and the
/// 32-byte owner, per import row).
pub fn public_canonical(kind: &str, public: &Value) -> Vec<u8> {
    let mut out = b"sharecall 2026 public fields v1\0".to_vec();
    let entry = |out: &mut Vec<u8>, v: &Value| {
        out.extend_from_slice(&v["ttl_s"].as_u64().unwrap_or(0).to_le_bytes());
        let extra = v["extra"]
            .as_str()
            .and_then(|h| hex::decode(h).ok())
            .unwrap_or_default();
        out.extend_from_slice(&(extra.len() as u64).to_le_bytes());
        out.extend_from_slice(&extra);
    };
    match kind {
        "register" | "update" => {
            out.push(1);
            entry(&mut out, public);
        }
        "import" => {
            out.push(2);
            let rows = public["rows"].as_array().cloned().unwrap_or_default();
            out.extend_from_slice(&(rows.len() as u64).to_le_bytes());
            for r in &rows {
                entry(&mut out, r);
                let owner = r["owner"]
                    .as_str()
                    .and_then(|h| hex::decode(h).ok())
                    .unwrap_or_default();
                out.extend_from_slice(&owner);
            }
        }
        _ => out.push(0),
    }
    out
}

/// What a resolve gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// The endpoint the three answers reconstruct to.
    Found(String),
    /// All three said not found.
    NotFound,
}

/// A client with its own account key.
pub struct TestClient<'a> {
    cluster: &'a Cluster,
    key: SigningKey,
    next: std::sync::atomic::AtomicU64,
    tag: String,
    /// Per request id: the answer keys and each provider's signature
    /// (hex; the same unless the public fields were signed apart), kept to
    /// poll and to open the sealed answers.
    requests: std::sync::Mutex<HashMap<String, (AnswerKeys, [String; 3])>>,
}

impl<'a> TestClient<'a> {
    /// A client whose key is derived from `seed`.
    pub fn new(cluster: &'a Cluster, seed: u8) -> TestClient<'a> {
        TestClient {
            cluster,
            key: SigningKey::from_bytes(&[seed; 32]),
            next: std::sync::atomic::AtomicU64::new(0),
            tag: format!("c{seed}-{}", now_ms()),
            requests: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The public key of the account with `seed`.
    pub fn account_of(seed: u8) -> [u8; 32] {
        SigningKey::from_bytes(&[seed; 32])
            .verifying_key()
            .to_bytes()
    }

    /// The account's public key.
    pub fn account(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Enrolls the account at all three providers.
    pub fn enroll(&self) {
        for i in 0..3 {
            self.cluster
                .post(i, "/v1/accounts", self.enroll_body(i as u8, None))
                .expect("enroll");
        }
    }

    /// A signed enrollment body for provider `provider` with a fresh
    /// nonce.
    pub fn enroll_body(&self, provider: u8, token: Option<&str>) -> serde_json::Value {
        let ts = now_ms();
        let account = self.account();
        let nonce: [u8; 16] = rand::random();
        let sig = self.key.sign(&sharecall_proto::request::enroll_message(
            provider, &account, ts, &nonce, token,
        ));
        let mut body = json!({
            "account": hex::encode(account),
            "provider": provider,
            "timestamp_ms": ts,
            "nonce": hex::encode(nonce),
            "signature": hex::encode(sig.to_bytes()),
        });
        if let Some(t) = token {
            body["token"] = json!(t);
        }
        body
    }

    /// A fresh request id.
    pub fn id(&self) -> String {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        format!("{}-{n}", self.tag)
    }

    /// The signed bodies of a request, one per provider, with the public
    /// fields moved out of `parts` into each body's `public` object
    /// ([`split_public`]).
    pub fn bodies(&self, id: &str, kind: &str, parts: &[Value; 3], window_ms: u64) -> [Value; 3] {
        let (parts, public) = split_public(kind, parts);
        self.bodies_with_public(id, kind, &parts, [&public, &public, &public], window_ms)
    }

    /// The signed bodies of a request whose parts are sent as given and
    /// whose body for provider i carries (and signs) `publics[i]`: what a
    /// misbehaving client sends when it signs different public fields for
    /// different providers (three valid signatures).
    pub fn bodies_with_public(
        &self,
        id: &str,
        kind: &str,
        parts: &[Value; 3],
        publics: [&Value; 3],
        window_ms: u64,
    ) -> [Value; 3] {
        let bytes: [Vec<u8>; 3] = std::array::from_fn(|i| parts[i].to_string().into_bytes());
        let hashes: [[u8; 32]; 3] = std::array::from_fn(|i| *blake3::hash(&bytes[i]).as_bytes());
        let account = self.account();
        let ts = now_ms();
        // Three fresh answer keys, one per provider; their hashes are
        // signed and key i goes in body i only (docs/API.md).
        let answer = AnswerKeys::generate(&mut OsRng);
        let key_hashes = answer.hashes();
        let sigs: [String; 3] = std::array::from_fn(|i| {
            let public_hash = *blake3::hash(&public_canonical(kind, publics[i])).as_bytes();
            let message = sharecall_proto::request::SignedFields {
                request_id: id,
                kind,
                account: &account,
                timestamp_ms: ts,
                window_ms,
                part_hashes: &hashes,
                public_hash: &public_hash,
                answer_key_hashes: &key_hashes,
            }
            .message();
            hex::encode(self.key.sign(&message).to_bytes())
        });
        let answer_keys: [String; 3] =
            std::array::from_fn(|i| hex::encode(answer.key(i as u8).as_bytes()));
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), (answer, sigs.clone()));
        std::array::from_fn(|i| {
            json!({
                "request_id": id,
                "kind": kind,
                "window_ms": window_ms,
                "account": hex::encode(account),
                "timestamp_ms": ts,
                "part_hashes": hashes.iter().map(hex::encode).collect::<Vec<_>>(),
                "signature": sigs[i],
                "answer_key_hashes": key_hashes.iter().map(hex::encode).collect::<Vec<_>>(),
                "answer_key": answer_keys[i],
                "part": hex::encode(&bytes[i]),
                "public": publics[i],
            })
        })
    }

    /// The signature (hex) this client signed request `id` with.
    pub fn signature(&self, id: &str) -> Option<String> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .map(|(_, s)| s[0].clone())
    }

    /// The answer keys of request `id` (to open its answers later).
    pub fn secret(&self, id: &str) -> Option<AnswerKeys> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .map(|(s, _)| s.clone())
    }

    /// Polls request `id` at provider `i` with its signature.
    pub fn poll(&self, i: usize, id: &str) -> Reply {
        let sig = self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .map(|(_, s)| s[i].clone())
            .unwrap_or_default();
        self.cluster
            .get_signed(i, &format!("/v1/requests/{id}"), &sig)
    }

    /// Provider `i`'s reply with its `sealed_result` opened into `result`
    /// (as the client library does); other replies unchanged.
    pub fn open(&self, i: usize, reply: Reply) -> Reply {
        let mut v = reply?;
        let Some(sealed) = v.get("sealed_result").cloned() else {
            return Ok(v);
        };
        let id = v["request_id"].as_str().unwrap_or_default().to_string();
        let clear = self.open_sealed(i, &id, &sealed).map_err(|e| (0, e))?;
        v["result"] = clear;
        Ok(v)
    }

    /// Opens provider `i`'s `sealed_result` of request `id`.
    pub fn open_sealed(&self, i: usize, id: &str, sealed: &Value) -> Result<Value, String> {
        let guard = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let (secret, _) = guard.get(id).ok_or("no such request sent")?;
        open_with(secret, i, id, sealed)
    }

    /// Sends the three bodies concurrently and waits for final answers
    /// (polling a 202 with the request's signature), opening the sealed
    /// results into `result`.
    pub fn send(&self, bodies: [Value; 3]) -> [Reply; 3] {
        let raw = self.send_raw(bodies);
        let mut i = 0;
        raw.map(|r| {
            i += 1;
            self.open(i - 1, r)
        })
    }

    /// Like [`TestClient::send`], the replies as the providers sent them.
    pub fn send_raw(&self, bodies: [Value; 3]) -> [Reply; 3] {
        let cluster = self.cluster;
        std::thread::scope(|s| {
            let handles: Vec<_> = bodies
                .into_iter()
                .enumerate()
                .map(|(i, body)| {
                    s.spawn(move || {
                        let id = body["request_id"].as_str().unwrap_or_default().to_string();
                        let sig = body["signature"].as_str().unwrap_or_default().to_string();
                        let mut r = cluster.post(i, "/v1/requests", body);
                        let deadline = Instant::now() + Duration::from_secs(30);
                        while matches!(&r, Ok(v) if v["status"] == "pending") {
                            assert!(Instant::now() < deadline, "request {id} stays pending");
                            std::thread::sleep(Duration::from_millis(50));
                            r = cluster.get_signed(i, &format!("/v1/requests/{id}"), &sig);
                        }
                        r
                    })
                })
                .collect();
            let out: Vec<Reply> = handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect();
            out.try_into().expect("three replies")
        })
    }

    /// A whole request; returns the three result codes (panics on an
    /// HTTP error).
    pub fn call(&self, kind: &str, parts: [Value; 3]) -> ([String; 3], [Value; 3]) {
        let id = self.id();
        let replies = self.send(self.bodies(&id, kind, &parts, 10_000));
        let values: [Value; 3] =
            replies.map(|r| r.unwrap_or_else(|e| panic!("{kind} {id}: {e:?}")));
        let codes = std::array::from_fn(|i| {
            values[i]["result"]["code"]
                .as_str()
                .unwrap_or("missing")
                .to_string()
        });
        (codes, values)
    }

    /// Registers; returns the (agreed) result code.
    pub fn register(&self, pseudonym: &str, endpoint: &str, ttl_s: u64) -> String {
        agreed(
            self.call("register", entry_parts(pseudonym, endpoint, ttl_s))
                .0,
        )
    }

    /// Updates; returns the result code.
    pub fn update(&self, pseudonym: &str, endpoint: &str, ttl_s: u64) -> String {
        agreed(
            self.call("update", entry_parts(pseudonym, endpoint, ttl_s))
                .0,
        )
    }

    /// Deletes; returns the result code.
    pub fn delete(&self, pseudonym: &str) -> String {
        agreed(self.call("delete", key_parts(pseudonym)).0)
    }

    /// Resolves and reconstructs, checking every share component.
    pub fn resolve(&self, pseudonym: &str) -> Resolved {
        let (codes, values) = self.call("resolve", key_parts(pseudonym));
        match agreed(codes).as_str() {
            "not_found" => Resolved::NotFound,
            "ok" => {
                let shares: [Vec<Share>; 3] = std::array::from_fn(|i| {
                    decode_shares(values[i]["result"]["endpoint"].as_str().expect("endpoint"))
                });
                let elements: Vec<Fp> = (0..ENDPOINT_ELEMENTS)
                    .map(|e| {
                        reconstruct_all(&[shares[0][e], shares[1][e], shares[2][e]])
                            .expect("consistent shares")
                    })
                    .collect();
                Resolved::Found(
                    Endpoint::unpack(&elements)
                        .expect("endpoint decodes")
                        .as_str()
                        .to_string(),
                )
            }
            other => panic!("resolve: {other}"),
        }
    }
}

/// Opens a `sealed_result` of provider `i` for request `id` with provider
/// `i`'s key of `keys`.
pub fn open_with(keys: &AnswerKeys, i: usize, id: &str, sealed: &Value) -> Result<Value, String> {
    open_with_key(keys.key(i as u8), i, id, sealed)
}

/// Opens a `sealed_result` as provider `i`'s answer to request `id` with
/// `key` (any key: tests try other providers' keys too). Written from
/// docs/API.md ("Sealed answers"): ChaCha20-Poly1305, 12-byte nonce,
/// AAD naming the request and the provider.
pub fn open_with_key(key: &AnswerKey, i: usize, id: &str, sealed: &Value) -> Result<Value, String> {
    let nonce: [u8; 12] = sealed["nonce"]
        .as_str()
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or("sealed_result.nonce is not 12 bytes of hex")?;
    let ciphertext = sealed["ciphertext"]
        .as_str()
        .and_then(|h| hex::decode(h).ok())
        .ok_or("sealed_result.ciphertext is not hex")?;
    let clear = key
        .open(id, i as u8, &Sealed { nonce, ciphertext })
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&clear).map_err(|e| e.to_string())
}

/// The one code all three providers gave.
pub fn agreed(codes: [String; 3]) -> String {
    assert!(
        codes.iter().all(|c| *c == codes[0]),
        "providers disagree: {codes:?}"
    );
    codes[0].clone()
}
