//! The training task runner: a bounded pool that claims queued tasks from the store, trains
//! them on blocking threads, writes their progress, and stores what they trained.
//!
//! Claims are atomic in MongoDB and held by a lease the runner renews, so several replicas
//! of the service can share the queue, and tasks of a runner that died are taken over when
//! its lease runs out (see [`Store::recover_expired`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mongodb::bson::oid::ObjectId;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use crate::infra::lease::keep_renewed;
use crate::infra::metrics::Metrics;
use crate::service::training::task::{record_end, train_here};
use crate::store::{Store, TaskDevice, TaskDoc};
use berth_agents::nets::DeviceKind;

/// How the runner behaves.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Tasks trained at once; the rest wait in the queue.
    pub workers: usize,
    /// How long a claim holds without renewal; renewed every third of it.
    pub lease: Duration,
    /// How often an idle runner looks for work it was not told about (other replicas'
    /// tasks, expired leases).
    pub poll: Duration,
    /// Estimated memory one task may take, bytes (`--task-memory-mib`).
    pub task_memory_bytes: u64,
}

/// The default per-task memory budget, MiB.
pub const DEFAULT_TASK_MEMORY_MIB: u64 = 4096;

/// Where tasks train.
#[derive(Clone)]
pub enum Executor {
    /// On this process's blocking threads.
    Local,
    /// In a Kubernetes Job per task, which writes its progress and outcome to the store itself.
    Kubernetes(Box<crate::service::training::jobs::JobLauncher>),
}

/// The pool.
pub struct Runner {
    store: Store,
    executor: Executor,
    metrics: Arc<Metrics>,
    config: RunnerConfig,
    /// This process's name in task claims.
    owner: String,
    slots: Arc<Semaphore>,
    wake: Notify,
    /// Stop flags of the tasks this process is training.
    running: Mutex<HashMap<ObjectId, Arc<AtomicBool>>>,
    shutting_down: AtomicBool,
}

impl Runner {
    /// A runner over `store`; call [`Runner::start`] to begin claiming.
    pub fn new(store: Store, executor: Executor, config: RunnerConfig, metrics: Arc<Metrics>) -> Arc<Self> {
        let owner = replica_id();
        Arc::new(Self {
            executor,
            slots: Arc::new(Semaphore::new(config.workers.max(1))),
            store,
            metrics,
            config,
            owner,
            wake: Notify::new(),
            running: Mutex::new(HashMap::new()),
            shutting_down: AtomicBool::new(false),
        })
    }

    /// Whether tasks for `device` can train here: `Err` says why not.
    pub fn can_train_on(&self, device: TaskDevice) -> Result<(), String> {
        match (&self.executor, device) {
            (_, TaskDevice::Cpu) => Ok(()),
            (Executor::Kubernetes(jobs), TaskDevice::Cuda) if jobs.gpu_image.is_some() => Ok(()),
            (Executor::Kubernetes(_), TaskDevice::Cuda) => {
                Err("cuda: this service's Jobs have no GPU image (--job-gpu-image, a `tch` build)".into())
            }
            (Executor::Local, TaskDevice::Cuda) => {
                berth_agents::nets::Devices::select(DeviceKind::Cuda).map(drop).map_err(|_| {
                    "cuda: this service trains in-process without LibTorch; build it with `--features tch`, \
                     or run Jobs with --executor kubernetes and --job-gpu-image"
                        .into()
                })
            }
        }
    }

    /// Estimated memory one task may take, bytes.
    pub fn task_memory_bytes(&self) -> u64 {
        self.config.task_memory_bytes
    }

    /// Starts the claim loop.
    pub fn start(self: &Arc<Self>) {
        tokio::spawn(self.clone().claim_loop());
    }

    /// Tells an idle runner there may be work.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops a task this process is training, if it is; other replicas see the store's
    /// `cancel_requested` when they renew their lease.
    pub fn stop_local(&self, id: ObjectId) {
        if let Some(flag) = self.running.lock().expect("runner lock").get(&id) {
            flag.store(true, Ordering::Relaxed);
        }
    }

    /// Stops every running task and hands it back to the queue; waits up to `wait`.
    pub async fn shutdown(&self, wait: Duration) {
        self.shutting_down.store(true, Ordering::Relaxed);
        for flag in self.running.lock().expect("runner lock").values() {
            flag.store(true, Ordering::Relaxed);
        }
        let deadline = Instant::now() + wait;
        while !self.running.lock().expect("runner lock").is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn claim_loop(self: Arc<Self>) {
        loop {
            let Ok(permit) = self.slots.clone().acquire_owned().await else { return };
            if self.shutting_down.load(Ordering::Relaxed) {
                return;
            }
            match self.store.recover_expired().await {
                Ok((0, 0)) => {}
                Ok((requeued, interrupted)) => {
                    tracing::warn!(
                        "{requeued} task(s) re-queued, {interrupted} interrupted after their runner stopped"
                    )
                }
                Err(e) => tracing::warn!("recovering tasks: {e}"),
            }
            match self.store.claim_next(&self.owner, self.config.lease).await {
                Ok(Some(task)) => {
                    let span = crate::infra::telemetry::training_span(&task);
                    tokio::spawn(self.clone().run(task, permit).instrument(span));
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("claiming a task: {e}"),
            }
            drop(permit);
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.config.poll) => {}
            }
        }
    }

    async fn run(self: Arc<Self>, task: TaskDoc, _permit: OwnedSemaphorePermit) {
        let (id, agent, started) = (task.id, task.agent, Instant::now());
        let stop = Arc::new(AtomicBool::new(false));
        self.running.lock().expect("runner lock").insert(id, stop.clone());
        // A lost claim (a cancel from any replica, or a takeover) stops the run.
        let (store, owner, lease) = (self.store.clone(), self.owner.clone(), self.config.lease);
        let renewer = keep_renewed(lease, format!("task {id}"), stop.clone(), move || {
            let (store, owner) = (store.clone(), owner.clone());
            async move { store.renew(id, &owner, lease).await }
        });
        let ended = match &self.executor {
            Executor::Local => {
                let budget = self.config.task_memory_bytes;
                let trained = train_here(self.store.clone(), task, self.owner.clone(), stop, budget).await;
                let releasing = self.shutting_down.load(Ordering::Relaxed);
                record_end(&self.store, id, &self.owner, trained, releasing).await
            }
            Executor::Kubernetes(jobs) => {
                let follow = crate::service::training::jobs::Follow {
                    store: &self.store,
                    owner: &self.owner,
                    poll: self.config.poll,
                };
                jobs.run(&follow, &task, &stop, &self.shutting_down).await
            }
        };
        renewer.abort();
        match ended {
            Ok(status) => self.metrics.record_training(agent.name(), status, started.elapsed().as_secs_f64()),
            // The lease runs out and the task is re-queued: not lost.
            Err(e) => tracing::warn!("task {id}: recording its end: {e}"),
        }
        self.running.lock().expect("runner lock").remove(&id);
        self.wake();
    }
}

/// A name for this process in the store's claims and locks: the host (the pod's name in a
/// cluster) and a fresh id, so a restarted replica never passes for its former self.
pub fn replica_id() -> String {
    format!("{}-{}", hostname(), ObjectId::new().to_hex())
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "berth".into())
}
