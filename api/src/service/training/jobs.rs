//! Training tasks as Kubernetes Jobs (`berth serve --executor kubernetes`): the runner claims a
//! task as usual, creates a Job running `berth train --task <id> --owner <runner>` (same
//! image, MongoDB URI from a Secret), keeps the task's lease while the Job runs, and reflects
//! the Job's failure or disappearance in the task. The Job's process reads the task and writes
//! its progress, model and log to MongoDB itself, as the runner would.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use berth_env::live::LiveError;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, ListParams, PostParams, PropagationPolicy};
use mongodb::bson::doc;
use mongodb::bson::oid::ObjectId;
use serde_json::json;

use crate::service::training::task::{record_end, train_here};
use crate::store::{Status, Store, StoreError, TaskDevice, TaskDoc};

/// Where training tasks run (`berth serve` flags).
#[derive(Debug, clap::Args)]
pub struct ExecutorArgs {
    /// Where training tasks run: `local` (this process's threads) or `kubernetes` (a Job
    /// per task, on the cluster of --kubeconfig or the pod's service account).
    #[arg(long, env = "BERTH_EXECUTOR", value_enum, default_value_t = ExecutorKind::Local)]
    pub executor: ExecutorKind,
    /// berth's image, for the Jobs (needed with --executor kubernetes).
    #[arg(long, env = "BERTH_JOB_IMAGE")]
    pub job_image: Option<String>,
    /// Namespace of the Jobs (default: --namespace).
    #[arg(long, env = "BERTH_JOB_NAMESPACE")]
    pub job_namespace: Option<String>,
    /// Secret in the Jobs' namespace whose `mongodb-uri` key is the MongoDB URI.
    #[arg(long, env = "BERTH_JOB_SECRET", default_value = "berth")]
    pub job_secret: String,
    /// berth's `tch` image (LibTorch with CUDA), for tasks with `device: cuda`; their Jobs
    /// also request one `nvidia.com/gpu`. Without it such tasks are refused.
    #[arg(long, env = "BERTH_JOB_GPU_IMAGE")]
    pub job_gpu_image: Option<String>,
}

/// Executors `--executor` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExecutorKind {
    /// This process.
    Local,
    /// Kubernetes Jobs.
    Kubernetes,
}

impl ExecutorArgs {
    /// The image, checked: `None` for the local executor.
    pub fn image(&self) -> anyhow::Result<Option<&str>> {
        match (self.executor, self.job_image.as_deref().map(str::trim)) {
            (ExecutorKind::Local, _) => Ok(None),
            (ExecutorKind::Kubernetes, Some(image)) if !image.is_empty() => Ok(Some(image)),
            (ExecutorKind::Kubernetes, _) => {
                anyhow::bail!(
                    "--job-image (BERTH_JOB_IMAGE): needed with --executor kubernetes (berth's image)"
                )
            }
        }
    }
}

/// What the runner needs to launch Jobs.
#[derive(Clone)]
pub struct JobLauncher {
    /// The cluster.
    pub client: kube::Client,
    /// Where the Jobs go.
    pub namespace: String,
    /// berth's image.
    pub image: String,
    /// berth's `tch` image, for CUDA tasks.
    pub gpu_image: Option<String>,
    /// A Secret in `namespace` whose `mongodb-uri` key the Job's `BERTH_MONGODB_URI` reads.
    pub secret: String,
    /// The database name.
    pub database: String,
}

/// The runner's side of a followed Job.
pub struct Follow<'a> {
    /// The store.
    pub store: &'a Store,
    /// The runner's name in the task's claim.
    pub owner: &'a str,
    /// How often the Job and the task are looked at.
    pub poll: Duration,
}

/// The name of a task's Job for one attempt: a task re-queued after its runner died gets a
/// Job of its own, whatever became of the old one.
pub fn job_name(task: &TaskDoc) -> String {
    format!("berth-train-{}-{}", task.id.to_hex(), task.attempts)
}

