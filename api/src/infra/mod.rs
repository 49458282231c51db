//! What every layer above may use and nothing in it uses from above: authentication, rate
//! limits, telemetry, the metrics registry and the store's cached figures. Imports only the
//! store.

pub mod allocator;
pub mod auth;
pub mod figures;
pub mod lease;
pub mod metrics;
pub mod rate_limit;
pub mod telemetry;
