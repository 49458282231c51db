//! A placement: which node each replica runs on, and whether that is feasible.

use crate::error::{Error, Result};
use crate::resources::NodeUsage;
use crate::scenario::Scenario;

/// Index of a replica in [`Scenario::replica_services`] order.
pub type ReplicaId = usize;

/// Replica -> node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Placement {
    /// `nodes[r]` is the node index of replica `r`.
    pub nodes: Vec<usize>,
}

impl Placement {
    /// Wraps a node index per replica.
    pub fn new(nodes: Vec<usize>) -> Self {
        Self { nodes }
    }

    /// Per-node usage of this placement.
    pub fn usage(&self, scenario: &Scenario) -> Vec<NodeUsage> {
        let services = scenario.replica_services();
        let mut usage = vec![NodeUsage::default(); scenario.nodes.len()];
        for (r, &n) in self.nodes.iter().enumerate() {
            usage[n].take(scenario.nodes[n].gpu.as_ref(), &scenario.services[services[r]].requests);
        }
        usage
    }

    /// Checks every node's requests fit its allocatable resources, every GPU replica gets
    /// whole GPUs with enough memory or a slot of shared ones it accepts, and every replica
    /// runs on hardware it supports.
    pub fn check(&self, scenario: &Scenario) -> Result<()> {
        let services = scenario.replica_services();
        if self.nodes.len() != services.len() {
            return Err(Error::invalid(
                "placement",
                format!("has {} replicas, the scenario {}", self.nodes.len(), services.len()),
            ));
        }
        let mut usage = vec![NodeUsage::default(); scenario.nodes.len()];
        for (r, &n) in self.nodes.iter().enumerate() {
            let node = scenario.nodes.get(n).ok_or_else(|| {
                Error::invalid(format!("placement[{r}]"), format!("node index {n} out of range"))
            })?;
            let s = services[r];
            let req = &scenario.services[s].requests;
            if scenario.service_time_ms(s, n).is_none() {
                return Err(Error::Infeasible {
                    node: node.name.clone(),
                    reason: format!("`{}` cannot run on its hardware", scenario.services[s].name),
                });
            }
            if !usage[n].fits(&node.allocatable, node.gpu.as_ref(), req) {
                return Err(Error::Infeasible {
                    node: node.name.clone(),
                    reason: format!("replica {r} of `{}` ({req}) does not fit", scenario.services[s].name),
                });
            }
            usage[n].take(node.gpu.as_ref(), req);
        }
        Ok(())
    }

    /// Whether [`Placement::check`] passes.
    pub fn is_feasible(&self, scenario: &Scenario) -> bool {
        self.check(scenario).is_ok()
    }
}
