//! `secure-sum`: the sum (and average) of one private value per provider.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sharecall_proto::Fp;

use crate::orchestration::computation::{Computation, ComputationError, Refusal};
use crate::orchestration::task::TaskKind;
use crate::smc::LaneSession;

/// The kind's wire name.
pub const KIND: TaskKind = TaskKind::new("secure-sum");

/// Parameters of `secure-sum`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecureSumParams {
    /// How many times to run the sum in the one session (load and
    /// failure tests; each repetition is one round). Default 1, at most
    /// 1 000 000.
    #[serde(default = "one")]
    pub repeat: u32,
}

fn one() -> u32 {
    1
}

/// Most repetitions a `secure-sum` task may ask for.
pub const MAX_REPEAT: u32 = 1_000_000;

/// The public result of `secure-sum`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecureSumOutput {
    /// Sum of the providers' values (decimal string: it can exceed 2^64).
    pub sum: String,
    /// Number of contributions.
    pub count: u32,
    /// sum / count.
    pub average: f64,
}

/// This provider's side of `secure-sum`: its private contribution.
pub struct SecureSum {
    value: u64,
}

impl SecureSum {
    /// Contributes `value` to every sum.
    pub fn new(value: u64) -> SecureSum {
        SecureSum { value }
    }
}

fn params(params: &[u8]) -> Result<SecureSumParams, Refusal> {
    let p: SecureSumParams = if params.is_empty() {
        SecureSumParams { repeat: 1 }
    } else {
        serde_json::from_slice(params).map_err(|e| Refusal::BadParams(e.to_string()))?
    };
    if p.repeat == 0 || p.repeat > MAX_REPEAT {
        return Err(Refusal::BadParams(format!(
            "repeat must be 1..={MAX_REPEAT}"
        )));
    }
    Ok(p)
}

impl Computation for SecureSum {
    fn review(&self, p: &[u8]) -> Result<(), Refusal> {
        params(p).map(|_| ())
    }

    fn run<'a>(
        &'a self,
        _gateway: u32,
        p: &'a [u8],
        session: &'a mut LaneSession,
    ) -> BoxFuture<'a, Result<Vec<u8>, ComputationError>> {
        Box::pin(async move {
            let p = params(p)?;
            let mine = [Fp::from_u64(self.value)];
            let mut sum = Fp::ZERO;
            for _ in 0..p.repeat {
                sum = session.sum_inputs(&mine).await?[0];
            }
            // Nobody acts on the opening before all agree on it.
            session.verify().await?;
            let sum = sum.low_u128();
            let out = SecureSumOutput {
                sum: sum.to_string(),
                count: 3,
                average: sum as f64 / 3.0,
            };
            serde_json::to_vec(&out).map_err(ComputationError::kind)
        })
    }
}
