//! The MongoDB store: training tasks, trained models (weights and logs in GridFS), and the
//! atomic claims and leases that let several service replicas share one queue and take
//! turns at changing the cluster.
//!
//! Only the standard driver is used, so any MongoDB-wire server works.

use std::time::Duration;

use berth_agents::AgentKind;
use futures_util::{AsyncReadExt, AsyncWriteExt, TryStreamExt};
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{self, Bson, DateTime, Document, doc};
use mongodb::options::{Acknowledgment, DatabaseOptions, ReturnDocument, WriteConcern};
use mongodb::{Client, Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

pub use snapshot::Snapshot;

pub mod backup;
pub mod snapshot;

/// Store errors: the database's own, or a document that does not read back.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The server refused or could not be reached.
    #[error("database: {0}")]
    Database(#[from] mongodb::error::Error),
    /// A value could not become BSON.
    #[error("encoding a document: {0}")]
    Encode(#[from] bson::ser::Error),
    /// A GridFS file could not be written or read.
    #[error("file storage: {0}")]
    Io(#[from] std::io::Error),
}

/// Store results.
pub type StoreResult<T> = Result<T, StoreError>;

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Queued.
    Pending,
    /// Claimed by a runner.
    Running,
    /// Trained; `model_id` names the model.
    Completed,
    /// Training failed; `error` says why.
    Failed,
    /// Cancelled by a user.
    Cancelled,
    /// Its runner stopped too often while running it; `error` says why.
    Interrupted,
}

impl Status {
    /// Every status, for messages.
    pub const ALL: [Status; 6] =
        [Self::Pending, Self::Running, Self::Completed, Self::Failed, Self::Cancelled, Self::Interrupted];

    /// The name in documents and URLs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
        }
    }

    /// A status by name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether the task will not change any more.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending | Self::Running)
    }
}

/// The scenario a task trains on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioRef {
    /// The scenario's name.
    pub name: String,
    /// The spec (YAML or JSON) for inline scenarios; shipped ones are found by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<String>,
    /// FNV-1a 64 of the spec text, in hex: two models with the same fingerprint were
    /// trained on the same cluster and traffic.
    pub fingerprint: String,
}

/// Where a running task is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskProgress {
    /// Environment steps done.
    pub step: u64,
    /// Steps the run will take.
    pub total: u64,
    /// Return of the last finished episode.
    pub recent_return: Option<f64>,
    /// Environment steps per second.
    pub sps: f64,
    /// Episodic returns so far, thinned to a bounded set (tasks stored before curves: none).
    #[serde(default)]
    pub curve: Vec<CurvePoint>,
}

/// One point of a running task's learning curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// The step at which the episode ended.
    pub step: u64,
    /// Its return.
    pub episodic_return: f64,
    /// The latest update's TD loss (Q-learning, DQN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub td_loss: Option<f64>,
    /// The latest update's policy loss (PPO).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_loss: Option<f64>,
    /// The latest update's value loss (PPO).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_loss: Option<f64>,
}

/// A training task as stored in `tasks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDoc {
    /// Id.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// Algorithm.
    pub agent: AgentKind,
    /// What it trains on.
    pub scenario: ScenarioRef,
    /// Environment steps; `None` for the agent's default budget.
    pub steps: Option<u64>,
    /// Seed of the run.
    pub seed: u64,
    /// Overrides of the agent's hyperparameters (a JSON object).
    pub hyperparameters: serde_json::Value,
    /// Where it stands.
    pub status: Status,
    /// Who asked for it (the token's `sub`).
    pub created_by: String,
    /// When it was queued.
    pub created_at: DateTime,
    /// When a runner last started it.
    pub started_at: Option<DateTime>,
    /// When it reached a final status.
    pub finished_at: Option<DateTime>,
    /// Progress while running.
    pub progress: Option<TaskProgress>,
    /// The trained model, once completed.
    pub model_id: Option<ObjectId>,
    /// Why it failed or was interrupted.
    pub error: Option<String>,
    /// What happened to it besides its status (a re-queue after a restart).
    pub note: Option<String>,
    /// The runner holding it.
    pub owner: Option<String>,
    /// Until when the owner's claim holds unless renewed.
    pub lease_until: Option<DateTime>,
    /// How many times a runner started it.
    pub attempts: u32,
    /// A user asked to cancel it while it ran.
    pub cancel_requested: bool,
    /// The training log (CSV) in GridFS, once completed.
    pub log_file: Option<ObjectId>,
    /// Where it trains (tasks stored before devices existed: the CPU).
    #[serde(default)]
    pub device: TaskDevice,
}

