//! Answers sealed to the requesting client (docs/API.md, "Sealed
//! answers"; docs/SECURITY.md §7b).
//!
//! Every provider receives every request id, so an answer served in the
//! clear could be fetched by the other providers and reconstructed. The
//! client therefore signs a fresh X25519 public key into each request
//! ([`crate::request::SignedFields::answer_key`]), and each provider seals
//! its `result` object to it with HPKE (RFC 9180, base mode,
//! DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305). The HPKE
//! `info` names a domain, the request id and the provider, so a ciphertext
//! does not open as another request's or another provider's answer.

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use rand::{CryptoRng, RngCore};

type Kem = X25519HkdfSha256;

/// Length of an answer key (an X25519 public key) and of the HPKE
/// encapsulated key.
pub const ANSWER_KEY_LEN: usize = 32;

/// Domain separation of the HPKE `info`.
const INFO_CONTEXT: &[u8] = b"sharecall 2026 sealed answer v1\0";

/// Why sealing or opening failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The answer key is not a usable X25519 public key.
    #[error("the answer key is not a usable X25519 public key")]
    BadKey,
    /// The ciphertext does not open with this key for this request and
    /// provider (altered, or sealed for another request or provider).
    #[error("the sealed answer does not open for this request and provider")]
    Open,
}

/// A sealed answer: the HPKE encapsulated key and the ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The sender's encapsulated (ephemeral) key.
    pub enc: [u8; ANSWER_KEY_LEN],
    /// The AEAD ciphertext (plaintext plus a 16-byte tag).
    pub ciphertext: Vec<u8>,
}

/// The HPKE `info` of provider `provider`'s answer to `request_id`.
fn info(request_id: &str, provider: u8) -> Vec<u8> {
    let mut m = Vec::with_capacity(INFO_CONTEXT.len() + request_id.len() + 9);
    m.extend_from_slice(INFO_CONTEXT);
    m.extend_from_slice(&(request_id.len() as u64).to_le_bytes());
    m.extend_from_slice(request_id.as_bytes());
    m.push(provider);
    m
}

/// Seals `plaintext` (provider `provider`'s answer to `request_id`) to the
/// client's `answer_key`.
pub fn seal<R: RngCore + CryptoRng>(
    answer_key: &[u8; ANSWER_KEY_LEN],
    request_id: &str,
    provider: u8,
    plaintext: &[u8],
    rng: &mut R,
) -> Result<Sealed, SealError> {
    let pk =
        <Kem as hpke::Kem>::PublicKey::from_bytes(answer_key).map_err(|_| SealError::BadKey)?;
    let (enc, ciphertext) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, Kem, R>(
        &OpModeS::Base,
        &pk,
        &info(request_id, provider),
        plaintext,
        &[],
        rng,
    )
    .map_err(|_| SealError::BadKey)?;
    let mut e = [0u8; ANSWER_KEY_LEN];
    e.copy_from_slice(&enc.to_bytes());
    Ok(Sealed { enc: e, ciphertext })
}

/// The client's secret half of one request's answer key.
#[derive(Clone)]
pub struct AnswerSecret {
    sk: <Kem as hpke::Kem>::PrivateKey,
    public: [u8; ANSWER_KEY_LEN],
}

impl std::fmt::Debug for AnswerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("AnswerSecret")
            .field("public", &hex::encode(self.public))
            .finish_non_exhaustive()
    }
}

impl PartialEq for AnswerSecret {
    fn eq(&self, other: &AnswerSecret) -> bool {
        self.public == other.public
    }
}

impl Eq for AnswerSecret {}

impl AnswerSecret {
    /// A fresh key pair (one per request).
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> AnswerSecret {
        let (sk, pk) = Kem::gen_keypair(rng);
        let mut public = [0u8; ANSWER_KEY_LEN];
        public.copy_from_slice(&pk.to_bytes());
        AnswerSecret { sk, public }
    }

    /// The public key the request signs.
    pub fn public(&self) -> &[u8; ANSWER_KEY_LEN] {
        &self.public
    }

    /// Opens provider `provider`'s sealed answer to `request_id`.
    pub fn open(
        &self,
        request_id: &str,
        provider: u8,
        sealed: &Sealed,
    ) -> Result<Vec<u8>, SealError> {
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&sealed.enc)
            .map_err(|_| SealError::Open)?;
        hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, Kem>(
            &OpModeR::Base,
            &self.sk,
            &enc,
            &info(request_id, provider),
            &sealed.ciphertext,
            &[],
        )
        .map_err(|_| SealError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;

    #[test]
    fn sealed_answers_open_only_for_their_request_and_provider() {
        let secret = AnswerSecret::generate(&mut OsRng);
        let msg = br#"{"code":"ok"}"#;
        let sealed = seal(secret.public(), "req-a", 0, msg, &mut OsRng).expect("seal");
        assert_eq!(secret.open("req-a", 0, &sealed).expect("opens"), msg);
        // Moved to another provider or request, it does not open.
        assert_eq!(secret.open("req-a", 1, &sealed), Err(SealError::Open));
        assert_eq!(secret.open("req-b", 0, &sealed), Err(SealError::Open));
        // Sealed for provider 1 or request B, it does not open as
        // provider 0's answer to request A.
        let p1 = seal(secret.public(), "req-a", 1, msg, &mut OsRng).expect("seal");
        assert_eq!(secret.open("req-a", 0, &p1), Err(SealError::Open));
        let b = seal(secret.public(), "req-b", 0, msg, &mut OsRng).expect("seal");
        assert_eq!(secret.open("req-a", 0, &b), Err(SealError::Open));
        // Another key does not open it; an altered byte neither.
        let other = AnswerSecret::generate(&mut OsRng);
        assert_eq!(other.open("req-a", 0, &sealed), Err(SealError::Open));
        let mut bad = sealed.clone();
        bad.ciphertext[0] ^= 1;
        assert_eq!(secret.open("req-a", 0, &bad), Err(SealError::Open));
        // The ciphertext does not contain the plaintext.
        assert!(!sealed.ciphertext.windows(msg.len()).any(|w| w == msg));
        // Debug output does not show the secret.
        assert!(format!("{secret:?}").contains(&hex::encode(secret.public())));
    }

    #[test]
    fn ids_do_not_run_into_the_provider_byte() {
        assert_ne!(info("a\u{1}", 0), info("a", 1));
    }
}
