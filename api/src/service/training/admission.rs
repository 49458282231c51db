//! What a training task must pass before it is queued, and again before a runner trains it
//! (a task stored by an older or more generous replica): its scenario within berth's size
//! limits, its hyperparameters within their bounds, and its estimated memory within the
//! per-task budget (`--task-memory-mib`). Nothing of the task's size is allocated before
//! these checks pass.

use std::sync::Arc;

use berth_agents::footprint::{self, Footprint};
use berth_agents::{AgentKind, Target};
use berth_core::Scenario;
use serde_json::Value;

/// Why a task is refused: the request field at fault and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Refusal {
    /// `scenario`, `hyperparameters.<name>`, ...
    pub field: String,
    /// What is wrong, with the value and the limit.
    pub reason: String,
}

/// The task a request or a stored document describes.
pub struct TaskShape<'a> {
    /// The algorithm.
    pub agent: AgentKind,
    /// What it trains on, already loaded (and so within the scenario limits).
    pub scenario: &'a Arc<Scenario>,
    /// Its budget of steps, if it sets one.
    pub steps: Option<u64>,
    /// Overrides of the algorithm's hyperparameters.
    pub hyperparameters: &'a Value,
}

/// Checks the hyperparameters and the memory estimate against `budget_bytes`.
pub fn admit(task: &TaskShape<'_>, budget_bytes: u64) -> Result<Footprint, Refusal> {
    berth_agents::train::check_hyperparameters(task.agent, task.hyperparameters).map_err(hyperparameter)?;
    let target = Target::Placement(task.scenario.clone());
    let estimate =
        footprint::estimate(task.agent, &target, task.steps, task.hyperparameters).map_err(hyperparameter)?;
    let total = estimate.total_bytes();
    if total <= budget_bytes {
        return Ok(estimate);
    }
    let largest = estimate.largest();
    let field = match largest.field {
        "scenario" => "scenario".to_string(),
        name => format!("hyperparameters.{name}"),
    };
    let parts: Vec<String> =
        estimate.parts.iter().map(|p| format!("{} {} MiB", p.what, mib(p.bytes))).collect();
    Err(Refusal {
        field,
        reason: format!(
            "this task would need about {} MiB ({}), over the per-task memory budget of {} MiB \
             (--task-memory-mib); its {} is the largest part",
            mib(total),
            parts.join(", "),
            mib(budget_bytes),
            largest.what
        ),
    })
}

fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

fn hyperparameter(error: berth_agents::Error) -> Refusal {
    match error {
        berth_agents::Error::Config { name, reason } => {
            Refusal { field: format!("hyperparameters.{name}"), reason }
        }
        other => Refusal { field: "hyperparameters".into(), reason: other.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape<'a>(agent: AgentKind, scenario: &'a Arc<Scenario>, hyperparameters: &'a Value) -> TaskShape<'a> {
        TaskShape { agent, scenario, steps: None, hyperparameters }
    }

    #[test]
    fn dqn_on_gpu_large_is_refused_by_its_replay_buffer_until_it_is_smaller() {
        let large = berth_env::shipped::shipped("gpu-large").unwrap();
        let none = Value::Null;
        let refusal = admit(&shape(AgentKind::Dqn, &large, &none), 4096 << 20).unwrap_err();
        assert_eq!(refusal.field, "hyperparameters.buffer_size");
        assert!(refusal.reason.contains("4096 MiB") && refusal.reason.contains("replay buffer"), "{refusal}");
        let smaller = serde_json::json!({"buffer_size": 2000});
        assert!(admit(&shape(AgentKind::Dqn, &large, &smaller), 4096 << 20).is_ok());
    }

    #[test]
    fn the_production_cluster_is_admitted_or_refused_by_name_and_the_entity_network_is_smaller() {
        let openb = berth_env::shipped::shipped("openb").unwrap();
        let none = Value::Null;
        let budget = 4096 << 20;
        let tabular = admit(&shape(AgentKind::Qlearning, &openb, &none), budget).unwrap_err();
        assert_eq!(tabular.field, "scenario");
        assert!(tabular.reason.contains("Q-table"), "{tabular}");
        let dqn = admit(&shape(AgentKind::Dqn, &openb, &none), budget).unwrap_err();
        assert_eq!(dqn.field, "hyperparameters.buffer_size");
        let ppo = admit(&shape(AgentKind::Ppo, &openb, &none), budget).unwrap();
        assert!(ppo.total_bytes() <= budget, "{ppo:?}");
        // The entity network's parameters do not grow with the cluster (under 1 MiB with
        // their optimiser state); a minibatch's per-node activations are its largest part.
        let entity = serde_json::json!({"network": "entity"});
        let small = admit(&shape(AgentKind::Ppo, &openb, &entity), budget).unwrap();
        assert!(small.total_bytes() < ppo.total_bytes() / 2, "{small:?} against {ppo:?}");
        let networks = small.parts.iter().find(|p| p.what == "networks").unwrap();
        assert!(networks.bytes < 1 << 20, "{small:?}");
    }

    #[test]
    fn bounds_are_checked_before_the_estimate() {
        let small = berth_env::shipped::shipped("gpu-small").unwrap();
        let wide = serde_json::json!({"hidden": 1_000_000_000});
        let refusal = admit(&shape(AgentKind::Ppo, &small, &wide), u64::MAX).unwrap_err();
        assert_eq!(refusal.field, "hyperparameters.hidden");
        assert!(refusal.reason.contains("1000000000") && refusal.reason.contains("4096"), "{refusal}");
        let product = serde_json::json!({"num_envs": 1024, "num_steps": 100_000});
        let refusal = admit(&shape(AgentKind::Ppo, &small, &product), u64::MAX).unwrap_err();
        assert_eq!(refusal.field, "hyperparameters.num_steps");
        assert!(refusal.reason.contains("num_envs * num_steps is 102400000"), "{refusal}");
    }

    #[test]
    fn the_shipped_scenarios_train_with_defaults_within_the_default_budget() {
        for name in ["tiny", "gpu-small", "gpu-medium"] {
            let scenario = berth_env::shipped::shipped(name).unwrap();
            for agent in [AgentKind::Qlearning, AgentKind::Dqn, AgentKind::Ppo] {
                let none = Value::Null;
                admit(&shape(agent, &scenario, &none), 4096 << 20).unwrap();
            }
        }
    }
}
