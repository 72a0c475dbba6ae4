//! Answers sealed to the requesting client (docs/API.md, "Sealed
//! answers"; docs/SECURITY.md §7b).
//!
//! Every provider receives every request id, so an answer served in the
//! clear could be fetched by the other providers and reconstructed. The
//! client therefore makes, per request, three fresh random symmetric
//! *answer keys*, one per provider ([`AnswerKeys`]). Provider `i`'s key
//! travels only in provider `i`'s body (inside TLS); the signed fields
//! carry the blake3 hash of each key
//! ([`crate::request::SignedFields::answer_key_hashes`]), so the signature
//! fixes every provider's key without showing it to the others. Each
//! provider seals its `result` object with ChaCha20-Poly1305 under its key
//! and a random 96-bit nonce; the AAD names a domain, the request id and
//! the provider, so a sealed answer does not open as another request's or
//! another provider's answer.
//!
//! This replaced HPKE (X25519): the public-key operations cost about six
//! scalar multiplications per resolution, while the guarantee (no other
//! provider and no holder of the request id can open an answer) only
//! needs the key to reach its provider confidentially, which TLS does.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::{CryptoRng, RngCore};

/// Length of an answer key (a ChaCha20-Poly1305 key).
pub const ANSWER_KEY_LEN: usize = 32;

/// Length of the random nonce at the head of a sealed answer.
pub const NONCE_LEN: usize = 12;

/// Domain separation of the AAD (v2: symmetric keys; an HPKE v1 answer
/// never opens).
const AAD_CONTEXT: &[u8] = b"sharecall 2026 sealed answer v2\0";

/// Why sealing or opening failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The plaintext is too long for one AEAD message (never for an
    /// answer, which is a few KiB).
    #[error("the answer is too long to seal")]
    TooLong,
    /// The ciphertext does not open with this key for this request and
    /// provider (altered, or sealed for another request, provider or key).
    #[error("the sealed answer does not open for this request and provider")]
    Open,
}

/// A sealed answer: the random nonce and the AEAD ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The random 96-bit nonce it was sealed with.
    pub nonce: [u8; NONCE_LEN],
    /// The AEAD ciphertext (plaintext plus a 16-byte tag).
    pub ciphertext: Vec<u8>,
}

/// The AAD of provider `provider`'s answer to `request_id`.
fn aad(request_id: &str, provider: u8) -> Vec<u8> {
    let mut m = Vec::with_capacity(AAD_CONTEXT.len() + request_id.len() + 9);
    m.extend_from_slice(AAD_CONTEXT);
    m.extend_from_slice(&(request_id.len() as u64).to_le_bytes());
    m.extend_from_slice(request_id.as_bytes());
    m.push(provider);
    m
}

/// blake3 of an answer key: what the request signs for each provider.
pub fn key_hash(key: &[u8; ANSWER_KEY_LEN]) -> [u8; 32] {
    *blake3::hash(key).as_bytes()
}

/// One provider's answer key for one request (symmetric, secret).
#[derive(Clone, PartialEq, Eq)]
pub struct AnswerKey([u8; ANSWER_KEY_LEN]);

impl std::fmt::Debug for AnswerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key; its hash is public (signed).
        f.debug_struct("AnswerKey")
            .field("hash", &hex::encode(self.hash()))
            .finish_non_exhaustive()
    }
}

impl AnswerKey {
    /// A fresh random key.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> AnswerKey {
        let mut k = [0u8; ANSWER_KEY_LEN];
        rng.fill_bytes(&mut k);
        AnswerKey(k)
    }

    /// The key with these bytes (as received in a request body).
    pub fn from_bytes(bytes: [u8; ANSWER_KEY_LEN]) -> AnswerKey {
        AnswerKey(bytes)
    }

    /// The key's bytes (what provider `i`'s body carries).
    pub fn as_bytes(&self) -> &[u8; ANSWER_KEY_LEN] {
        &self.0
    }

    /// blake3 of the key ([`key_hash`]): what the request signs.
    pub fn hash(&self) -> [u8; 32] {
        key_hash(&self.0)
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(&self.0))
    }

    /// Seals `plaintext`, provider `provider`'s answer to `request_id`.
    pub fn seal<R: RngCore + CryptoRng>(
        &self,
        request_id: &str,
        provider: u8,
        plaintext: &[u8],
        rng: &mut R,
    ) -> Result<Sealed, SealError> {
        // A random nonce: a key seals only a few answers (one per poll of
        // one request), far below the 2^32 of a random 96-bit nonce.
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let aad = aad(request_id, provider);
        let ciphertext = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::TooLong)?;
        Ok(Sealed { nonce, ciphertext })
    }

    /// Opens provider `provider`'s sealed answer to `request_id`.
    pub fn open(
        &self,
        request_id: &str,
        provider: u8,
        sealed: &Sealed,
    ) -> Result<Vec<u8>, SealError> {
        let aad = aad(request_id, provider);
        self.cipher()
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Open)
    }
}

