//! `berth serve`, `berth token` and `berth hash-password`: the service's configuration (flags
//! or `BERTH_*` environment variables), its start-up and its graceful stop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::http::{AppState, router};
use crate::infra::auth::{Jwt, KeyMaterial, Role, Users, hash_password};
use crate::infra::metrics::Metrics;
use crate::infra::rate_limit::{CostlyWork, RateLimiter};
use crate::infra::telemetry::{self, LogFormat};
use crate::service::cluster::LiveCluster;
use crate::service::cluster::{ClusterSource, LiveSource, SimCluster, record};
use crate::service::deploy;
use crate::service::training::jobs::{ExecutorArgs, JobLauncher};
use crate::service::training::runner::{Executor, Runner, RunnerConfig, replica_id};
use crate::store::{Durability, Store};

/// How tokens are signed: shared by `serve` and `token`.
#[derive(Debug, Args)]
pub struct JwtArgs {
    /// HS256 secret (at least 32 bytes). Give this or --jwt-public-key.
    #[arg(long, env = "BERTH_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// RS256 public key (PEM file) that verifies tokens.
    #[arg(long, env = "BERTH_JWT_PUBLIC_KEY")]
    jwt_public_key: Option<PathBuf>,
    /// RS256 private key (PEM file), to issue tokens with the RS256 public key.
    #[arg(long, env = "BERTH_JWT_PRIVATE_KEY")]
    jwt_private_key: Option<PathBuf>,
    /// The tokens' `iss`.
    #[arg(long, env = "BERTH_JWT_ISSUER", default_value = "berth")]
    jwt_issuer: String,
    /// The tokens' `aud`.
    #[arg(long, env = "BERTH_JWT_AUDIENCE", default_value = "berth")]
    jwt_audience: String,
}

impl JwtArgs {
    fn jwt(&self) -> Result<Jwt> {
        let read = |path: &PathBuf, flag: &str| {
            std::fs::read(path).with_context(|| format!("--{flag}: cannot read `{}`", path.display()))
        };
        let keys = match (&self.jwt_secret, &self.jwt_public_key) {
            (Some(_), Some(_)) => bail!("--jwt-secret and --jwt-public-key: give one, not both"),
            (None, None) => bail!(
                "--jwt-secret (BERTH_JWT_SECRET) or --jwt-public-key (BERTH_JWT_PUBLIC_KEY): one is needed to check tokens"
            ),
            (Some(secret), None) => KeyMaterial::Secret(secret.clone()),
            (None, Some(public)) => KeyMaterial::Rsa {
                public_pem: read(public, "jwt-public-key")?,
                private_pem: self.jwt_private_key.as_ref().map(|p| read(p, "jwt-private-key")).transpose()?,
            },
        };
        Ok(Jwt::new(keys, &self.jwt_issuer, &self.jwt_audience)?)
    }
}

