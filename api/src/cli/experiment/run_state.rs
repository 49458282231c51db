//! What one run left behind, kept as a JSON file per run under `state/` so an interrupted
//! experiment resumes where it stopped, and the report is always built from the same
//! stored numbers whether they were computed now or in an earlier invocation.

use std::path::{Path, PathBuf};

use berth_env::evaluate::EvalRow;
use serde::{Deserialize, Serialize};

use super::Error;

/// What kind of contender a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A trained agent.
    Agent,
    /// A fixed baseline.
    Baseline,
    /// The per-tick oracle (a lower bound).
    Oracle,
}

impl Kind {
    /// The name in files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Baseline => "baseline",
            Self::Oracle => "oracle",
        }
    }
}

/// One condition's evaluation of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConditionResult {
    /// `base` or the condition's name.
    pub condition: String,
    /// Figures over the seed's evaluation episodes.
    pub row: EvalRow,
    /// Mean latency of every tick of the first evaluation episode, ms.
    pub day_latency_ms: Vec<f64>,
}

/// How long a run took: kept apart from the results, which reproduce exactly; these do not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Wall time of training, s (0 for baselines).
    pub train_wall_s: f64,
    /// Training environment steps per second (0 for baselines).
    pub train_sps: f64,
    /// Wall time of the evaluation, s.
    pub eval_wall_s: f64,
}

/// Everything one (scenario, policy, seed) produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Hash of what the run was asked to do; a changed file reruns it.
    pub fingerprint: String,
    /// Scenario as named in the file.
    pub scenario: String,
    /// Row label.
    pub policy: String,
    /// Agent, baseline or oracle.
    pub kind: Kind,
    /// The seed.
    pub seed: u64,
    /// Training steps (agents).
    pub train_steps: Option<u64>,
    /// One result per condition; empty when the oracle's or the planner's search refused.
    pub results: Vec<ConditionResult>,
    /// Why the oracle or the planner gave no rows, when its search refused.
    pub refused: Option<String>,
    /// `(step, episodic return)` of every finished training episode.
    pub curve: Vec<(u64, f64)>,
    /// Timings.
    pub timing: Timing,
}

/// The folder of run files.
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// `dir` is created when the first run is saved.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// The stored run for `key`, if one exists and was made for `fingerprint`.
    pub fn done(&self, key: &str, fingerprint: &str) -> Option<RunRecord> {
        let bytes = std::fs::read(self.path(key)).ok()?;
        let record: RunRecord = serde_json::from_slice(&bytes).ok()?;
        (record.fingerprint == fingerprint).then_some(record)
    }

    /// Stores a run atomically (write, then rename): an interrupted write leaves no file.
    pub fn save(&self, key: &str, record: &RunRecord) -> Result<(), Error> {
        std::fs::create_dir_all(&self.dir).map_err(|e| io(&self.dir, e))?;
        let tmp = self.dir.join(format!(".{key}.json.tmp"));
        let bytes = serde_json::to_vec(record).expect("records serialise");
        std::fs::write(&tmp, bytes).map_err(|e| io(&tmp, e))?;
        let path = self.path(key);
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))
    }

    /// Removes every stored run (`--fresh`).
    pub fn clear(&self) -> Result<(), Error> {
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&self.dir, e)),
            _ => Ok(()),
        }
    }
}

/// An I/O error naming its path.
pub fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Io { path: path.display().to_string(), reason: e.to_string() }
}