/// The client's three answer keys of one request, in provider order.
#[derive(Clone, PartialEq, Eq)]
pub struct AnswerKeys([AnswerKey; 3]);

impl std::fmt::Debug for AnswerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AnswerKeys").field(&self.0).finish()
    }
}

impl AnswerKeys {
    /// Three fresh random keys (one set per request).
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> AnswerKeys {
        AnswerKeys(std::array::from_fn(|_| AnswerKey::generate(rng)))
    }

    /// Provider `provider`'s key (`provider` is taken modulo 3).
    pub fn key(&self, provider: u8) -> &AnswerKey {
        &self.0[usize::from(provider) % 3]
    }

    /// The blake3 hash of each key, in provider order (signed).
    pub fn hashes(&self) -> [[u8; 32]; 3] {
        std::array::from_fn(|i| self.0[i].hash())
    }

    /// Opens provider `provider`'s sealed answer to `request_id` with
    /// that provider's key.
    pub fn open(
        &self,
        request_id: &str,
        provider: u8,
        sealed: &Sealed,
    ) -> Result<Vec<u8>, SealError> {
        if provider > 2 {
            return Err(SealError::Open);
        }
        self.key(provider).open(request_id, provider, sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;

    #[test]
    fn sealed_answers_open_only_for_their_request_provider_and_key() {
        let keys = AnswerKeys::generate(&mut OsRng);
        let msg = br#"{"code":"ok"}"#;
        let sealed = keys.key(0).seal("req-a", 0, msg, &mut OsRng).expect("seal");
        assert_eq!(keys.open("req-a", 0, &sealed).expect("opens"), msg);
        // Moved to another provider or request, it does not open.
        assert_eq!(keys.open("req-a", 1, &sealed), Err(SealError::Open));
        assert_eq!(keys.open("req-b", 0, &sealed), Err(SealError::Open));
        assert_eq!(keys.open("req-a", 3, &sealed), Err(SealError::Open));
        // Another provider's key does not open it, not even under the
        // right provider index.
        assert_eq!(keys.key(1).open("req-a", 0, &sealed), Err(SealError::Open));
        // Sealed by provider 1 or for request B, it does not open as
        // provider 0's answer to request A.
        let p1 = keys.key(0).seal("req-a", 1, msg, &mut OsRng).expect("seal");
        assert_eq!(keys.open("req-a", 0, &p1), Err(SealError::Open));
        let b = keys.key(0).seal("req-b", 0, msg, &mut OsRng).expect("seal");
        assert_eq!(keys.open("req-a", 0, &b), Err(SealError::Open));
        // Another request's keys do not open it; an altered byte neither.
        let other = AnswerKeys::generate(&mut OsRng);
        assert_eq!(other.open("req-a", 0, &sealed), Err(SealError::Open));
        let mut bad = sealed.clone();
        bad.ciphertext[0] ^= 1;
        assert_eq!(keys.open("req-a", 0, &bad), Err(SealError::Open));
        let mut bad_nonce = sealed.clone();
        bad_nonce.nonce[0] ^= 1;
        assert_eq!(keys.open("req-a", 0, &bad_nonce), Err(SealError::Open));
        // The ciphertext does not contain the plaintext; nonces are fresh.
        assert!(!sealed.ciphertext.windows(msg.len()).any(|w| w == msg));
        let again = keys.key(0).seal("req-a", 0, msg, &mut OsRng).expect("seal");
        assert_ne!(again.nonce, sealed.nonce);
        // Debug output shows the hashes, never a key.
        let dbg = format!("{keys:?}");
        for i in 0..3 {
            assert!(dbg.contains(&hex::encode(keys.key(i).hash())), "{dbg}");
            assert!(!dbg.contains(&hex::encode(keys.key(i).as_bytes())), "{dbg}");
        }
    }

    #[test]
    fn the_three_keys_differ_and_hash_as_signed() {
        let keys = AnswerKeys::generate(&mut OsRng);
        let h = keys.hashes();
        assert!(h[0] != h[1] && h[1] != h[2] && h[0] != h[2]);
        for i in 0..3u8 {
            assert_eq!(
                h[usize::from(i)],
                *blake3::hash(keys.key(i).as_bytes()).as_bytes()
            );
            let k = AnswerKey::from_bytes(*keys.key(i).as_bytes());
            assert_eq!(&k, keys.key(i));
        }
    }

    #[test]
    fn ids_do_not_run_into_the_provider_byte() {
        assert_ne!(aad("a\u{1}", 0), aad("a", 1));
    }
}