/// `berth serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "BERTH_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    db: DatabaseArgs,
    #[command(flatten)]
    jwt: JwtArgs,
    /// Users who may get tokens with a password: a TOML file of `[[users]]` with `name`,
    /// `role` and `password_hash` (from `berth hash-password`).
    #[arg(long, env = "BERTH_USERS")]
    users: Option<PathBuf>,
    /// Lifetime of tokens from `/api/v1/auth/token`, seconds.
    #[arg(long, env = "BERTH_TOKEN_TTL_S", default_value_t = 3600)]
    token_ttl_s: u64,
    /// Training tasks run at once; the rest wait in the queue.
    #[arg(long, env = "BERTH_WORKERS", default_value_t = 1)]
    workers: usize,
    /// Estimated memory one training task may take, MiB: a task over it is refused (422)
    /// when it is posted, and failed, not trained, if one stored before is claimed.
    #[arg(long, env = "BERTH_TASK_MEMORY_MIB", default_value_t = crate::service::training::runner::DEFAULT_TASK_MEMORY_MIB)]
    task_memory_mib: u64,
    /// Seconds a task's claim, or a deploy's lock on the cluster, holds without renewal:
    /// after a crash, its tasks are taken over, and its deploy undone, this long after it stopped.
    #[arg(long, env = "BERTH_TASK_LEASE_S", default_value_t = 30.0)]
    task_lease_s: f64,
    /// Scenario of the cluster `/api/v1/metrics` reports on (a shipped name or a YAML
    /// file): the one simulated, or with `--live` the one the live cluster runs.
    #[arg(long, env = "BERTH_CLUSTER_SCENARIO", default_value = "gpu-small")]
    cluster_scenario: String,
    /// Wall-clock seconds per simulated tick of that cluster.
    #[arg(long, env = "BERTH_CLUSTER_TICK_S", default_value_t = 10.0)]
    cluster_tick_s: f64,
    /// Seconds between the cluster snapshots recorded for `/api/v1/metrics/history`.
    #[arg(long, env = "BERTH_METRICS_INTERVAL_S", default_value_t = 30.0)]
    metrics_interval_s: f64,
    /// Requests per second each token subject may make (a token bucket; 0: no limit).
    #[arg(long, env = "BERTH_RATE_LIMIT_RPS", default_value_t = 200.0)]
    rate_limit_rps: f64,
    /// Password attempts a minute at the token endpoint, per client address and per user
    /// name (after a burst of as many); over it, 429 with Retry-After.
    #[arg(long, env = "BERTH_LOGIN_RATE_PER_MIN", default_value_t = 10.0)]
    login_rate_per_min: f64,
    /// Password checks (Argon2, a blocking thread each) run at once; more wait up to 2 s, then 429.
    #[arg(long, env = "BERTH_PASSWORD_CHECKS", default_value_t = 2)]
    password_checks: usize,
    /// Uploaded models evaluated at once; more are answered 429 with Retry-After.
    #[arg(long, env = "BERTH_MODEL_EVALUATIONS", default_value_t = 2)]
    model_evaluations: usize,
    /// Requests a subject may make at once before the rate applies.
    #[arg(long, env = "BERTH_RATE_LIMIT_BURST", default_value_t = 400.0)]
    rate_limit_burst: f64,
    /// Seconds before a request is answered 503 (timeout).
    #[arg(long, env = "BERTH_REQUEST_TIMEOUT_S", default_value_t = 30.0)]
    request_timeout_s: f64,
    /// Largest request body, bytes.
    #[arg(long, env = "BERTH_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Deploy to a live cluster: with `--kubeconfig`, that one; without, what kube infers
    /// (`KUBECONFIG`, `~/.kube/config`, or the pod's service account in a cluster).
    #[arg(long, env = "BERTH_LIVE")]
    live: bool,
    /// Kubeconfig of the cluster (for --live and --executor kubernetes).
    #[arg(long, env = "BERTH_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Namespace of the placed services' Deployments.
    #[arg(long, env = "BERTH_NAMESPACE", default_value = "default")]
    namespace: String,
    /// Seconds one move of a deploy may take before the deploy is rolled back.
    #[arg(long, env = "BERTH_MOVE_TIMEOUT_S", default_value_t = 300.0)]
    move_timeout_s: f64,
    #[command(flatten)]
    executor: ExecutorArgs,
    /// Log lines as `text` or `json` (with the trace id of the request, task or deploy).
    /// Traces go over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set.
    #[arg(long, env = "BERTH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// `berth train --task <id> --owner <runner>` (a Job's command): trains the task into the store.
pub fn train_task(db: &DatabaseArgs, task: &str, owner: &str) -> Result<()> {
    let id = mongodb::bson::oid::ObjectId::parse_str(task)
        .map_err(|_| anyhow::anyhow!("--task: `{task}` is not a task id (24 hex digits)"))?;
    db.uri()?;
    let status = runtime()?.block_on(async {
        let store = db.store().await?;
        anyhow::Ok(crate::service::training::jobs::train_task(&store, id, owner).await?)
    })?;
    eprintln!("berth train: task {id} {}", status.name());
    if status != crate::store::Status::Completed {
        bail!("task {id} ended {}: see its error or note in the store", status.name());
    }
    Ok(())
}

/// Where berth's database is: `serve`, `backup` and `restore` share it.
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// MongoDB connection string (`mongodb://...`).
    #[arg(long, env = "BERTH_MONGODB_URI", hide_env_values = true)]
    mongodb_uri: Option<String>,
    /// Database name.
    #[arg(long, env = "BERTH_DATABASE", default_value = "berth")]
    database: String,
    /// How many MongoDB servers must have a write in their journal before the service
    /// acknowledges it: `majority` of the replica set, or a count of members.
    #[arg(long, env = "BERTH_WRITE_CONCERN", default_value = "majority", value_parser = Durability::parse)]
    write_concern: Durability,
}

impl DatabaseArgs {
    /// The URI, checked.
    fn uri(&self) -> Result<String> {
        let Some(uri) = self.mongodb_uri.clone() else {
            bail!(
                "--mongodb-uri (BERTH_MONGODB_URI): missing; `scripts/mongodb.sh start` prints one for a local server"
            )
        };
        if !(uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://")) {
            bail!("--mongodb-uri (BERTH_MONGODB_URI): must start with mongodb:// or mongodb+srv://");
        }
        Ok(uri)
    }