/// Where a task trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskDevice {
    /// The CPU.
    #[default]
    Cpu,
    /// A CUDA GPU (LibTorch: a `tch` build).
    Cuda,
}

impl From<TaskDevice> for berth_agents::nets::DeviceKind {
    fn from(device: TaskDevice) -> Self {
        match device {
            TaskDevice::Cpu => Self::Cpu,
            TaskDevice::Cuda => Self::Cuda,
        }
    }
}

/// A trained model as stored in `models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelDoc {
    /// Id.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// Algorithm (`type` so the `models{type,status}` index serves "ready PPO models").
    #[serde(rename = "type")]
    pub kind: AgentKind,
    /// `ready`.
    pub status: String,
    /// The task that trained it; `None` for a model uploaded from a run of `berth train`.
    #[serde(default)]
    pub task_id: Option<ObjectId>,
    /// The scenario it was trained on.
    pub scenario: ScenarioRef,
    /// Environment steps it trained for.
    pub trained_steps: u64,
    /// Seed of the run.
    pub seed: u64,
    /// The full hyperparameters it trained with.
    pub hyperparameters: serde_json::Value,
    /// Observation length it acts on.
    pub observation_len: u64,
    /// Number of actions it chooses from.
    pub action_count: u64,
    /// Rows of the comparison with the baselines and the oracle, this model last.
    pub evaluation: serde_json::Value,
    /// The saved model file (`berth-model v1`) in GridFS.
    pub weights_file: ObjectId,
    /// Its size in bytes.
    pub weights_bytes: u64,
    /// When it was stored.
    pub created_at: DateTime,
    /// The training log (CSV) in GridFS, for a model of a task (stored with the model, so a
    /// retried completion finds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_file: Option<ObjectId>,
}

/// A request's `Idempotency-Key`, kept in `idempotency` with the task it created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyDoc {
    /// The caller's subject and the key, so two callers' keys never meet.
    #[serde(rename = "_id")]
    pub key: String,
    /// The task the first request with this key created.
    pub task_id: ObjectId,
    /// A fingerprint of that request, to refuse the key's reuse for another one.
    pub request: String,
    /// When the key was first used.
    pub created_at: DateTime,
}

/// One move of a deploy's plan, in the cluster's names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedMoveDoc {
    /// The replica's Deployment.
    pub deployment: String,
    /// Its service.
    pub service: String,
    /// Its index within the service.
    pub replica: u32,
    /// The node it runs on before.
    pub from: String,
    /// The node it is moved to.
    pub to: String,
    /// The GPU resource its pods ask for before (`nvidia.com/gpu`, a MIG profile's), for a
    /// replica with GPUs: a move back asks for it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_from: Option<String>,
    /// The GPU resource they ask for after: the slot the replica takes on `to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_to: Option<String>,
}

/// One thing a deploy did to the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployStepDoc {
    /// `move` (the plan) or `rollback` (undoing it).
    pub action: String,
    /// The Deployment.
    pub deployment: String,
    /// The node it was sent to.
    pub to: String,
    /// The GPU resource it was made to ask for there, where the step changed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
    /// Whether its pod became Ready there in time.
    pub ok: bool,
    /// Seconds from the patch to Ready (or to the failure).
    pub took_s: f64,
    /// What went wrong.
    pub error: Option<String>,
    /// When it finished.
    pub at: DateTime,
}

/// Where a deployment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentStatus {
    /// A dry run: planned, nothing moved.
    Planned,
    /// Moves are being made (or, continuous, rounds are running).
    Running,
    /// Every move was made.
    Succeeded,
    /// A move failed and the moves made were undone.
    RolledBack,
    /// A move back failed too: the cluster needs a look.
    Failed,
    /// A continuous deployment stopped, on request or when a round could not be planned.
    Stopped,
}

