//! Training tasks: what a task must pass to be queued (`admission`), the runner that claims
//! and trains them (`runner`), one task's life (`task`), and Kubernetes Jobs as the place
//! they train (`jobs`); the curve a running task keeps (`curve`).

pub mod admission;
pub mod curve;
pub mod jobs;
pub mod runner;
pub mod task;