    /// The database, with berth's indexes in place.
    async fn store(&self) -> Result<Store> {
        let uri = self.uri()?;
        let connect = Store::connect_with(&uri, &self.database, self.write_concern);
        tokio::time::timeout(Duration::from_secs(30), connect)
            .await
            .map_err(|_| {
                anyhow::anyhow!("--mongodb-uri (BERTH_MONGODB_URI): no answer from MongoDB within 30 s")
            })?
            .context("--mongodb-uri (BERTH_MONGODB_URI): cannot use MongoDB")
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

/// Runs the service until SIGINT or SIGTERM.
pub fn serve(args: ServeArgs) -> Result<()> {
    args.db.uri()?;
    if args.workers == 0 {
        bail!("--workers (BERTH_WORKERS): must be at least 1");
    }
    if !(64..=(1 << 30)).contains(&args.task_memory_mib) {
        bail!("--task-memory-mib (BERTH_TASK_MEMORY_MIB): must be 64 to 1073741824");
    }
    if !(args.task_lease_s.is_finite() && args.task_lease_s >= 0.3) {
        bail!("--task-lease-s (BERTH_TASK_LEASE_S): must be at least 0.3 seconds");
    }
    if !(args.rate_limit_rps.is_finite() && args.rate_limit_rps >= 0.0) {
        bail!("--rate-limit-rps (BERTH_RATE_LIMIT_RPS): must be 0 (no limit) or positive");
    }
    if !(args.login_rate_per_min.is_finite() && args.login_rate_per_min > 0.0) {
        bail!("--login-rate-per-min (BERTH_LOGIN_RATE_PER_MIN): must be positive");
    }
    if args.password_checks == 0 || args.model_evaluations == 0 {
        bail!("--password-checks and --model-evaluations: must be at least 1");
    }
    if !(args.rate_limit_burst.is_finite() && args.rate_limit_burst >= 1.0) {
        bail!("--rate-limit-burst (BERTH_RATE_LIMIT_BURST): must be at least 1");
    }
    for (value, flag) in [
        (args.request_timeout_s, "--request-timeout-s (BERTH_REQUEST_TIMEOUT_S)"),
        (args.cluster_tick_s, "--cluster-tick-s (BERTH_CLUSTER_TICK_S)"),
        (args.metrics_interval_s, "--metrics-interval-s (BERTH_METRICS_INTERVAL_S)"),
        (args.move_timeout_s, "--move-timeout-s (BERTH_MOVE_TIMEOUT_S)"),
    ] {
        if !(value.is_finite() && value >= 0.001) {
            bail!("{flag}: must be a positive number of seconds");
        }
    }
    if args.token_ttl_s == 0 {
        bail!("--token-ttl-s (BERTH_TOKEN_TTL_S): must be at least 1");
    }
    let jobs = args.executor.image()?.is_some();
    if args.kubeconfig.is_some() && !args.live && !jobs {
        bail!("--kubeconfig (BERTH_KUBECONFIG): only with --live or --executor kubernetes");
    }
    let scenario = berth_env::shipped::load(&args.cluster_scenario)
        .map_err(|e| anyhow::anyhow!("--cluster-scenario (BERTH_CLUSTER_SCENARIO): {e}"))?;
    let sim = SimCluster::new(scenario.clone(), Duration::from_secs_f64(args.cluster_tick_s))?;
    let jwt = args.jwt.jwt()?;
    let users = match &args.users {
        Some(path) => Users::load(path)?,
        None => Users::default(),
    };
    let telemetry = telemetry::init(args.log_format)?;
    let served = runtime()?.block_on(run(args, jwt, users, sim, scenario));
    telemetry.shutdown();
    served
}

async fn run(
    args: ServeArgs,
    jwt: Jwt,
    users: Users,
    sim: SimCluster,
    scenario: Arc<berth_core::Scenario>,
) -> Result<()> {
    let store = args.db.store().await?;
    let job_image = args.executor.image()?;
    let client = if args.live || job_image.is_some() {
        Some(berth_env::live::connect(args.kubeconfig.as_deref()).await.context(
            "--live (BERTH_LIVE) / --executor kubernetes / --kubeconfig (BERTH_KUBECONFIG): cannot reach the cluster",
        )?)
    } else {
        None
    };
    let executor = match (job_image, &client) {
        (Some(image), Some(client)) => Executor::Kubernetes(Box::new(JobLauncher {
            client: client.clone(),
            namespace: args.executor.job_namespace.clone().unwrap_or_else(|| args.namespace.clone()),
            image: image.to_string(),
            gpu_image: args.executor.job_gpu_image.clone().filter(|i| !i.trim().is_empty()),
            secret: args.executor.job_secret.clone(),
            database: args.db.database.clone(),
        })),
        _ => Executor::Local,
    };
    let live = if let (true, Some(client)) = (args.live, client) {
        Some(LiveCluster {
            client,
            namespace: args.namespace.clone(),
            move_timeout: Duration::from_secs_f64(args.move_timeout_s),
            owner: replica_id(),
            lease: Duration::from_secs_f64(args.task_lease_s),
        })
    } else {
        None
    };
    let lease = Duration::from_secs_f64(args.task_lease_s);
    if let Some(live) = &live {
        let every = (lease / 2).clamp(Duration::from_millis(200), Duration::from_secs(10));
        tokio::spawn(deploy::watch_interrupted(live.clone(), store.clone(), every));
    }
    let metrics = Arc::new(Metrics::default());
    let runner = Runner::new(
        store.clone(),
        executor,
        RunnerConfig {
            workers: args.workers,
            lease,
            poll: lease.min(Duration::from_secs(2)),
            task_memory_bytes: args.task_memory_mib << 20,
        },
        metrics.clone(),
    );
    runner.start();
    let cluster = Arc::new(match &live {
        Some(live) => ClusterSource::Live(LiveSource { live: live.clone(), scenario }),
        None => ClusterSource::Sim(Box::new(sim)),
    });
    tokio::spawn(record(cluster.clone(), store.clone(), Duration::from_secs_f64(args.metrics_interval_s)));
    let state = AppState {
        store,
        jwt: Arc::new(jwt),
        users: Arc::new(users),
        runner: runner.clone(),
        token_ttl_s: args.token_ttl_s,
        metrics,
        cluster,
        limiter: Arc::new(RateLimiter::new(args.rate_limit_rps, args.rate_limit_burst)),
        costly: Arc::new(CostlyWork::new(
            args.login_rate_per_min,
            args.password_checks,
            args.model_evaluations,
        )),
        figures: Arc::default(),
        live,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("--listen (BERTH_LISTEN): cannot listen on {}", args.listen))?;
    // The first line on stdout says where, so scripts and tests can use port 0.
    println!("berth serve: listening on http://{}", listener.local_addr()?);
    let request_timeout = Duration::from_secs_f64(args.request_timeout_s);
    let app = router(state, args.max_body_bytes, request_timeout);
    // With the peer's address, which the token endpoint limits password attempts by.
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(stop_signal())
        .await
        .context("serving HTTP")?;
    runner.shutdown(Duration::from_secs(10)).await;
    tracing::info!("stopped");
    Ok(())
}

async fn stop_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

/// `berth token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Who the token is for (its `sub`).
    #[arg(long)]
    sub: String,
    /// viewer, operator or admin.
    #[arg(long)]
    role: Role,
    /// Lifetime, seconds.
    #[arg(long, default_value_t = 3600)]
    ttl_s: u64,
    #[command(flatten)]
    jwt: JwtArgs,
}

/// Prints a token signed with the service's key.
pub fn token(args: TokenArgs) -> Result<()> {
    if args.sub.trim().is_empty() {
        bail!("--sub: must not be empty");
    }
    println!("{}", args.jwt.jwt()?.mint(&args.sub, args.role, args.ttl_s)?);
    Ok(())
}

/// Prints the argon2 hash of the password read from stdin (one line), for the users file.
pub fn hash_password_cmd() -> Result<()> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        bail!("password: empty; give it on stdin");
    }
    println!("{}", hash_password(password)?);
    Ok(())
}

