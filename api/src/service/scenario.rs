//! The scenario a task or a model names: its inline spec, or a shipped one.

use std::sync::Arc;

use berth_core::Scenario;
use berth_env::shipped;

use crate::store::ScenarioRef;

/// The scenario a task names: its inline spec, or a shipped one.
pub fn resolve_scenario(scenario: &ScenarioRef) -> Result<Arc<Scenario>, String> {
    match &scenario.spec {
        Some(spec) => Scenario::from_yaml(spec).map(Arc::new).map_err(|e| e.to_string()),
        None => shipped::shipped(&scenario.name).ok_or_else(|| shipped::not_shipped(&scenario.name)),
    }
}
