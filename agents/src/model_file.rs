//! The saved model: a header (agent, sizes, scenario, hyperparameters) and the weights, in
//! one byte string, so a model lives in a file or a database document alike.
//!
//! Layout: the line `berth-model v1`, one line of JSON header, then the weights' bytes.

use serde::{Deserialize, Serialize};

use crate::agent::AgentKind;
use crate::error::{Error, Result};

const MAGIC: &str = "berth-model v1\n";

/// What a model was trained for and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelHeader {
    /// The algorithm.
    pub agent: AgentKind,
    /// Observation length it expects.
    pub observation_len: usize,
    /// Number of actions it chooses from.
    pub action_count: usize,
    /// Name of the scenario it was trained on.
    pub scenario: String,
    /// Environment steps it was trained for.
    pub trained_steps: u64,
    /// Seed of the run.
    pub seed: u64,
    /// The hyperparameters, as the algorithm's config serialises them.
    pub config: serde_json::Value,
    /// The services of the scenario it was trained on, by name: what a size-agnostic model
    /// knows (empty in models saved before there were any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
}

/// A header and the weights.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedModel {
    /// What it is.
    pub header: ModelHeader,
    /// The learned parameters, in the algorithm's own encoding.
    pub weights: Vec<u8>,
}

impl SavedModel {
    /// The model as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = serde_json::to_string(&self.header).expect("headers serialise");
        let mut out = Vec::with_capacity(MAGIC.len() + header.len() + 1 + self.weights.len());
        out.extend_from_slice(MAGIC.as_bytes());
        out.extend_from_slice(header.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(&self.weights);
        out
    }

    /// Reads bytes written by [`SavedModel::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let rest = bytes
            .strip_prefix(MAGIC.as_bytes())
            .ok_or_else(|| Error::BadModel("missing the `berth-model v1` line".into()))?;
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| Error::BadModel("the header line is not terminated".into()))?;
        let header: ModelHeader =
            serde_json::from_slice(&rest[..end]).map_err(|e| Error::BadModel(format!("bad header: {e}")))?;
        Ok(Self { header, weights: rest[end + 1..].to_vec() })
    }

    /// Fails with a clear message unless the model fits an env of these sizes.
    pub fn check_fits(&self, scenario: &str, observation_len: usize, action_count: usize) -> Result<()> {
        if self.header.observation_len == observation_len && self.header.action_count == action_count {
            return Ok(());
        }
        Err(Error::SizeMismatch {
            scenario: scenario.to_string(),
            model_obs: self.header.observation_len,
            model_actions: self.header.action_count,
            env_obs: observation_len,
            env_actions: action_count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> SavedModel {
        SavedModel {
            header: ModelHeader {
                services: Vec::new(),
                agent: AgentKind::Qlearning,
                observation_len: 22,
                action_count: 7,
                scenario: "tiny".into(),
                trained_steps: 10,
                seed: 1,
                config: serde_json::json!({"gamma": 0.9}),
            },
            weights: vec![0, 10, 255, b'\n', 3],
        }
    }

    #[test]
    fn round_trip_keeps_header_and_weights() {
        let m = model();
        assert_eq!(SavedModel::from_bytes(&m.to_bytes()).unwrap(), m);
    }

    #[test]
    fn garbage_and_size_mismatch_are_clear_errors() {
        assert!(matches!(SavedModel::from_bytes(b"hello"), Err(Error::BadModel(_))));
        let err = model().check_fits("gpu-small", 62, 49).unwrap_err().to_string();
        assert!(err.contains("22 observation values and 7 actions") && err.contains("62 and 49"), "{err}");
    }
}