/// Where a Job stands.
#[derive(Debug, PartialEq)]
enum JobState {
    Running,
    Succeeded,
    Failed(String),
    Gone,
}

impl JobLauncher {
    fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The Job for `task`, claimed by `owner`: one pod, never restarted (a failed run fails
    /// the task, as a local one does), the URI from the Secret, never inline.
    pub fn job(&self, task: &TaskDoc, owner: &str) -> Job {
        let id = task.id.to_hex();
        // A CUDA task: the LibTorch build, and a GPU for its pod (limits alone: requests follow).
        let (image, resources) = match (task.device, &self.gpu_image) {
            (TaskDevice::Cuda, Some(gpu)) => (gpu.as_str(), json!({"limits": {"nvidia.com/gpu": "1"}})),
            _ => (self.image.as_str(), json!({})),
        };
        serde_json::from_value(json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": job_name(task),
                "namespace": self.namespace,
                "labels": {"app.kubernetes.io/name": "berth-train", "app.kubernetes.io/managed-by": "berth",
                           "berth.io/task": id},
            },
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "metadata": {"labels": {"app.kubernetes.io/name": "berth-train", "berth.io/task": id}},
                    "spec": {
                        "restartPolicy": "Never",
                        "automountServiceAccountToken": false,
                        "securityContext": {"runAsNonRoot": true, "runAsUser": 10001, "runAsGroup": 10001},
                        "containers": [{
                            "name": "train",
                            "image": image,
                            "resources": resources,
                            "command": ["berth", "train", "--task", id, "--owner", owner],
                            "env": [
                                {"name": "BERTH_MONGODB_URI",
                                 "valueFrom": {"secretKeyRef": {"name": self.secret, "key": "mongodb-uri"}}},
                                {"name": "BERTH_DATABASE", "value": self.database},
                            ],
                            "securityContext": {"readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
                                                "capabilities": {"drop": ["ALL"]}},
                        }],
                    },
                },
            },
        }))
        .expect("a valid Job")
    }

    async fn state(&self, name: &str) -> Result<JobState, LiveError> {
        let job =
            self.jobs().get_opt(name).await.map_err(|e| LiveError::kube(format!("read Job `{name}`"), e))?;
        let Some(job) = job else { return Ok(JobState::Gone) };
        let conditions = job.status.and_then(|s| s.conditions).unwrap_or_default();
        let holds = |kind: &str| conditions.iter().find(|c| c.type_ == kind && c.status == "True");
        Ok(if let Some(failed) = holds("Failed") {
            let why = [failed.reason.as_deref(), failed.message.as_deref()];
            JobState::Failed(why.into_iter().flatten().collect::<Vec<_>>().join(": "))
        } else if holds("Complete").is_some() {
            JobState::Succeeded
        } else {
            JobState::Running
        })
    }

    /// Deletes the Jobs of earlier attempts at `task` (their runner died before it could).
    async fn delete_earlier(&self, task: &TaskDoc) {
        let selector = format!("berth.io/task={}", task.id.to_hex());
        match self.jobs().list(&ListParams::default().labels(&selector)).await {
            Ok(list) => {
                for name in list.items.into_iter().filter_map(|j| j.metadata.name) {
                    self.delete(&name).await;
                }
            }
            Err(e) => tracing::warn!("listing the earlier Jobs of task {}: {e}", task.id),
        }
    }

    async fn delete(&self, name: &str) {
        // Background propagation: the pod goes with it.
        let params =
            DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..Default::default() };
        match self.jobs().delete(name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => tracing::warn!("deleting Job `{name}`: {e}"),
        }
    }

    /// Runs `task` as a Job and follows it until it ends, `stop` is raised (a cancel or a
    /// takeover, or the service `stopping`), or the Job fails or goes; the Job is deleted
    /// when followed no more. Returns the task's final status.
    pub async fn run(
        &self,
        follow: &Follow<'_>,
        task: &TaskDoc,
        stop: &Arc<AtomicBool>,
        stopping: &AtomicBool,
    ) -> Result<Status, StoreError> {
        let (id, name) = (task.id, job_name(task));
        self.delete_earlier(task).await;
        let fail = async |error: String| {
            follow
                .store
                .finish(id, follow.owner, Status::Failed, doc! {"error": error})
                .await
                .map(|_| Status::Failed)
        };
        if let Err(e) = self.jobs().create(&PostParams::default(), &self.job(task, follow.owner)).await {
            return fail(LiveError::kube(format!("create Job `{name}`"), e).to_string()).await;
        }
        let ended = loop {
            tokio::time::sleep(follow.poll).await;
            if stop.load(Ordering::Relaxed) {
                self.delete(&name).await;
                break if stopping.load(Ordering::Relaxed) {
                    follow.store.release(id, follow.owner).await.map(|()| Status::Cancelled)
                } else {
                    let note = doc! {"note": format!("stopped: its Job `{name}` was deleted")};
                    follow
                        .store
                        .finish(id, follow.owner, Status::Cancelled, note)
                        .await
                        .map(|_| Status::Cancelled)
                };
            }
            // The Job records the task's end itself; once it has, there is nothing to follow.
            let now = follow.store.task(id).await?;
            if let Some(t) =
                now.filter(|t| t.status != Status::Running || t.owner.as_deref() != Some(follow.owner))
            {
                break Ok(t.status);
            }
            match self.state(&name).await {
                Ok(JobState::Running) => {}
                Ok(JobState::Failed(why)) => break fail(format!("its Job `{name}` failed: {why}")).await,
                Ok(JobState::Gone) => {
                    break fail(format!("its Job `{name}` was deleted before it finished")).await;
                }
                // Complete, but the task not ended by it (its write was lost): say so.
                Ok(JobState::Succeeded) => {
                    if follow.store.task(id).await?.is_some_and(|t| t.status == Status::Running) {
                        break fail(format!("its Job `{name}` completed without recording the task's end"))
                            .await;
                    }
                }
                // The API server is away for a moment: the Job goes on, so does following it.
                Err(e) => tracing::warn!("task {id}: {e}"),
            }
        };
        self.delete(&name).await;
        ended
    }
}