impl DeploymentStatus {
    /// Every status, for messages and counts.
    pub const ALL: [Self; 6] =
        [Self::Planned, Self::Running, Self::Succeeded, Self::RolledBack, Self::Failed, Self::Stopped];

    /// The name in documents and URLs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Planned => "planned",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::RolledBack => "rolled_back",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
        }
    }

    /// A status by name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// A deploy of a model: its plan, every step, the outcome, and latency before and after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentDoc {
    /// Id.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// The model deployed.
    pub model_id: ObjectId,
    /// The namespace of the placed services.
    pub namespace: String,
    /// Planned only: nothing was moved.
    pub dry_run: bool,
    /// Where it stands.
    pub status: DeploymentStatus,
    /// The moves, in order.
    pub plan: Vec<PlannedMoveDoc>,
    /// What was done, in order.
    pub steps: Vec<DeployStepDoc>,
    /// The cost model's mean latency at the live placement, ms.
    pub latency_before_ms: f64,
    /// The same at the planned placement, ms (a prediction).
    pub latency_planned_ms: f64,
    /// The same at the placement read back from the cluster when the deploy ended, ms.
    pub latency_after_ms: Option<f64>,
    /// Why it failed or was rolled back.
    pub error: Option<String>,
    /// Who asked.
    pub requested_by: String,
    /// When.
    pub created_at: DateTime,
    /// When it ended.
    pub finished_at: Option<DateTime>,
    /// Continuous mode: re-planned and applied every `interval_s` until stopped.
    #[serde(default)]
    pub continuous: Option<ContinuousDoc>,
    /// A user asked this continuous deployment to stop.
    #[serde(default)]
    pub stop_requested: bool,
    /// Where in `steps` the current `plan`'s steps begin (in continuous mode, the last round's).
    #[serde(default)]
    pub plan_first_step: u32,
    /// What the shield weighed for the current plan (absent on deployments planned before it).
    #[serde(default)]
    pub shield: Option<ShieldDoc>,
    /// The cluster's nodes the planning scenario did not hold, that the plan could use (a
    /// model that fits any cluster plans on the live node list).
    #[serde(default)]
    pub nodes_added: Vec<String>,
    /// The cluster's nodes the plan could not use, each as `name: reason`.
    #[serde(default)]
    pub nodes_left_out: Vec<String>,
}

/// The shield's choice for a plan: which candidate it applied, and the simulated cost of each
/// (the summed cost over twice the plan's horizon, lower is better).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShieldDoc {
    /// `policy`, `greedy`, `lookahead` or `keep`.
    pub applied: String,
    /// The model's own plan.
    pub policy_cost: f64,
    /// `greedy`'s plan.
    pub greedy_cost: f64,
    /// The `lookahead` baseline's plan (`None` in deployments recorded before the shield
    /// weighed it).
    #[serde(default)]
    pub lookahead_cost: Option<f64>,
    /// Keeping the placement.
    pub keep_cost: f64,
    /// Services with every replica on one node after the model's plan, `greedy`'s and
    /// keeping (0 in deployments recorded before the shield counted them).
    #[serde(default)]
    pub lone_services: LoneServicesDoc,
}

/// Services with every replica on one node after each of the shield's candidates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoneServicesDoc {
    /// After the model's plan.
    pub policy: u32,
    /// After `greedy`'s plan.
    pub greedy: u32,
    /// After `lookahead`'s plan (0 in deployments recorded before the shield weighed it).
    #[serde(default)]
    pub lookahead: u32,
    /// Keeping the placement.
    pub keep: u32,
}

impl From<[usize; 4]> for LoneServicesDoc {
    /// From the counts in the shield's order: the policy's plan, `greedy`'s, `lookahead`'s,
    /// keeping.
    fn from([policy, greedy, lookahead, keep]: [usize; 4]) -> Self {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Self { policy: count(policy), greedy: count(greedy), lookahead: count(lookahead), keep: count(keep) }
    }
}

