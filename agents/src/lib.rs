//! berth-agents: the learning agents and their training loop.
//!
//! - [`agent`]: the [`Agent`] trait every algorithm implements, and [`AgentPolicy`] to put a
//!   trained agent beside the baselines.
//! - [`qlearning`]: tabular Q-learning; [`dqn`]: double DQN with burn; [`ppo`]: PPO with
//!   burn; [`nets`]: the networks.
//! - [`train`]: one entry point for every algorithm, default budgets, and model loading.
//! - [`model_file`]: the saved model (header + weights as bytes); [`run_log`]: the CSV log;
//!   [`plot`]: the learning curve as a PNG; [`normalize`]: reward scaling; [`validation`]:
//!   keeping a run's best greedy policy; [`footprint`]: a run's memory, estimated before it starts;
//!   [`teacher`]: whom PPO's kickstarting imitates (`greedy`, `lookahead` or `planner`).

pub mod agent;
pub mod bench;
pub mod dqn;
pub mod entity_dqn;
pub mod entity_net;
pub mod entity_ppo;
mod episodes;
mod error;
pub mod footprint;
pub mod model_file;
pub mod n_step;
pub mod nets;
pub mod normalize;
pub mod plot;
pub mod ppo;
pub mod progress;
pub mod qlearning;
pub mod run_log;
pub mod schedule;
pub mod teacher;
pub mod train;
pub mod validation;

pub use agent::{ActMode, Agent, AgentKind, AgentPolicy};
pub use error::{Error, Result};
pub use model_file::{ModelHeader, SavedModel};
pub use progress::{Flow, Losses, Progress};
pub use train::{Target, TrainRequest, Trained, fits_any_cluster, load_agent, train};
