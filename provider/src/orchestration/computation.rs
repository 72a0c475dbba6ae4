//! The Session phase's computations, one per task kind: what each peer
//! runs on its SMC session, and the public output all three must agree on.

use serde::{Deserialize, Serialize};
use sharecall_proto::Fp;

use super::task::TaskKind;
use crate::smc::{LaneSession, SmcError};

/// This provider's private inputs to tasks.
#[derive(Debug, Clone, Default)]
pub struct LocalInputs {
    /// Contribution to `secure-sum`.
    pub secure_sum_value: u64,
}

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

/// Why a computation failed.
#[derive(Debug, thiserror::Error)]
pub enum ComputationError {
    /// The task's parameters are not valid for its kind.
    #[error("bad parameters: {0}")]
    BadParams(String),
    /// The SMC protocol failed.
    #[error(transparent)]
    Smc(#[from] SmcError),
}

/// Checks a task's parameters before any peer computes (at Prepare).
pub fn validate(kind: TaskKind, params: &[u8]) -> Result<(), ComputationError> {
    match kind {
        TaskKind::SecureSum => secure_sum_params(params).map(|_| ()),
        // Checked by the executor, against its own state, at Session.
        TaskKind::Noop | TaskKind::Execute => Ok(()),
    }
}

fn secure_sum_params(params: &[u8]) -> Result<SecureSumParams, ComputationError> {
    let p: SecureSumParams = if params.is_empty() {
        SecureSumParams { repeat: 1 }
    } else {
        serde_json::from_slice(params).map_err(|e| ComputationError::BadParams(e.to_string()))?
    };
    if p.repeat == 0 || p.repeat > MAX_REPEAT {
        return Err(ComputationError::BadParams(format!(
            "repeat must be 1..={MAX_REPEAT}"
        )));
    }
    Ok(p)
}

/// Runs `kind` on `session`; returns the encoded public output.
pub async fn run(
    kind: TaskKind,
    params: &[u8],
    session: &mut LaneSession,
    inputs: &LocalInputs,
) -> Result<Vec<u8>, ComputationError> {
    match kind {
        TaskKind::Noop => Ok(Vec::new()),
        TaskKind::Execute => Err(ComputationError::BadParams(
            "execute runs on the executor, not as a plain computation".into(),
        )),
        TaskKind::SecureSum => {
            let p = secure_sum_params(params)?;
            let mine = [Fp::from_u64(inputs.secure_sum_value)];
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
            serde_json::to_vec(&out).map_err(|e| ComputationError::BadParams(e.to_string()))
        }
    }
}
