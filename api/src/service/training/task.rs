//! One training task's life in this process: train it on a blocking thread (after the
//! admission checks), evaluate the agent beside the baselines and the oracle, and record how
//! it ended, storing its model with retries. The runner and a Job's `berth train --task`
//! both run tasks through here.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use berth_agents::{AgentPolicy, Flow, Progress, Target, TrainRequest};
use berth_core::Scenario;
use berth_env::evaluate::{self, Contender, default_policies};
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, doc};

use crate::service::scenario::resolve_scenario;
use crate::service::training::curve::Curve;
use crate::store::{ModelDoc, Status, Store, StoreError, TaskDoc, TaskProgress};

/// Episodes of the evaluation stored with each model.
const EVAL_EPISODES: usize = 3;

/// What a finished run leaves behind.
pub struct Outcome {
    model: berth_agents::SavedModel,
    log_csv: Vec<u8>,
    evaluation: serde_json::Value,
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
        let mut curve = Curve::default();
        let trained = execute(&task, memory_budget, &mut |p: Progress| {
            curve.observe(p.step, p.recent_return, p.losses);
            if last_write.elapsed() >= Duration::from_millis(500) || p.step == p.total {
                last_write = Instant::now();
                // For the trace (an event of the task's span), not the log: see telemetry.
                tracing::info!(
                    target: crate::infra::telemetry::PROGRESS,
                    step = p.step,
                    total = p.total,
                    sps = p.sps,
                    recent_return = p.recent_return,
                    "progress"
                );
                let progress = TaskProgress {
                    step: p.step,
                    total: p.total,
                    recent_return: p.recent_return,
                    sps: p.sps,
                    curve: curve.points().to_vec(),
                };
                if let Err(e) = handle.block_on(store.set_progress(id, &owner, &progress)) {
                    tracing::warn!("task {id}: writing progress: {e}");
                }
            }
            if stop.load(Ordering::Relaxed) { Flow::Stop } else { Flow::Continue }
        });
        // What the run freed goes back to the system, not held for the next task.
        crate::infra::allocator::return_freed_memory();
        trained
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
    let (mut attempt, mut wait) = (1, Duration::from_millis(500));
    loop {
        match store_outcome(store, id, owner, &outcome).await {
            Err(e) if attempt < STORE_ATTEMPTS => {
                tracing::warn!("task {id}: storing its model (attempt {attempt}): {e}; retrying in {wait:?}");
                tokio::time::sleep(wait).await;
                (attempt, wait) = (attempt + 1, (wait * 2).min(Duration::from_secs(8)));
            }
            done => return done,
        }
    }
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
    Refused(#[from] crate::service::training::admission::Refusal),
    /// The training thread panicked (the detail is in the service's log).
    #[error("training crashed; the service's log has the detail")]
    Crashed,
}

/// Trains the task's agent and evaluates it beside the baselines and the oracle, once it
/// passes the admission checks within `memory_budget` bytes.
fn execute(
    task: &TaskDoc,
    memory_budget: u64,
    progress: &mut dyn FnMut(Progress) -> Flow,
) -> Result<Outcome, TaskError> {
    let scenario = resolve_scenario(&task.scenario).map_err(TaskError::Scenario)?;
    let shape = crate::service::training::admission::TaskShape {
        agent: task.agent,
        scenario: &scenario,
        steps: task.steps,
        hyperparameters: &task.hyperparameters,
    };
    crate::service::training::admission::admit(&shape, memory_budget)?;
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
        default_policies().into_iter().map(Contender::named).collect::<Result<_, _>>()?;
    contenders.push(Contender::Policy(Box::new(AgentPolicy::new(agent))));
    let (rows, _) = evaluate::compare(
        scenario.clone(),
        contenders,
        EVAL_EPISODES,
        scenario.seed,
        evaluate::DayStart::Fresh,
        &mut || {},
    )?;
    Ok(serde_json::to_value(rows).expect("rows serialise"))
}
