//! berth-core: the domain model shared by the gym, the agents and the service.
//!
//! A [`Scenario`] describes a cluster (nodes in zones, with CPUs, memory and GPUs), the
//! services placed on it (replicas, requests, service time per hardware class), the users
//! who call them and the dynamics of an episode. It is read from YAML by
//! [`Scenario::from_yaml`], which names the field path and the reason of every error.
//! A [`Placement`] maps replicas to nodes and knows whether it is feasible.

mod background;
pub mod cold_start;
mod csv;
mod error;
pub mod limits;
pub mod mig;
pub mod openb;
mod placement;
mod rate;
mod resources;
pub mod rng;
mod scenario;
pub mod sharing;
mod spec;
pub mod trace;

pub use background::{BackgroundPod, GpuClaim, WHOLE_GPU_MILLI};
pub use cold_start::ColdStartShape;
pub use error::{Error, Result};
pub use placement::{Placement, ReplicaId};
pub use rate::{RateModel, TraceFit};
pub use resources::{NodeUsage, Resources};
pub use rng::Rng;
pub use scenario::{
    CPU_CLASS, FailureModel, GpuSpec, InitialPlacement, Node, NodeEvent, NodeEventKind, RewardWeights,
    Routing, Scenario, Service, UserGroup, gpu_sharing,
};
pub use sharing::{Accepts, GpuSharing};
