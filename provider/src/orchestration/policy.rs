//! The peer policy hook: each provider decides on its own whether to take
//! part in a task (the seed's intervenability). Later, LI warrants are
//! reviewed here.

use std::collections::HashSet;
use std::time::Duration;

use sharecall_proto::control::{SignedTask, Task};

use super::task::{verify_signature, TaskKind};
use sharecall_proto::clock::now_ms;

/// What a policy sees of a task under review.
pub struct Review<'a> {
    /// The task exactly as signed.
    pub signed: &'a SignedTask,
    /// The decoded task.
    pub task: &'a Task,
    /// The provider acting as gateway.
    pub gateway: u32,
}

/// A peer's decision rule for tasks.
pub trait PeerPolicy: Send + Sync {
    /// Short name, quoted in denials.
    fn name(&self) -> &str;
    /// `Err(reason)` refuses the task.
    fn review(&self, review: &Review<'_>) -> Result<(), String>;
}

/// Refuses tasks whose signature does not verify or that are too old or
/// from the future (a replayed or forged Prepare).
pub struct SignaturePolicy {
    /// Largest accepted distance between `issued_at` and now.
    pub max_skew: Duration,
}

impl PeerPolicy for SignaturePolicy {
    fn name(&self) -> &str {
        "signature"
    }

    fn review(&self, review: &Review<'_>) -> Result<(), String> {
        verify_signature(review.signed).map_err(|e| e.to_string())?;
        let skew = now_ms().abs_diff(review.task.issued_at_ms);
        if u128::from(skew) > self.max_skew.as_millis() {
            return Err(format!(
                "task issued {skew} ms away from this provider's clock (limit {} ms)",
                self.max_skew.as_millis()
            ));
        }
        Ok(())
    }
}

/// Accepts only the task kinds this provider's operator allows.
pub struct AllowedKinds {
    /// Every kind this provider knows (names the others in refusals).
    known: Vec<TaskKind>,
    allowed: HashSet<TaskKind>,
}

impl AllowedKinds {
    /// Allows `allowed` out of the `known` kinds.
    pub fn new(known: Vec<TaskKind>, allowed: impl IntoIterator<Item = TaskKind>) -> AllowedKinds {
        AllowedKinds {
            known,
            allowed: allowed.into_iter().collect(),
        }
    }
}

impl PeerPolicy for AllowedKinds {
    fn name(&self) -> &str {
        "allowed-kinds"
    }

    fn review(&self, review: &Review<'_>) -> Result<(), String> {
        match TaskKind::parse(&review.task.kind, &self.known) {
            Ok(kind) if self.allowed.contains(&kind) => Ok(()),
            Ok(kind) => Err(format!("task kind {kind} is not allowed by this provider")),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// All policies must accept.
#[derive(Default)]
pub struct Policies(pub Vec<Box<dyn PeerPolicy>>);

impl Policies {
    /// Reviews a task; the first refusal wins and names its policy.
    pub fn review(&self, review: &Review<'_>) -> Result<(), String> {
        for p in &self.0 {
            p.review(review)
                .map_err(|why| format!("policy {}: {why}", p.name()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestration::computations::{noop, secure_sum};
    use crate::orchestration::task::{decode, RequesterKey};

    const ALL: [TaskKind; 3] = [secure_sum::KIND, noop::KIND, TaskKind::new("execute")];

    fn policies(allowed: &[TaskKind]) -> Policies {
        Policies(vec![
            Box::new(SignaturePolicy {
                max_skew: Duration::from_secs(60),
            }),
            Box::new(AllowedKinds::new(ALL.to_vec(), allowed.iter().copied())),
        ])
    }

    #[test]
    fn valid_allowed_task_passes() {
        let signed = RequesterKey::generate("a").sign(noop::KIND, "t", b"");
        let task = decode(&signed).expect("decode");
        let r = Review {
            signed: &signed,
            task: &task,
            gateway: 0,
        };
        assert!(policies(&ALL).review(&r).is_ok());
        let denied = policies(&[secure_sum::KIND]).review(&r).expect_err("kind");
        assert!(denied.contains("allowed-kinds"), "{denied}");
    }

    #[test]
    fn bad_signature_is_refused() {
        let mut signed = RequesterKey::generate("a").sign(noop::KIND, "t", b"");
        let other = RequesterKey::generate("b");
        signed.public_key = other.public().to_vec();
        let task = decode(&signed).expect("decode");
        let r = Review {
            signed: &signed,
            task: &task,
            gateway: 0,
        };
        let why = policies(&ALL).review(&r).expect_err("forged");
        assert!(why.contains("signature"), "{why}");
    }
}