/// A continuous deployment's settings and how far it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContinuousDoc {
    /// Seconds between the end of one round and the next plan.
    pub interval_s: f64,
    /// Rounds planned so far (the first included).
    pub rounds: u32,
}

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items, newest first.
    pub items: Vec<T>,
    /// The cursor of the next page, if there is one.
    pub next: Option<ObjectId>,
}

/// How often a task may be started before a restart marks it interrupted instead.
pub const MAX_ATTEMPTS: u32 = 3;

/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);

/// How many servers must have a write, journaled, before the service acknowledges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// A majority of the replica set (a standalone server: itself).
    Majority,
    /// This many members.
    Members(u32),
}

impl Durability {
    /// `majority` or a member count of at least 1.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "majority" => Ok(Self::Majority),
            n => match n.parse::<u32>() {
                Ok(n) if n >= 1 => Ok(Self::Members(n)),
                _ => Err(format!("`{text}` is neither `majority` nor a member count of at least 1")),
            },
        }
    }

    /// The write concern: these members, with the write in their journal.
    fn write_concern(self) -> WriteConcern {
        let w = match self {
            Self::Majority => Acknowledgment::Majority,
            Self::Members(n) => Acknowledgment::Nodes(n),
        };
        WriteConcern::builder().w(w).journal(true).build()
    }
}

/// The database and its collections.
#[derive(Clone)]
pub struct Store {
    db: Database,
    idempotency: Collection<IdempotencyDoc>,
    tasks: Collection<TaskDoc>,
    models: Collection<ModelDoc>,
    metrics: Collection<Snapshot>,
    deployments: Collection<DeploymentDoc>,
    locks: Collection<LockDoc>,
}

/// A leased lock: who holds it, until when, and for what. Its `_id` names what it guards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockDoc {
    /// What it guards, e.g. `deploy/<namespace>`.
    #[serde(rename = "_id")]
    pub name: String,
    /// The holder (a service replica's runner id).
    pub owner: String,
    /// The deployment it is held for.
    pub deployment: ObjectId,
    /// It lapses unless renewed by then.
    pub lease_until: DateTime,
}

/// MongoDB's duplicate-key error: the document a racing upsert wanted to insert exists.
fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match &*error.kind {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == 11000,
        ErrorKind::Command(e) => e.code == 11000,
        _ => false,
    }
}

fn now() -> DateTime {
    DateTime::now()
}

