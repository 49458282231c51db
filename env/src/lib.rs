//! berth-env: the placement gym.
//!
//! - [`gym`]: the Gymnasium-shaped [`Env`] trait every env here follows.
//! - [`PlacementEnv`]: the placement gym over a [`Backend`] (the simulator, [`SimBackend`]).
//! - [`entity`]: the state as rows of scale-free features of nodes, replicas and user groups,
//!   for networks that act on any cluster size; [`candidates`]: the bounded set of nodes
//!   it may describe on a large cluster.
//! - [`cost`]: the latency model and reward. [`background`]: other workloads' pods that
//!   hold capacity on a shared cluster while they run. [`what_if`]: moves and removals
//!   priced once per kind of replica in a state, for `greedy` and [`gains`].
//! - [`VecEnv`]: N copies with auto-reset, seeded per copy. [`CartPole`] for checking agents.
//! - [`baselines`] and [`oracle`]: what every result is compared with; [`evaluate`] runs them.
//!   [`packing`]: the GPU-packing placement rules some baselines place by.
//! - [`replay`]: the `replay` backend, episodes of what a live cluster recorded.
//! - [`plan`]: a deploy's moves, from a policy rolled forward on a copy of the live state;
//!   [`shield`]: only the plan the simulator scores best (the policy's, `greedy`'s, or none);
//!   [`regret`]: how far a day so far trails `greedy`'s counterfactual of it.
//! - [`shapes`]: a scenario varied per episode (nodes kept, traffic, failures, a zone down),
//!   for training across shapes.
//! - [`checker`]: Gymnasium's env checker, ported. [`bench`]: steps per second.
//! - [`live`] (feature `live`): a real cluster through `kube`: snapshots, moves, workloads.

pub mod backend;
pub mod background;
pub mod baselines;
pub mod bench;
pub mod candidates;
pub mod cartpole;
pub mod checker;
pub mod cost;
pub mod entity;
mod error;
pub mod evaluate;
pub mod exposure;
pub mod fixed;
pub mod free_moves;
pub mod gains;
pub mod gym;
#[cfg(feature = "live")]
pub mod live;
pub mod oracle;
pub mod packing;
mod placement_env;
pub mod plan;
pub mod regret;
pub mod replay;
pub mod scheduler;
pub mod shapes;
pub mod shield;
pub mod shipped;
#[cfg(test)]
mod test_cluster;
pub mod vec_env;
pub mod what_if;

pub use backend::{Backend, SimBackend, Trace};
pub use cartpole::CartPole;
pub use error::{Error, Result};
pub use gym::{BoxSpace, Env, Reset, Step};
pub use placement_env::{EnvSizes, Move, PlacementEnv, StartState, TickInfo};
pub use vec_env::VecEnv;
