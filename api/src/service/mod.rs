//! The service's work, under the HTTP layer and above the infrastructure: training tasks
//! (`training`), deploys (`deploy`), the cluster they read (`cluster`) and the scenarios they
//! name (`scenario`). Training and deploys never import each other.

pub mod cluster;
pub mod deploy;
pub mod scenario;
#[cfg(test)]
mod telemetry_test;
pub mod training;