/// Inserts `document`; `false` if one with its `_id` is stored already (a retry or a
/// racing twin), which callers treat as done rather than as an error.
async fn insert_new<T: Serialize + Send + Sync>(
    collection: &Collection<T>,
    document: &T,
) -> StoreResult<bool> {
    match collection.insert_one(document).await {
        Ok(_) => Ok(true),
        Err(e) if is_duplicate_key(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn after(d: Duration) -> DateTime {
    DateTime::from_millis(now().timestamp_millis() + d.as_millis() as i64)
}

impl Store {
    /// Connects with majority, journaled writes and creates the indexes (idempotent): the
    /// tests' store.
    #[cfg(test)]
    pub async fn connect(uri: &str, database: &str) -> StoreResult<Self> {
        Self::connect_with(uri, database, Durability::Majority).await
    }

    /// Connects with writes acknowledged once `durability` holds, and creates the indexes.
    pub async fn connect_with(uri: &str, database: &str, durability: Durability) -> StoreResult<Self> {
        let client = Client::with_uri_str(uri).await?;
        let options = DatabaseOptions::builder().write_concern(durability.write_concern()).build();
        let db = client.database_with_options(database, options);
        let store = Self {
            idempotency: db.collection("idempotency"),
            tasks: db.collection("tasks"),
            models: db.collection("models"),
            metrics: db.collection("metrics"),
            deployments: db.collection("deployments"),
            locks: db.collection("locks"),
            db,
        };
        store.create_indexes().await?;
        Ok(store)
    }

    async fn create_indexes(&self) -> StoreResult<()> {
        let index = |keys: Document| IndexModel::builder().keys(keys).build();
        self.tasks.create_index(index(doc! {"status": 1})).await?;
        self.models.create_index(index(doc! {"type": 1, "status": 1})).await?;
        self.metrics.create_index(index(doc! {"timestamp": 1})).await?;
        self.deployments.create_index(index(doc! {"model_id": 1})).await?;
        self.idempotency.create_index(index(doc! {"created_at": 1})).await?;
        Ok(())
    }

    /// The database itself, for backups.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Whether the server answers.
    pub async fn ping(&self) -> StoreResult<()> {
        self.db.run_command(doc! {"ping": 1}).await?;
        Ok(())
    }

    /// Queues a task; `false` if a task with its id is stored already (a retried request).
    pub async fn insert_task(&self, task: &TaskDoc) -> StoreResult<bool> {
        insert_new(&self.tasks, task).await
    }

    /// Records that `key` created `task_id`, unless the key is known: then the record
    /// already stored (a retry, or a racing twin of the request). Keys older than
    /// [`IDEMPOTENCY_TTL`] are forgotten.
    pub async fn remember_key(&self, key: &IdempotencyDoc) -> StoreResult<Option<IdempotencyDoc>> {
        let oldest = DateTime::from_millis(now().timestamp_millis() - IDEMPOTENCY_TTL.as_millis() as i64);
        self.idempotency.delete_many(doc! {"created_at": {"$lt": oldest}}).await?;
        if insert_new(&self.idempotency, key).await? {
            return Ok(None);
        }
        Ok(self.idempotency.find_one(doc! {"_id": &key.key}).await?)
    }

    /// A task by id.
    pub async fn task(&self, id: ObjectId) -> StoreResult<Option<TaskDoc>> {
        Ok(self.tasks.find_one(doc! {"_id": id}).await?)
    }

    /// Tasks, newest first, optionally of one status, `limit` at a time after `cursor`.
    pub async fn tasks(
        &self,
        status: Option<Status>,
        cursor: Option<ObjectId>,
        limit: u32,
    ) -> StoreResult<Page<TaskDoc>> {
        let mut filter = doc! {};
        if let Some(status) = status {
            filter.insert("status", status.name());
        }
        page(&self.tasks, filter, cursor, limit, |t| t.id).await
    }

    /// How many tasks are in each status, for the metrics endpoint.
    pub async fn count_tasks_by_status(&self) -> StoreResult<Vec<(Status, u64)>> {
        let mut counts = Vec::with_capacity(Status::ALL.len());
        for status in Status::ALL {
            counts.push((status, self.tasks.count_documents(doc! {"status": status.name()}).await?));
        }
        Ok(counts)
    }

    /// Claims the oldest pending task for `owner` with a lease, atomically: of several
    /// runners asking at once, one gets it.
    pub async fn claim_next(&self, owner: &str, lease: Duration) -> StoreResult<Option<TaskDoc>> {
        Ok(self
            .tasks
            .find_one_and_update(
                doc! {"status": Status::Pending.name()},
                doc! {
                    "$set": {"status": Status::Running.name(), "owner": owner, "lease_until": after(lease),
                             "started_at": now(), "progress": Bson::Null},
                    "$inc": {"attempts": 1},
                },
            )
            .sort(doc! {"_id": 1})
            .return_document(ReturnDocument::After)
            .await?)
    }

    /// Renews `owner`'s lease on a running task; `false` if it is no longer theirs to run
    /// (another runner took it over, or a user cancelled it).
    pub async fn renew(&self, id: ObjectId, owner: &str, lease: Duration) -> StoreResult<bool> {
        let result = self
            .tasks
            .update_one(
                doc! {"_id": id, "owner": owner, "status": Status::Running.name(), "cancel_requested": false},
                doc! {"$set": {"lease_until": after(lease)}},
            )
            .await?;
        Ok(result.matched_count == 1)
    }

    /// Records progress of a running task held by `owner`.
    pub async fn set_progress(&self, id: ObjectId, owner: &str, progress: &TaskProgress) -> StoreResult<()> {
        self.tasks
            .update_one(
                doc! {"_id": id, "owner": owner, "status": Status::Running.name()},
                doc! {"$set": {"progress": bson::to_bson(progress)?}},
            )
            .await?;
        Ok(())
    }

    /// Ends a running task held by `owner` with a final status and whatever fields go
    /// with it; `false` if it was not theirs any more.
    pub async fn finish(
        &self,
        id: ObjectId,
        owner: &str,
        status: Status,
        fields: Document,
    ) -> StoreResult<bool> {
        let mut set = fields;
        set.insert("status", status.name());
        set.insert("finished_at", now());
        set.insert("lease_until", Bson::Null);
        let result = self
            .tasks
            .update_one(
                doc! {"_id": id, "owner": owner, "status": Status::Running.name()},
                doc! {"$set": set},
            )
            .await?;
        Ok(result.matched_count == 1)
    }

    /// Asks to cancel a task: a pending one is cancelled at once, a running one is flagged
    /// for its runner. The task as it is afterwards; `None` if there is no such task.
    pub async fn request_cancel(&self, id: ObjectId) -> StoreResult<Option<TaskDoc>> {
        self.tasks
            .update_one(
                doc! {"_id": id, "status": Status::Pending.name()},
                doc! {"$set": {"status": Status::Cancelled.name(), "finished_at": now()}},
            )
            .await?;
        self.tasks
            .update_one(
                doc! {"_id": id, "status": Status::Running.name()},
                doc! {"$set": {"cancel_requested": true}},
            )
            .await?;
        self.task(id).await
    }

    /// Tasks whose runner's lease ran out (the service was killed, or its replica died):
    /// re-queued, or marked interrupted once they have been started [`MAX_ATTEMPTS`] times,
    /// so none is left `running` forever. Returns how many of each.
    pub async fn recover_expired(&self) -> StoreResult<(u64, u64)> {
        let expired = doc! {"status": Status::Running.name(), "lease_until": {"$lt": now()}};
        let mut cancelled = expired.clone();
        cancelled.insert("cancel_requested", true);
        self.tasks
            .update_many(
                cancelled,
                doc! {"$set": {"status": Status::Cancelled.name(), "finished_at": now(), "owner": Bson::Null}},
            )
            .await?;
        let mut worn = expired.clone();
        worn.insert("attempts", doc! {"$gte": MAX_ATTEMPTS});
        let interrupted = self
            .tasks
            .update_many(
                worn,
                doc! {"$set": {
                    "status": Status::Interrupted.name(), "finished_at": now(), "owner": Bson::Null,
                    "error": format!("its runner stopped while training it, {MAX_ATTEMPTS} times"),
                }},
            )
            .await?
            .modified_count;
        let requeued = self
            .tasks
            .update_many(
                expired,
                doc! {"$set": {
                    "status": Status::Pending.name(), "owner": Bson::Null, "lease_until": Bson::Null,
                    "note": "re-queued: its runner stopped while training it",
                }},
            )
            .await?
            .modified_count;
        Ok((requeued, interrupted))
    }

    /// Hands a running task back to the queue (a graceful shutdown).
    pub async fn release(&self, id: ObjectId, owner: &str) -> StoreResult<()> {
        self.tasks
            .update_one(
                doc! {"_id": id, "owner": owner, "status": Status::Running.name()},
                doc! {"$set": {"status": Status::Pending.name(), "owner": Bson::Null, "lease_until": Bson::Null,
                               "note": "re-queued: the service stopped while training it"}},
            )
            .await?;
        Ok(())
    }

    /// Stores a file in GridFS.
    pub async fn put_file(&self, name: &str, bytes: &[u8]) -> StoreResult<ObjectId> {
        let bucket = self.db.gridfs_bucket(None);
        let mut upload = bucket.open_upload_stream(name).await?;
        upload.write_all(bytes).await?;
        upload.close().await?;
        Ok(upload.id().as_object_id().expect("GridFS ids of new files are ObjectIds"))
    }

    /// A GridFS file's bytes.
    pub async fn file(&self, id: ObjectId) -> StoreResult<Vec<u8>> {
        let bucket = self.db.gridfs_bucket(None);
        let mut download = bucket.open_download_stream(Bson::ObjectId(id)).await?;
        let mut bytes = Vec::new();
        download.read_to_end(&mut bytes).await?;
        Ok(bytes)
    }

    /// Deletes a GridFS file.
    pub async fn delete_file(&self, id: ObjectId) -> StoreResult<()> {
        self.db.gridfs_bucket(None).delete(Bson::ObjectId(id)).await?;
        Ok(())
    }

    /// Deletes every GridFS file called `name` (what an interrupted attempt left).
    pub async fn delete_files_named(&self, name: &str) -> StoreResult<()> {
        let bucket = self.db.gridfs_bucket(None);
        let files: Vec<_> = bucket.find(doc! {"filename": name}).await?.try_collect().await?;
        for file in files {
            bucket.delete(file.id).await?;
        }
        Ok(())
    }

    /// Records a cluster snapshot.
    pub async fn insert_snapshot(&self, snapshot: &Snapshot) -> StoreResult<()> {
        self.metrics.insert_one(snapshot).await?;
        Ok(())
    }

    /// Snapshots taken in `[from, to]`, oldest first, at most `limit`.
    pub async fn snapshots(&self, from: DateTime, to: DateTime, limit: u32) -> StoreResult<Vec<Snapshot>> {
        Ok(self
            .metrics
            .find(doc! {"timestamp": {"$gte": from, "$lte": to}})
            .sort(doc! {"timestamp": 1})
            .limit(i64::from(limit))
            .await?
            .try_collect()
            .await?)
    }

    /// Stores a model; `false` if one with its id is stored already.
    pub async fn insert_model(&self, model: &ModelDoc) -> StoreResult<bool> {
        insert_new(&self.models, model).await
    }

    /// A model by id.
    pub async fn model(&self, id: ObjectId) -> StoreResult<Option<ModelDoc>> {
        Ok(self.models.find_one(doc! {"_id": id}).await?)
    }

    /// Models, newest first, optionally of one agent.
    pub async fn models(
        &self,
        kind: Option<AgentKind>,
        cursor: Option<ObjectId>,
        limit: u32,
    ) -> StoreResult<Page<ModelDoc>> {
        let mut filter = doc! {};
        if let Some(kind) = kind {
            filter.insert("type", kind.name());
        }
        page(&self.models, filter, cursor, limit, |m| m.id).await
    }

    /// Deletes a model and its weights; `false` if there was none.
    pub async fn delete_model(&self, id: ObjectId) -> StoreResult<bool> {
        let Some(model) = self.models.find_one_and_delete(doc! {"_id": id}).await? else {
            return Ok(false);
        };
        self.delete_file(model.weights_file).await?;
        Ok(true)
    }
}

impl Store {
    /// Stores a new deployment.
    pub async fn insert_deployment(&self, deployment: &DeploymentDoc) -> StoreResult<()> {
        self.deployments.insert_one(deployment).await?;
        Ok(())
    }

    /// Writes a deployment's new state over the old, all but `stop_requested`, which only
    /// [`Store::request_stop`] sets (a stop asked of another replica is not overwritten).
    pub async fn save_deployment(&self, deployment: &DeploymentDoc) -> StoreResult<()> {
        let mut fields = bson::to_document(deployment)?;
        fields.remove("_id");
        fields.remove("stop_requested");
        self.deployments.update_one(doc! {"_id": deployment.id}, doc! {"$set": fields}).await?;
        Ok(())
    }

    /// Asks a running continuous deployment to stop; the deployment as it is afterwards, or
    /// `None` if there is none with that id.
    pub async fn request_stop(&self, id: ObjectId) -> StoreResult<Option<DeploymentDoc>> {
        self.deployments
            .update_one(
                doc! {"_id": id, "status": DeploymentStatus::Running.name(), "continuous": {"$ne": Bson::Null}},
                doc! {"$set": {"stop_requested": true}},
            )
            .await?;
        self.deployment(id).await
    }

    /// A deployment by id.
    pub async fn deployment(&self, id: ObjectId) -> StoreResult<Option<DeploymentDoc>> {
        Ok(self.deployments.find_one(doc! {"_id": id}).await?)
    }

    /// How many deployments have each [`DeploymentStatus`].
    pub async fn count_deployments_by_status(&self) -> StoreResult<Vec<(&'static str, u64)>> {
        let mut counts = Vec::with_capacity(DeploymentStatus::ALL.len());
        for status in DeploymentStatus::ALL.map(DeploymentStatus::name) {
            counts.push((status, self.deployments.count_documents(doc! {"status": status}).await?));
        }
        Ok(counts)
    }

    /// Deployments with status `running`: in progress, or left so by a replica that stopped.
    pub async fn running_deployments(&self) -> StoreResult<Vec<DeploymentDoc>> {
        Ok(self
            .deployments
            .find(doc! {"status": DeploymentStatus::Running.name()})
            .await?
            .try_collect()
            .await?)
    }

    /// Takes the lock `name` for `owner` and `deployment` for `lease`, if it is free or
    /// lapsed; `false` if it is held (by anyone: two deploys of one replica exclude each
    /// other too). Atomic across replicas: of several asking at once, one gets it.
    pub async fn take_lock(
        &self,
        name: &str,
        owner: &str,
        deployment: ObjectId,
        lease: Duration,
    ) -> StoreResult<bool> {
        let free = doc! {"_id": name, "lease_until": {"$lt": now()}};
        let set = doc! {"$set": {"owner": owner, "deployment": deployment, "lease_until": after(lease)}};
        match self.locks.update_one(free, set).upsert(true).await {
            Ok(_) => Ok(true),
            // Held: the filter missed, and the upsert's insert met the holder's document.
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Extends `owner`'s hold on the lock for `deployment`; `false` if it lapsed and someone
    /// (or the same replica for another deployment) took it.
    pub async fn renew_lock(
        &self,
        name: &str,
        owner: &str,
        deployment: ObjectId,
        lease: Duration,
    ) -> StoreResult<bool> {
        let held = doc! {"_id": name, "owner": owner, "deployment": deployment};
        let result = self.locks.update_one(held, doc! {"$set": {"lease_until": after(lease)}}).await?;
        Ok(result.matched_count == 1)
    }

    /// Lets go of the lock if `owner` holds it for `deployment`.
    pub async fn release_lock(&self, name: &str, owner: &str, deployment: ObjectId) -> StoreResult<()> {
        self.locks.delete_one(doc! {"_id": name, "owner": owner, "deployment": deployment}).await?;
        Ok(())
    }

    /// The lock `name`, held or lapsed; `None` if nobody took it or it was let go.
    pub async fn lock(&self, name: &str) -> StoreResult<Option<LockDoc>> {
        Ok(self.locks.find_one(doc! {"_id": name}).await?)
    }

    /// Deployments, newest first, optionally of one status.
    pub async fn deployments(
        &self,
        status: Option<DeploymentStatus>,
        cursor: Option<ObjectId>,
        limit: u32,
    ) -> StoreResult<Page<DeploymentDoc>> {
        let filter = status.map_or_else(|| doc! {}, |status| doc! {"status": status.name()});
        page(&self.deployments, filter, cursor, limit, |d| d.id).await
    }
}

/// One page of `collection` matching `filter`, newest first (ObjectIds grow with time).
async fn page<T>(
    collection: &Collection<T>,
    mut filter: Document,
    cursor: Option<ObjectId>,
    limit: u32,
    id: impl Fn(&T) -> ObjectId,
) -> StoreResult<Page<T>>
where
    T: serde::de::DeserializeOwned + Send + Sync,
{
    if let Some(cursor) = cursor {
        filter.insert("_id", doc! {"$lt": cursor});
    }
    // Listings leave out inline scenario specs: up to a megabyte each, and never shown.
    let mut items: Vec<T> = collection
        .find(filter)
        .projection(doc! {"scenario.spec": 0})
        .sort(doc! {"_id": -1})
        .limit(i64::from(limit) + 1)
        .await?
        .try_collect()
        .await?;
    let next = (items.len() > limit as usize).then(|| {
        items.truncate(limit as usize);
        items.last().map(&id)
    });
    Ok(Page { items, next: next.flatten() })
}

/// FNV-1a 64 of a text, in hex.
pub fn fingerprint(text: &str) -> String {
    format!("{:016x}", berth_core::rng::fnv1a(text.as_bytes()))
}