/// Why `berth train --task` cannot train.
#[derive(Debug, thiserror::Error)]
pub enum TaskRunError {
    /// The database.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No such task.
    #[error("--task: no task `{0}`")]
    NoTask(ObjectId),
    /// The task is not `owner`'s to run.
    #[error("--task: task `{id}` is {status}, claimed by {claimed:?}, not by `{owner}`: nothing to train")]
    NotClaimed { id: ObjectId, status: &'static str, claimed: Option<String>, owner: String },
}

/// `berth train --task <id> --owner <runner>`: trains a task claimed by `owner` (the runner
/// that launched this Job), writes progress, model and log to the store as that runner would,
/// and stops if the task is cancelled or taken over meanwhile. Returns the final status.
pub async fn train_task(store: &Store, id: ObjectId, owner: &str) -> Result<Status, TaskRunError> {
    let task = store.task(id).await?.ok_or(TaskRunError::NoTask(id))?;
    if task.status != Status::Running || task.owner.as_deref() != Some(owner) {
        return Err(TaskRunError::NotClaimed {
            id,
            status: task.status.name(),
            claimed: task.owner,
            owner: owner.into(),
        });
    }
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn({
        let (store, owner, stop) = (store.clone(), owner.to_string(), stop.clone());
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Ok(Some(t)) = store.task(id).await
                    && (t.status != Status::Running
                        || t.owner.as_deref() != Some(&owner)
                        || t.cancel_requested)
                {
                    stop.store(true, Ordering::Relaxed);
                    return;
                }
            }
        }
    });
    // A Job's pod has memory limits of its own, and running out of them takes down only
    // that pod: the service's per-task budget guards the service's process.
    let trained = train_here(store.clone(), task, owner.to_string(), stop, u64::MAX).await;
    watcher.abort();
    Ok(record_end(store, id, owner, trained, false).await?)
}
