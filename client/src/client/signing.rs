//! A request made ready to send: shared into parts, hashed, signed over
//! its [`SignedFields`], and written as the three byte-identical bodies a
//! retry resends ([`SignedRequest`]).

use super::*;

/// A request, shared, hashed and signed: ready to send, and to resend
/// byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    request_id: String,
    kind: Kind,
    account: [u8; 32],
    timestamp_ms: u64,
    window_ms: u64,
    parts: [Vec<u8>; 3],
    part_hashes: [[u8; 32]; 3],
    /// The public fields, signed once and sent in every body.
    public: Public,
    signature: [u8; 64],
    /// The fresh answer keys, one per provider: their hashes are signed,
    /// key `i` travels in body `i` only and opens provider `i`'s answer.
    answer: AnswerKeys,
    bodies: [Vec<u8>; 3],
}

#[derive(Serialize)]
pub(super) struct RequestBody<'a> {
    request_id: &'a str,
    kind: &'a str,
    account: String,
    timestamp_ms: u64,
    window_ms: u64,
    part_hashes: [String; 3],
    signature: String,
    answer_key_hashes: [String; 3],
    answer_key: String,
    part: String,
    public: &'a serde_json::Value,
}

/// Checks a request id: 1..=128 of `[A-Za-z0-9._:-]`, and not `.` or `..`
/// (which would be path segments in `GET /v1/requests/{id}`).
pub fn check_request_id(id: &str) -> Result<(), Error> {
    let charset_ok = id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
    if id.is_empty() || id.len() > REQUEST_ID_MAX_LEN || !charset_ok {
        return Err(Error::Config(
            "a request id is 1 to 128 characters from A-Z a-z 0-9 . _ : -".into(),
        ));
    }
    if id == "." || id == ".." {
        return Err(Error::Config(
            "a request id cannot be \".\" or \"..\"".into(),
        ));
    }
    Ok(())
}

/// A fresh random request id (`c-` and 32 hex digits).
pub fn new_request_id() -> String {
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    format!("c-{}", hex::encode(b))
}

pub use sharecall_proto::clock::now_ms;

pub(super) fn check_window(window_ms: u64) -> Result<(), Error> {
    if !WINDOW_MS_RANGE.contains(&window_ms) {
        return Err(Error::Config(format!(
            "the window must be 100 ms to 600 s, got {window_ms} ms"
        )));
    }
    Ok(())
}

impl SignedRequest {
    /// Hashes the three parts, signs [`SignedFields`] with `key` and builds
    /// the three `POST /v1/requests` bodies. The parts are checked against
    /// `kind` first.
    pub fn new(
        key: &AccountKey,
        request_id: &str,
        kind: Kind,
        parts: &[Part; 3],
        timestamp_ms: u64,
        window_ms: u64,
    ) -> Result<SignedRequest, Error> {
        for part in parts {
            part.validate(kind)?;
        }
        let public = Public::of_parts(kind, parts)?;
        SignedRequest::from_part_bytes(
            key,
            request_id,
            kind,
            public,
            parts.each_ref().map(Part::to_bytes),
            timestamp_ms,
            window_ms,
        )
    }

    /// Like [`SignedRequest::new`], from the public fields and the exact
    /// part bytes (an `import`'s from [`import_parts`]); the bytes are not
    /// checked, the public fields must fit `kind`.
    pub fn from_part_bytes(
        key: &AccountKey,
        request_id: &str,
        kind: Kind,
        public: Public,
        parts: [Vec<u8>; 3],
        timestamp_ms: u64,
        window_ms: u64,
    ) -> Result<SignedRequest, Error> {
        check_request_id(request_id)?;
        check_window(window_ms)?;
        if !public.fits(kind) {
            return Err(Error::Config(format!(
                "the public fields given do not fit a {kind} request"
            )));
        }
        let account = key.public_key();
        let public_hash = public.hash();
        let public_json = public.to_json();
        let part_hashes = parts.each_ref().map(|p| *blake3::hash(p).as_bytes());
        // Three fresh keys per request, one per provider: each provider
        // seals under its own, so only this client can open all three.
        let answer = AnswerKeys::generate(&mut OsRng);
        let key_hashes = answer.hashes();
        let message = SignedFields {
            request_id,
            kind: kind.as_str(),
            account: &account,
            timestamp_ms,
            window_ms,
            part_hashes: &part_hashes,
            public_hash: &public_hash,
            answer_key_hashes: &key_hashes,
        }
        .message();
        let signature = key.sign(&message);
        let hashes_hex = part_hashes.map(hex::encode);
        let key_hashes_hex = key_hashes.map(hex::encode);
        let bodies = PartyId::ALL.map(|p| {
            let part = &parts[p.index()];
            let body = RequestBody {
                request_id,
                kind: kind.as_str(),
                account: hex::encode(account),
                timestamp_ms,
                window_ms,
                part_hashes: hashes_hex.clone(),
                signature: hex::encode(signature),
                answer_key_hashes: key_hashes_hex.clone(),
                answer_key: hex::encode(answer.key(p.index() as u8).as_bytes()),
                part: hex::encode(part),
                public: &public_json,
            };
            // A struct of strings and integers always serialises.
            serde_json::to_vec(&body).unwrap_or_default()
        });
        Ok(SignedRequest {
            request_id: request_id.to_owned(),
            kind,
            account,
            timestamp_ms,
            window_ms,
            parts,
            part_hashes,
            public,
            signature,
            answer,
            bodies,
        })
    }

    /// The request id.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The request kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The signing account's public key.
    pub fn account(&self) -> &[u8; 32] {
        &self.account
    }

    /// The signed timestamp.
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }

    /// The signed window.
    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// The part bytes for provider `p` (what `part_hashes[p]` hashes).
    pub fn part(&self, p: PartyId) -> &[u8] {
        &self.parts[p.index()]
    }

    /// The public fields (the body's `public` object, signed once).
    pub fn public(&self) -> &Public {
        &self.public
    }

    /// blake3 of each part, in provider order.
    pub fn part_hashes(&self) -> &[[u8; 32]; 3] {
        &self.part_hashes
    }

    /// The ed25519 signature over [`SignedRequest::signed_message`].
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }

    /// The exact bytes signed: `SignedFields { .. }.message()`.
    pub fn signed_message(&self) -> Vec<u8> {
        SignedFields {
            request_id: &self.request_id,
            kind: self.kind.as_str(),
            account: &self.account,
            timestamp_ms: self.timestamp_ms,
            window_ms: self.window_ms,
            part_hashes: &self.part_hashes,
            public_hash: &self.public.hash(),
            answer_key_hashes: &self.answer.hashes(),
        }
        .message()
    }

    /// The answer keys: their hashes are signed, key `i` (sent to
    /// provider `i` only) opens provider `i`'s sealed answer.
    pub fn answer_keys(&self) -> &AnswerKeys {
        &self.answer
    }

    /// The JSON body posted to provider `p`.
    pub fn body(&self, p: PartyId) -> &[u8] {
        &self.bodies[p.index()]
    }
}
