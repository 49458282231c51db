//! berth-agents: the learning agents (tabular Q-learning, DQN and PPO with burn) and the
//! training loop. They arrive with issue 3; until then the crate only fixes its place in
//! the dependency order `core <- env <- agents <- api`, and re-exports the gym it trains on.

pub use berth_env as env;
