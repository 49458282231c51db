//! The live cluster the service reads and deploys to.

use std::time::Duration;

use berth_env::live::Mover;

/// The live cluster the service deploys to.
#[derive(Clone)]
pub struct LiveCluster {
    /// The client.
    pub client: kube::Client,
    /// The namespace of the placed services' Deployments.
    pub namespace: String,
    /// How long one move may take.
    pub move_timeout: Duration,
    /// This replica's name in the deploy lock.
    pub owner: String,
    /// How long the deploy lock holds without renewal: a dead replica's deploy is taken
    /// over (and undone) this long after it stopped.
    pub lease: Duration,
}

impl LiveCluster {
    /// Moves replicas of this cluster, with its move timeout.
    pub fn mover(&self) -> Mover {
        let mut mover = Mover::new(self.client.clone(), &self.namespace);
        mover.timeout = self.move_timeout;
        mover
    }
}
