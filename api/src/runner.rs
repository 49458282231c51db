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

use berth_agents::{AgentPolicy, Flow, Progress, Target, TrainRequest};
use berth_core::Scenario;
use berth_env::evaluate::{self, Contender, POLICIES};
use berth_env::shipped;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, doc};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use crate::prometheus::Metrics;
use crate::store::{ModelDoc, ScenarioRef, Status, Store, StoreError, TaskDevice, TaskDoc, TaskProgress};
use berth_agents::nets::DeviceKind;

/// Episodes of the evaluation stored with each model.
const EVAL_EPISODES: usize = 3;

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
    Kubernetes(Box<crate::job::JobLauncher>),
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

/// What a finished run leaves behind.
pub struct Outcome {
    model: berth_agents::SavedModel,
    log_csv: Vec<u8>,
    evaluation: serde_json::Value,
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
                    let span = crate::telemetry::training_span(&task);
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
        let renewer = tokio::spawn(renew_lease(
            self.store.clone(),
            id,
            self.owner.clone(),
            self.config.lease,
            stop.clone(),
        ));
        let ended = match &self.executor {
            Executor::Local => {
                let budget = self.config.task_memory_bytes;
                let trained = train_here(self.store.clone(), task, self.owner.clone(), stop, budget).await;
                let releasing = self.shutting_down.load(Ordering::Relaxed);
                record_end(&self.store, id, &self.owner, trained, releasing).await
            }
            Executor::Kubernetes(jobs) => {
                let follow =
                    crate::job::Follow { store: &self.store, owner: &self.owner, poll: self.config.poll };
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

/// Trains `task` on a blocking thread of this process, writing its progress as `owner`
/// every half second, until done or `stop` is raised. A task whose estimated memory is
/// over `memory_budget` bytes fails before anything of its size is allocated.
pub async fn train_here(
    store: Store,
    task: TaskDoc,
    owner: String,
    stop: Arc<AtomicBool>,
    memory_budget: u64,
) -> Result<Outcome, TaskError> {
    let (id, handle, span) = (task.id, tokio::runtime::Handle::current(), tracing::Span::current());
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    let trained = tokio::task::spawn_blocking(move || {
        // The blocking thread continues the task's span: its progress events land in it.
        let _dispatch = tracing::dispatcher::set_default(&dispatch);
        let _entered = span.enter();
        let mut last_write = Instant::now() - Duration::from_secs(1);
        execute(&task, memory_budget, &mut |p: Progress| {
            if last_write.elapsed() >= Duration::from_millis(500) || p.step == p.total {
                last_write = Instant::now();
                // For the trace (an event of the task's span), not the log: see telemetry.
                tracing::info!(
                    target: crate::telemetry::PROGRESS,
                    step = p.step,
                    total = p.total,
                    sps = p.sps,
                    recent_return = p.recent_return,
                    "progress"
                );
                let progress =
                    TaskProgress { step: p.step, total: p.total, recent_return: p.recent_return, sps: p.sps };
                if let Err(e) = handle.block_on(store.set_progress(id, &owner, &progress)) {
                    tracing::warn!("task {id}: writing progress: {e}");
                }
            }
            if stop.load(Ordering::Relaxed) { Flow::Stop } else { Flow::Continue }
        })
    })
    .await;
    trained.unwrap_or_else(|panic| {
        // The panic's text is for the log; the task's error says only that it crashed.
        tracing::error!("task {id}: training crashed: {panic}");
        Err(TaskError::Crashed)
    })
}

/// Records how a run of task `id` held by `owner` ended: the model stored and the task
/// completed, cancelled, failed, or (`releasing`: the process is stopping) handed back to
/// the queue. Returns the final status.
pub async fn record_end(
    store: &Store,
    id: ObjectId,
    owner: &str,
    trained: Result<Outcome, TaskError>,
    releasing: bool,
) -> Result<Status, StoreError> {
    match trained {
        Ok(outcome) => complete(store, id, owner, outcome).await.map(|()| Status::Completed),
        Err(TaskError::Train(berth_agents::Error::Cancelled { .. })) if releasing => {
            store.release(id, owner).await.map(|()| Status::Cancelled)
        }
        Err(TaskError::Train(berth_agents::Error::Cancelled { step })) => store
            .finish(id, owner, Status::Cancelled, doc! {"note": format!("stopped at step {step}")})
            .await
            .map(|_| Status::Cancelled),
        Err(e) => store
            .finish(id, owner, Status::Failed, doc! {"error": e.to_string()})
            .await
            .map(|_| Status::Failed),
    }
}

/// Attempts at storing a finished task's model before the task is left to its lease.
const STORE_ATTEMPTS: u32 = 8;

/// Stores the model, its log and evaluation, then marks the task completed, retrying with
/// backoff (0.5 s doubling to 8 s) while the database fails: the lease is still renewed
/// meanwhile, so a trained model is not lost to a database restart.
async fn complete(store: &Store, id: ObjectId, owner: &str, outcome: Outcome) -> Result<(), StoreError> {
    let mut wait = Duration::from_millis(500);
    for attempt in 1.. {
        match store_outcome(store, id, owner, &outcome).await {
            Err(e) if attempt < STORE_ATTEMPTS => {
                tracing::warn!("task {id}: storing its model (attempt {attempt}): {e}; retrying in {wait:?}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(8));
            }
            done => return done,
        }
    }
    unreachable!("the loop returns")
}

/// One attempt of [`complete`]. The model's id is the task's, so an attempt after one that
/// stored the model finds it instead of storing a twin; files an attempt left without a
/// model are removed first.
async fn store_outcome(
    store: &Store,
    id: ObjectId,
    owner: &str,
    outcome: &Outcome,
) -> Result<(), StoreError> {
    let Some(task) = store.task(id).await? else { return Ok(()) };
    let (weights_name, log_name) = (format!("{id}/model.bin"), format!("{id}/log.csv"));
    let model = match store.model(id).await? {
        Some(stored) => stored,
        None => {
            store.delete_files_named(&weights_name).await?;
            store.delete_files_named(&log_name).await?;
            let header = &outcome.model.header;
            let bytes = outcome.model.to_bytes();
            let weights_file = store.put_file(&weights_name, &bytes).await?;
            let log_file = store.put_file(&log_name, &outcome.log_csv).await?;
            let model = ModelDoc {
                id,
                kind: header.agent,
                status: "ready".into(),
                task_id: Some(id),
                // With its spec, so a model of an inline scenario can still be deployed.
                scenario: task.scenario,
                trained_steps: header.trained_steps,
                seed: header.seed,
                hyperparameters: header.config.clone(),
                observation_len: header.observation_len as u64,
                action_count: header.action_count as u64,
                evaluation: outcome.evaluation.clone(),
                weights_file,
                weights_bytes: bytes.len() as u64,
                created_at: DateTime::now(),
                log_file: Some(log_file),
            };
            if store.insert_model(&model).await? {
                model
            } else {
                // An earlier attempt's insert went through after all: keep that one.
                store.delete_file(weights_file).await?;
                store.delete_file(log_file).await?;
                store.model(id).await?.unwrap_or(model)
            }
        }
    };
    let done = store
        .finish(id, owner, Status::Completed, doc! {"model_id": model.id, "log_file": model.log_file})
        .await?;
    if !done {
        // Cancelled or taken over while the model was being stored: no task points at
        // this model or log, so they go rather than linger unowned.
        store.delete_model(model.id).await?;
        if let Some(log) = model.log_file {
            store.delete_file(log).await?;
        }
    }
    Ok(())
}

/// Renews the lease every third of its length; flags the task to stop when the claim is
/// lost (a cancel from any replica, or a takeover).
async fn renew_lease(store: Store, id: ObjectId, owner: String, lease: Duration, stop: Arc<AtomicBool>) {
    loop {
        tokio::time::sleep(lease / 3).await;
        match store.renew(id, &owner, lease).await {
            Ok(true) => {}
            Ok(false) => {
                stop.store(true, Ordering::Relaxed);
                return;
            }
            Err(e) => tracing::warn!("task {id}: renewing its lease: {e}"),
        }
    }
}

/// Why a task failed.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// Its scenario no longer loads.
    #[error("scenario: {0}")]
    Scenario(String),
    /// Training or evaluation failed.
    #[error(transparent)]
    Train(#[from] berth_agents::Error),
    /// The evaluation failed.
    #[error("evaluation: {0}")]
    Eval(#[from] berth_env::Error),
    /// The task is over a limit of this service (its memory estimate, a size).
    #[error("{0}")]
    Refused(#[from] crate::admission::Refusal),
    /// The training thread panicked (the detail is in the service's log).
    #[error("training crashed; the service's log has the detail")]
    Crashed,
}

/// The scenario a task names: its inline spec, or a shipped one.
pub fn resolve_scenario(scenario: &ScenarioRef) -> Result<Arc<Scenario>, String> {
    match &scenario.spec {
        Some(spec) => Scenario::from_yaml(spec).map(Arc::new).map_err(|e| e.to_string()),
        None => shipped::shipped(&scenario.name).ok_or_else(|| {
            let names: Vec<&str> = shipped::SHIPPED.iter().map(|(n, _)| *n).collect();
            format!("`{}` is not a shipped scenario ({})", scenario.name, names.join(", "))
        }),
    }
}

/// Trains the task's agent and evaluates it beside the baselines and the oracle, once it
/// passes the admission checks within `memory_budget` bytes.
fn execute(
    task: &TaskDoc,
    memory_budget: u64,
    progress: &mut dyn FnMut(Progress) -> Flow,
) -> Result<Outcome, TaskError> {
    let scenario = resolve_scenario(&task.scenario).map_err(TaskError::Scenario)?;
    let shape = crate::admission::TaskShape {
        agent: task.agent,
        scenario: &scenario,
        steps: task.steps,
        hyperparameters: &task.hyperparameters,
    };
    crate::admission::admit(&shape, memory_budget)?;
    let request = TrainRequest {
        agent: task.agent,
        target: Target::Placement(scenario.clone()),
        steps: task.steps,
        seed: task.seed,
        hyperparameters: task.hyperparameters.clone(),
        device: task.device.into(),
    };
    let trained = berth_agents::train(&request, progress)?;
    Ok(Outcome {
        model: trained.model,
        log_csv: trained.log.csv_bytes(),
        evaluation: evaluate_agent(&scenario, trained.agent)?,
    })
}

/// The agent's evaluation beside the baselines and the oracle, as stored with a model.
pub fn evaluate_agent(
    scenario: &Arc<Scenario>,
    agent: Box<dyn berth_agents::Agent>,
) -> Result<serde_json::Value, berth_env::Error> {
    let mut contenders: Vec<Contender> =
        POLICIES.iter().map(|p| Contender::named(p)).collect::<Result<_, _>>()?;
    contenders.push(Contender::Policy(Box::new(AgentPolicy::new(agent))));
    let (rows, _) =
        evaluate::compare(scenario.clone(), contenders, EVAL_EPISODES, scenario.seed, &mut || {})?;
    Ok(serde_json::to_value(rows).expect("rows serialise"))
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