/// `berth backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The backup file to write.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    db: DatabaseArgs,
}

/// Writes every collection and GridFS file of the database to one file (atomically: a
/// temporary file renamed into place).
pub fn backup_cmd(args: BackupArgs) -> Result<()> {
    let (bytes, counts) = runtime()?.block_on(async {
        let store = args.db.store().await?;
        crate::store::backup::backup(store.database()).await
    })?;
    let partial = args.out.with_extension("partial");
    std::fs::write(&partial, &bytes)
        .with_context(|| format!("--out: cannot write `{}`", partial.display()))?;
    std::fs::rename(&partial, &args.out)
        .with_context(|| format!("--out: cannot write `{}`", args.out.display()))?;
    eprintln!(
        "backup of `{}`: {counts:?} -> {} ({} bytes)",
        args.db.database,
        args.out.display(),
        bytes.len()
    );
    Ok(())
}

/// `berth restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A file `berth backup` wrote.
    file: PathBuf,
    /// Empty berth's collections in the database first (else a non-empty one is refused).
    #[arg(long)]
    replace: bool,
    #[command(flatten)]
    db: DatabaseArgs,
}

/// Restores a backup, then makes sure berth's indexes exist.
pub fn restore_cmd(args: RestoreArgs) -> Result<()> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("cannot read `{}`", args.file.display()))?;
    let counts = runtime()?.block_on(async {
        let store = args.db.store().await?;
        crate::store::backup::restore(store.database(), &bytes, args.replace).await
    })?;
    eprintln!("restored `{}` into `{}`: {counts:?}", args.file.display(), args.db.database);
    Ok(())
}
