//! The live backend: a real cluster through `kube` (feature `live`).
//!
//! berth places one Deployment per replica (labelled [`labels::SERVICE`] and
//! [`labels::REPLICA`]) and moves a replica by patching its Deployment's `nodeSelector` on
//! `kubernetes.io/hostname`; a surge rollout brings the new pod up before the old one goes.
//!
//! - [`connect`]: a client from a kubeconfig file, or in-cluster credentials.
//! - [`Snapshot`]: nodes, where each replica runs, and pod metrics from `metrics.k8s.io`;
//!   [`Snapshot::shape`]: the scenario with the nodes that joined since it was written.
//! - [`Mover`]: one move, waited for until the new pod is Ready or a timeout passes.
//! - [`discover`]: the scenario of a cluster, from its nodes and Deployments.
//! - [`workload`]: the Deployments of a scenario's replicas, as the workload chart renders them.
//! - [`sharing`]: MIG instances and time-sliced GPUs as the GPU operator advertises them.

mod client;
pub mod discover;
mod error;
pub mod gpu_products;
pub mod gym;
pub mod labels;
mod load;
pub mod metrics;
mod mover;
mod shape;
pub mod sharing;
mod snapshot;
pub mod workload;

pub use client::connect;
pub use error::{LiveError, LiveResult};
pub use gym::LiveEnv;
pub use load::{utilisation, views};
pub use mover::{MoveDone, Mover};
pub use shape::{LeftOut, LiveShape};
pub use snapshot::{LiveNode, LivePlacement, LiveReplica, PodUsage, Snapshot, live_node, pod_ready};
