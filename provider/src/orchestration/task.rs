//! Tasks: what a front end asks the providers to compute, signed by the
//! requester so that every peer can review exactly what it is asked.

use std::fmt;
use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use prost::Message;
use rand::RngCore;
use sharecall_proto::control::{SignedTask, Task};

/// A task kind: the wire name of a computation (see [`super::Registry`]).
///
/// The core knows no kind by itself; each computation declares its kind
/// as a constant and the provider registers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskKind(&'static str);

impl TaskKind {
    /// The kind with wire name `name`.
    pub const fn new(name: &'static str) -> TaskKind {
        TaskKind(name)
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        self.0
    }

    /// The kind among `known` whose wire name is `name`.
    pub fn parse(name: &str, known: &[TaskKind]) -> Result<TaskKind, UnknownKind> {
        known
            .iter()
            .copied()
            .find(|k| k.as_str() == name)
            .ok_or_else(|| UnknownKind {
                name: name.to_string(),
                known: known.to_vec(),
            })
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A task kind name that is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown task kind {name:?} (known: {})", list(.known))]
pub struct UnknownKind {
    /// The name asked for.
    pub name: String,
    /// The kinds that are known.
    pub known: Vec<TaskKind>,
}

fn list(kinds: &[TaskKind]) -> String {
    kinds
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a signed task was refused before any policy looked at it.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The task bytes are not a Task message.
    #[error("task does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
    /// Public key or signature of the wrong length.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The signature does not verify.
    #[error("task signature does not verify")]
    BadSignature,
    /// Reading or writing the requester key failed.
    #[error("requester key {path}: {reason}")]
    Key {
        /// The key file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

use sharecall_proto::clock::now_ms;

/// The ed25519 key a gateway signs the tasks it submits with.
pub struct RequesterKey {
    key: SigningKey,
    name: String,
}

impl RequesterKey {
    /// A fresh key (for tests and tools).
    pub fn generate(name: &str) -> RequesterKey {
        RequesterKey {
            key: SigningKey::generate(&mut rand::rngs::OsRng),
            name: name.to_string(),
        }
    }

    /// Loads `requester.key` (32 raw bytes) from `dir`, creating it (mode
    /// 0600) on first use.
    pub fn load_or_create(dir: &Path, name: &str) -> Result<RequesterKey, TaskError> {
        let path = dir.join("requester.key");
        let err = |reason: String| TaskError::Key {
            path: path.display().to_string(),
            reason,
        };
        match std::fs::read(&path) {
            Ok(bytes) => {
                let raw: [u8; 32] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| err(format!("{} bytes, expected 32", bytes.len())))?;
                Ok(RequesterKey {
                    key: SigningKey::from_bytes(&raw),
                    name: name.to_string(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = RequesterKey::generate(name);
                write_private(&path, &key.key.to_bytes()).map_err(|e| err(e.to_string()))?;
                Ok(key)
            }
            Err(e) => Err(err(e.to_string())),
        }
    }

    /// The public half, as peers see it.
    pub fn public(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Builds and signs a task.
    pub fn sign(&self, kind: TaskKind, purpose: &str, params: &[u8]) -> SignedTask {
        let mut nonce = vec![0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let task = Task {
            kind: kind.as_str().to_string(),
            purpose: purpose.to_string(),
            requester: self.name.clone(),
            issued_at_ms: now_ms(),
            params: params.to_vec(),
            nonce,
        };
        let bytes = task.encode_to_vec();
        let signature = self.key.sign(&bytes);
        SignedTask {
            task: bytes,
            public_key: self.public().to_vec(),
            signature: signature.to_bytes().to_vec(),
        }
    }
}

/// Decodes the task inside a signed task (without checking the signature).
pub fn decode(signed: &SignedTask) -> Result<Task, TaskError> {
    Ok(Task::decode(signed.task.as_slice())?)
}

/// Checks the signature over the task bytes; returns the signer's key.
pub fn verify_signature(signed: &SignedTask) -> Result<[u8; 32], TaskError> {
    let pk: [u8; 32] = signed
        .public_key
        .as_slice()
        .try_into()
        .map_err(|_| TaskError::Malformed("public key"))?;
    let sig: [u8; 64] = signed
        .signature
        .as_slice()
        .try_into()
        .map_err(|_| TaskError::Malformed("signature"))?;
    let key = VerifyingKey::from_bytes(&pk).map_err(|_| TaskError::Malformed("public key"))?;
    key.verify(&signed.task, &Signature::from_bytes(&sig))
        .map_err(|_| TaskError::BadSignature)?;
    Ok(pk)
}

#[cfg(unix)]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECURE_SUM: TaskKind = TaskKind::new("secure-sum");
    const ALL: [TaskKind; 3] = [SECURE_SUM, TaskKind::new("noop"), TaskKind::new("execute")];

    #[test]
    fn signed_task_verifies_and_tampering_does_not() {
        let key = RequesterKey::generate("admin");
        let signed = key.sign(SECURE_SUM, "test", b"{}");
        assert_eq!(verify_signature(&signed).expect("valid"), key.public());
        let task = decode(&signed).expect("decodes");
        assert_eq!(task.kind, "secure-sum");
        assert_eq!(task.requester, "admin");

        let mut tampered = signed.clone();
        let mut bytes = tampered.task.to_vec();
        bytes[3] ^= 1;
        tampered.task = bytes;
        assert!(matches!(
            verify_signature(&tampered),
            Err(TaskError::BadSignature)
        ));

        let mut short = signed;
        short.signature = vec![0u8; 10];
        assert!(matches!(
            verify_signature(&short),
            Err(TaskError::Malformed(_))
        ));
    }

    #[test]
    fn key_file_is_created_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = RequesterKey::load_or_create(dir.path(), "a").expect("create");
        let b = RequesterKey::load_or_create(dir.path(), "a").expect("load");
        assert_eq!(a.public(), b.public());
        std::fs::write(dir.path().join("requester.key"), b"short").expect("write");
        assert!(RequesterKey::load_or_create(dir.path(), "a").is_err());
    }

    #[test]
    fn kinds_round_trip() {
        for k in ALL {
            assert_eq!(TaskKind::parse(k.as_str(), &ALL), Ok(k));
        }
        assert!(TaskKind::parse("frob", &ALL).is_err());
        assert_eq!(
            TaskKind::parse("frob", &ALL)
                .expect_err("unknown")
                .to_string(),
            "unknown task kind \"frob\" (known: secure-sum, noop, execute)"
        );
    }
}
