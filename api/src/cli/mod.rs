//! Command-line arguments and what each command does.

pub mod bench;
pub mod discover;
pub mod emulate;
pub mod experiment;
pub mod record;
pub mod scenario;
pub mod serve;
pub mod table;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use berth_agents::nets::DeviceKind;
use berth_agents::plot::{Reference, learning_curve};
use berth_agents::run_log::RunLog;
use berth_agents::{AgentKind, AgentPolicy, Flow, Progress, SavedModel, Target, TrainRequest, load_agent};
use berth_core::Scenario;
use berth_env::evaluate::{self, Contender, DayStart, EvalRow, default_policies};
use berth_env::shield::{ShieldSettings, Vote};
use berth_env::{PlacementEnv, shield, shipped};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

/// berth: learns where to place GPU inference services on a Kubernetes cluster.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train an agent on the simulator, save it, and compare it with the baselines.
    Train(TrainArgs),
    /// Run the baselines, the oracle and saved models on a scenario and print how they compare.
    Eval(EvalArgs),
    /// Run the REST API with its training task runner (needs MongoDB).
    Serve(Box<crate::cli::serve::ServeArgs>),
    /// Print a bearer token for the API, signed with the service's key.
    Token(crate::cli::serve::TokenArgs),
    /// Print the argon2 hash of a password read from stdin, for the users file.
    HashPassword,
    /// Write every collection and GridFS file of berth's database to one file.
    Backup(crate::cli::serve::BackupArgs),
    /// Restore a backup into berth's database.
    Restore(crate::cli::serve::RestoreArgs),
    /// Play a scenario's nodes on a real API server (a kubelet emulator), or fail/recover one.
    Emulate(crate::cli::emulate::EmulateArgs),
    /// Sample a live cluster into a trace file that `berth train --replay` trains on.
    Record(crate::cli::record::RecordArgs),
    /// Run an experiment file: every scenario, policy and seed, with tables and plots.
    Experiment {
        #[command(subcommand)]
        what: ExperimentWhat,
    },
    /// Build scenarios from public traces.
    Scenario {
        #[command(subcommand)]
        what: ScenarioWhat,
    },
    /// Measure the speed of berth's parts.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
}

#[derive(Debug, Args)]
struct TrainArgs {
    /// The algorithm.
    #[arg(long, value_enum, required_unless_present = "task", conflicts_with = "task")]
    agent: Option<AgentArg>,
    /// Scenario: a YAML file, a shipped name (tiny, gpu-small, gpu-mig, gentd26, gpu-medium, gpu-large, openb, openb-shared), or
    /// `cartpole` to check the algorithm on CartPole-v1.
    #[arg(long, required_unless_present = "task", conflicts_with = "task")]
    scenario: Option<String>,
    /// Environment steps (default: the agent's budget for the scenario).
    #[arg(long)]
    steps: Option<u64>,
    /// Seed of the run (default: the scenario's seed).
    #[arg(long)]
    seed: Option<u64>,
    /// Hyperparameters to override, as a TOML file of the agent's config fields.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Folder for the run: log.csv, hyperparameters.json, model.bin, learning_curve.png.
    #[arg(long, required_unless_present = "task", conflicts_with = "task")]
    out: Option<PathBuf>,
    /// Where DQN and PPO train: `cpu` (burn's flex backend; LibTorch's CPU in a `tch`
    /// build) or `cuda` (LibTorch, binaries built with `--features tch` only).
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
    /// Evaluation episodes for the closing comparison.
    #[arg(long, default_value_t = 3)]
    episodes: usize,
    /// Train on episodes replayed from a live cluster's recording (`berth record --out`)
    /// instead of the scenario's synthetic traffic.
    #[arg(long, conflicts_with = "task")]
    replay: Option<PathBuf>,
    /// Train a queued task of the service's store instead (what a Kubernetes Job of
    /// `berth serve --executor kubernetes` runs): its agent, scenario, steps, seed and
    /// hyperparameters; progress, model and log go to the store.
    #[arg(long, requires = "owner", conflicts_with_all = ["steps", "seed", "config"])]
    task: Option<String>,
    /// With --task: the runner that claimed it (the Job's command says).
    #[arg(long, requires = "task")]
    owner: Option<String>,
    #[command(flatten)]
    db: crate::cli::serve::DatabaseArgs,
}

/// Agents `berth train` knows.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum AgentArg {
    /// Tabular Q-learning (small scenarios such as tiny).
    Qlearning,
    /// Double DQN with burn.
    Dqn,
    /// PPO with burn.
    Ppo,
}

/// Devices `berth train --device` knows.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum DeviceArg {
    /// The CPU.
    Cpu,
    /// The first CUDA GPU (LibTorch).
    Cuda,
}

impl From<DeviceArg> for DeviceKind {
    fn from(d: DeviceArg) -> Self {
        match d {
            DeviceArg::Cpu => DeviceKind::Cpu,
            DeviceArg::Cuda => DeviceKind::Cuda,
        }
    }
}

impl From<AgentArg> for AgentKind {
    fn from(a: AgentArg) -> Self {
        match a {
            AgentArg::Qlearning => AgentKind::Qlearning,
            AgentArg::Dqn => AgentKind::Dqn,
            AgentArg::Ppo => AgentKind::Ppo,
        }
    }
}

#[derive(Debug, Args)]
struct EvalArgs {
    /// Scenario: a YAML file, or a shipped name (tiny, gpu-small, gpu-mig, gentd26, gpu-medium, gpu-large, openb, openb-shared).
    #[arg(long)]
    scenario: String,
    /// Policies to compare, comma-separated: a baseline (random, spread, greedy, descheduler,
    /// descheduler-high, best-fit, dot-product, gpu-packing, gpu-clustering, fgd;
    /// `descheduler:<seconds>` sets its interval), lookahead (`greedy`'s best move weighed
    /// against keeping over 48 ticks in simulation, and hourly each service's best move where
    /// it would keep; `lookahead:<ticks>` sets the horizon),
    /// planner (the cheapest path of moves over 48 ticks, jointly where the oracle searches,
    /// else one service at a time; `planner:<ticks>`), fixed (the best fixed placement,
    /// searched for first), oracle, free-moves (each tick every service re-placed in turn at
    /// its cheapest, moves free: a ceiling where the oracle cannot search), or a saved model
    /// file (runs/<name>/model.bin); `shield:<policy>`
    /// runs a baseline or model behind the shield (each tick, `greedy`'s move unless the
    /// policy's plans cost less on forecasts by more than `--shield-margin`, and while the day
    /// so far trails `greedy`'s by no more than `--shield-budget`).
    #[arg(long, value_delimiter = ',', default_values_t = default_policies().into_iter().map(String::from))]
    policy: Vec<String>,
    /// Episodes per policy (seeds `seed`, `seed + 1`, ...).
    #[arg(long, default_value_t = 3)]
    episodes: usize,
    /// First episode seed (default: the scenario's seed).
    #[arg(long)]
    seed: Option<u64>,
    /// Print a JSON array of rows instead of a table.
    #[arg(long)]
    json: bool,
    /// Start each day after the first where the policy left the replicas the day before (every
    /// node Ready again), as on a cluster that runs on, instead of from the scenario's start.
    #[arg(long)]
    carry_over: bool,
    /// Also write every policy's figures per episode (simulated day) to this CSV file:
    /// `policy, seed, cost, mean_latency_ms, slo_miss, moves, gap_to_oracle, gpus_used`.
    #[arg(long)]
    per_day: Option<PathBuf>,
    /// How much cheaper, in percent of `greedy`'s, the plans from a shielded policy's move must
    /// be on the forecasts for the shield to take it (default: the shield's own margin).
    #[arg(long)]
    shield_margin: Option<f64>,
    /// How far, in percent of `greedy`'s cost, the day so far may trail what `greedy` would
    /// have paid on it before the shield stops taking the policy's moves; `off` lets it stray
    /// whatever the day so far (default: the shield's own budget).
    #[arg(long)]
    shield_budget: Option<String>,
    /// Forecast draws of the traffic the shield weighs each pair of plans on, 1 to 16 (default:
    /// the shield's own).
    #[arg(long)]
    shield_forecasts: Option<u64>,
    /// How the shield's forecast draws decide: `sum` takes the policy's move where its plans
    /// win in sum, `every` only where they win on every draw (default: the shield's own).
    #[arg(long)]
    shield_vote: Option<String>,
    /// Whether the shield refuses a move that leaves more services with every replica on one
    /// node than `greedy`'s move would: `on` or `off` (default: on).
    #[arg(long)]
    shield_apart: Option<String>,
}

#[derive(Debug, Subcommand)]
enum ScenarioWhat {
    /// Regenerate scenarios/openb.yaml from Alibaba's GPU cluster trace (data/openb/).
    Openb(crate::cli::scenario::OpenbArgs),
    /// Write a request-rate trace from a CSV file into a scenario's `traces:` section, and
    /// the shape of model-load latencies into its `cold_starts:` (by default,
    /// scenarios/gentd26.yaml from the GenAI serving trace in data/gentd26/).
    Trace(crate::cli::scenario::TraceArgs),
    /// Write the scenario of a cluster: its nodes (resources, zones, GPU products) and the
    /// placed services' Deployments; what a cluster does not hold is filled and listed.
    Discover(crate::cli::discover::DiscoverArgs),
}

#[derive(Debug, Subcommand)]
enum ExperimentWhat {
    /// Run what is not finished yet and write the results (CSV, summary.md, PNG plots).
    Run(ExperimentRunArgs),
}

#[derive(Debug, Args)]
struct ExperimentRunArgs {
    /// The experiment file (experiments/<name>.toml).
    file: PathBuf,
    /// Runs at once.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Results folder (default: experiments/results/<name> beside the file).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run everything again instead of resuming finished runs.
    #[arg(long)]
    fresh: bool,
}

#[derive(Debug, Subcommand)]
enum BenchWhat {
    /// Env steps per second, single thread, for every shipped scenario and a vector env.
    Env(BenchEnvArgs),
    /// Requests/s and latency of a running `berth serve`, beside MongoDB's own rate.
    Api(crate::cli::bench::ApiBenchArgs),
    /// The size-agnostic network on a scenario: build time and size, env and training steps/s.
    Agents(AgentsBenchArgs),
}

#[derive(Debug, Args)]
struct AgentsBenchArgs {
    /// Scenarios, comma-separated: shipped names or YAML files.
    #[arg(long, value_delimiter = ',', default_value = "openb")]
    scenario: Vec<String>,
    /// PPO training steps to time (whole rollouts of num_envs x num_steps).
    #[arg(long, default_value_t = 2048)]
    steps: u64,
    /// PPO hyperparameters over the defaults, as a TOML file (`network` is always `entity`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seconds to time the env alone.
    #[arg(long, default_value_t = 2.0)]
    env_seconds: f64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct BenchEnvArgs {
    /// Seconds to measure each line.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Copies in the vectorised env.
    #[arg(long, default_value_t = 8)]
    copies: usize,
    /// Only these shipped scenarios (comma-separated); all by default.
    #[arg(long, value_delimiter = ',')]
    scenario: Vec<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(args) => train(args),
        Command::Eval(args) => eval(args),
        Command::Serve(args) => crate::cli::serve::serve(*args),
        Command::Token(args) => crate::cli::serve::token(args),
        Command::HashPassword => crate::cli::serve::hash_password_cmd(),
        Command::Backup(args) => crate::cli::serve::backup_cmd(args),
        Command::Restore(args) => crate::cli::serve::restore_cmd(args),
        Command::Emulate(args) => crate::cli::emulate::run(args),
        Command::Record(args) => crate::cli::record::run(args),
        Command::Experiment { what: ExperimentWhat::Run(args) } => experiment_run(args),
        Command::Scenario { what: ScenarioWhat::Openb(args) } => crate::cli::scenario::openb(args),
        Command::Scenario { what: ScenarioWhat::Trace(args) } => crate::cli::scenario::trace(args),
        Command::Scenario { what: ScenarioWhat::Discover(args) } => crate::cli::discover::discover(args),
        Command::Bench { what: BenchWhat::Env(args) } => bench_env(args),
        Command::Bench { what: BenchWhat::Api(args) } => crate::cli::bench::run(args),
        Command::Bench { what: BenchWhat::Agents(args) } => bench_agents(args),
    }
}

fn progress_bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} steps ({per_sec}, eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// A baseline or the oracle by name, or a saved model by path: its row is named after its
/// algorithm, or `algorithm:path` where `by_path` (several models side by side).
fn contender(
    spec: &str,
    scenario: &Arc<Scenario>,
    by_path: bool,
    shield: ShieldSettings,
) -> Result<Contender> {
    if let Some(inner) = spec.strip_prefix("shield:") {
        return Ok(contender(inner, scenario, by_path, shield)?.shielded(spec, shield)?);
    }
    if let Ok(named) = Contender::named(spec) {
        return Ok(named);
    }
    let path = Path::new(spec);
    if !path.exists() {
        bail!("--policy: {}, or a model file", evaluate::unknown_policy(spec));
    }
    let bytes = std::fs::read(path).with_context(|| format!("--policy: cannot read `{spec}`"))?;
    let model = SavedModel::from_bytes(&bytes).with_context(|| format!("--policy: `{spec}`"))?;
    let env = PlacementEnv::new(scenario.clone())?;
    let agent = load_agent(&model, &env).with_context(|| format!("--policy: `{spec}`"))?;
    let policy = match by_path {
        true => AgentPolicy::named(agent, format!("{}:{spec}", model.header.agent.name())),
        false => AgentPolicy::new(agent),
    };
    Ok(Contender::Policy(Box::new(policy)))
}

/// Runs the comparison and prints it as a table or JSON.
fn compare_and_print(
    scenario: &Arc<Scenario>,
    contenders: Vec<Contender>,
    episodes: usize,
    seed: u64,
    start: DayStart,
    json: bool,
) -> Result<Vec<EvalRow>> {
    let bar = progress_bar(
        evaluate::total_steps(scenario, &contenders, episodes),
        &format!("eval {}", scenario.name),
    );
    let (rows, note) =
        evaluate::compare(scenario.clone(), contenders, episodes, seed, start, &mut || bar.inc(1))?;
    bar.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "scenario {} ({} nodes, {} replicas), {} episode(s) of {} ticks from seed {seed}",
            scenario.name,
            scenario.nodes.len(),
            scenario.replica_count(),
            episodes,
            scenario.episode_ticks
        );
        print!("{}", table::eval_table(&rows));
    }
    if let Some(note) = note {
        eprintln!("note: {note}");
    }
    Ok(rows)
}

fn eval(args: EvalArgs) -> Result<()> {
    if args.episodes == 0 {
        bail!("--episodes: must be at least 1");
    }
    let shield = shield_settings(&args)?;
    let scenario = shipped::load(&args.scenario).with_context(|| "--scenario".to_string())?;
    let files = args.policy.iter().filter(|p| Path::new(p.trim_start_matches("shield:")).exists()).count();
    let contenders =
        args.policy.iter().map(|p| contender(p, &scenario, files > 1, shield)).collect::<Result<Vec<_>>>()?;
    let seed = args.seed.unwrap_or(scenario.seed);
    let start = if args.carry_over { DayStart::CarriedOver } else { DayStart::Fresh };
    let rows = compare_and_print(&scenario, contenders, args.episodes, seed, start, args.json)?;
    if let Some(path) = &args.per_day {
        std::fs::write(path, table::per_day_csv(&rows))
            .with_context(|| format!("--per-day: cannot write `{}`", path.display()))?;
    }
    Ok(())
}

/// The per-tick shield's settings from `--shield-margin`, `--shield-budget`,
/// `--shield-forecasts`, `--shield-vote` and `--shield-apart`.
fn shield_settings(args: &EvalArgs) -> Result<ShieldSettings> {
    let mut settings = ShieldSettings::default();
    if let Some(percent) = args.shield_margin {
        if !(0.0..=shield::MAX_MARGIN * 100.0).contains(&percent) {
            bail!("--shield-margin: {percent} is not a percentage from 0 to 100");
        }
        settings.margin = percent / 100.0;
    }
    if let Some(forecasts) = args.shield_forecasts {
        if !(1..=shield::MAX_FORECASTS).contains(&forecasts) {
            bail!("--shield-forecasts: {forecasts} is not from 1 to {}", shield::MAX_FORECASTS);
        }
        settings.forecasts = forecasts;
    }
    if let Some(name) = &args.shield_vote {
        settings.vote = Vote::named(name)
            .with_context(|| format!("--shield-vote: `{name}` is not one of {}", Vote::NAMES.join(", ")))?;
    }
    match args.shield_apart.as_deref() {
        None => {}
        Some("on") => settings.keep_apart = true,
        Some("off") => settings.keep_apart = false,
        Some(text) => bail!("--shield-apart: `{text}` is neither `on` nor `off`"),
    }
    match args.shield_budget.as_deref() {
        None => {}
        Some("off") => settings.budget = None,
        Some(text) => match text.parse::<f64>() {
            Ok(percent) if (0.0..=shield::MAX_BUDGET * 100.0).contains(&percent) => {
                settings.budget = Some(percent / 100.0);
            }
            _ => bail!("--shield-budget: `{text}` is neither `off` nor a percentage from 0 to 100"),
        },
    }
    Ok(settings)
}

fn train(args: TrainArgs) -> Result<()> {
    if let (Some(task), Some(owner)) = (&args.task, &args.owner) {
        return crate::cli::serve::train_task(&args.db, task, owner);
    }
    if args.episodes == 0 {
        bail!("--episodes: must be at least 1");
    }
    let (Some(agent), Some(scenario_name), Some(out)) =
        (args.agent, args.scenario.as_deref(), args.out.as_deref())
    else {
        bail!("--agent, --scenario and --out: needed (or --task)");
    };
    let target = if scenario_name == "cartpole" {
        if args.replay.is_some() {
            bail!("--replay: CartPole has no recordings; give a placement scenario");
        }
        Target::CartPole
    } else {
        let scenario = shipped::load(scenario_name).with_context(|| "--scenario".to_string())?;
        match &args.replay {
            None => Target::Placement(scenario),
            Some(path) => {
                let replay = crate::cli::record::read_trace(path, &scenario).context("--replay")?;
                Target::Replay(scenario, replay)
            }
        }
    };
    let hyperparameters = match &args.config {
        None => serde_json::Value::Null,
        Some(path) => read_config(path)?,
    };
    let seed = args.seed.unwrap_or(target.scenario().map_or(0, |s| s.seed));
    let request = TrainRequest {
        agent: agent.into(),
        target,
        steps: args.steps,
        seed,
        hyperparameters,
        device: args.device.into(),
    };
    std::fs::create_dir_all(out).with_context(|| format!("--out: cannot create `{}`", out.display()))?;
    let bar = ProgressBar::new(
        request.steps.unwrap_or_else(|| berth_agents::train::default_steps(request.agent, &request.target)),
    );
    bar.set_style(
        ProgressStyle::with_template("train {prefix} [{bar:30}] {pos}/{len} steps, {msg} (eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("{} on {}", request.agent, request.target.name()));
    let started = std::time::Instant::now();
    let trained = berth_agents::train(&request, &mut |p: Progress| {
        bar.set_length(p.total);
        bar.set_position(p.step);
        let ret = p.recent_return.map_or("-".into(), |r| format!("{r:.2}"));
        bar.set_message(format!("{:.0} SPS, return {ret}", p.sps));
        Flow::Continue
    })?;
    bar.finish_and_clear();
    let write = |name: &str, bytes: &[u8]| -> Result<()> {
        let path = out.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write `{}`", path.display()))
    };
    write("model.bin", &trained.model.to_bytes())?;
    write("hyperparameters.json", serde_json::to_string_pretty(&trained.model.header)?.as_bytes())?;
    trained.log.write_csv(&out.join("log.csv"))?;
    eprintln!(
        "trained {} for {} steps in {:.1} s: {}",
        request.agent,
        trained.model.header.trained_steps,
        started.elapsed().as_secs_f64(),
        out.join("model.bin").display()
    );
    let title = format!("{} on {}, seed {seed}", request.agent, request.target.name());
    let curve = out.join("learning_curve.png");
    // The closing comparison runs on the simulator, a replayed run's included.
    let Some(scenario) = request.target.scenario() else {
        let mut agent = trained.agent;
        let score = berth_agents::train::cartpole_score(agent.as_mut(), 100, 10_000)?;
        println!("cartpole: mean return {score:.1} over 100 greedy episodes (solved at 475)");
        let solved = [Reference { label: "solved".into(), value: 475.0 }];
        return plot_curve(&trained.log, &title, &solved, &curve);
    };
    let mut contenders: Vec<Contender> =
        default_policies().into_iter().map(Contender::named).collect::<Result<Vec<_>, _>>()?;
    contenders.push(Contender::Policy(Box::new(AgentPolicy::new(trained.agent))));
    let rows = compare_and_print(scenario, contenders, args.episodes, scenario.seed, DayStart::Fresh, false)?;
    // The random baseline is far below the rest and would flatten the curve.
    let references: Vec<Reference> = rows[..rows.len() - 1]
        .iter()
        .filter(|r| r.policy != "random")
        .map(|r| Reference { label: r.policy.clone(), value: r.reward })
        .collect();
    plot_curve(&trained.log, &title, &references, &curve)
}

/// Writes the learning curve, saying where; a run too short to finish an episode gets a
/// note instead of a plot.
fn plot_curve(log: &RunLog, title: &str, references: &[Reference], path: &Path) -> Result<()> {
    if log.rows().iter().all(|r| r.episodic_return.is_none()) {
        eprintln!("note: no episode finished during training; no learning curve drawn");
        return Ok(());
    }
    learning_curve(log, title, references, path)?;
    eprintln!("learning curve: {}", path.display());
    Ok(())
}

fn experiment_run(args: ExperimentRunArgs) -> Result<()> {
    let exp = crate::cli::experiment::Experiment::load(&args.file)
        .with_context(|| format!("experiment `{}`", args.file.display()))?;
    let out = args.out.unwrap_or_else(|| {
        let dir = args.file.parent().unwrap_or(Path::new("."));
        dir.join("results").join(&exp.name)
    });
    let options = crate::cli::experiment::Options { jobs: args.jobs, out: out.clone(), fresh: args.fresh };
    let outcome = crate::cli::experiment::run(&exp, &options)?;
    print!("{}", outcome.summary);
    eprintln!(
        "{} run(s) done now, {} resumed; results in {}: {}",
        outcome.ran,
        outcome.resumed,
        out.display(),
        outcome.files.join(", ")
    );
    Ok(())
}

/// A `--config` TOML file of hyperparameters, as JSON.
fn read_config(path: &std::path::Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--config: cannot read `{}`", path.display()))?;
    toml::from_str::<serde_json::Value>(&text)
        .with_context(|| format!("--config: `{}` is not valid TOML", path.display()))
}

fn bench_agents(args: AgentsBenchArgs) -> Result<()> {
    if !args.env_seconds.is_finite() || args.env_seconds <= 0.0 {
        bail!("--env-seconds: must be positive");
    }
    if args.steps == 0 {
        bail!("--steps: must be at least 1");
    }
    let overrides = match &args.config {
        Some(path) => read_config(path)?,
        None => serde_json::Value::Null,
    };
    let mut rows = Vec::new();
    for name in &args.scenario {
        let scenario = shipped::load(name).with_context(|| format!("--scenario: `{name}`"))?;
        if !args.json {
            eprintln!("measuring {name} ...");
        }
        let row = berth_agents::bench::entity(scenario, &overrides, args.steps, args.env_seconds);
        rows.push(row.with_context(|| format!("measuring `{name}` (--config, --steps)"))?);
    }
    let peak = berth_env::bench::peak_memory_mib(None);
    if args.json {
        let out = serde_json::json!({"rows": rows, "peak_memory_mib": peak});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for r in &rows {
            println!(
                "{}: {} nodes, {} replicas; network {} parameters ({:.1} KiB), built in {:.1} ms; env {:.0} steps/s; PPO training {:.0} steps/s over {} steps",
                r.scenario,
                r.nodes,
                r.replicas,
                r.parameters,
                r.parameter_bytes as f64 / 1024.0,
                r.build_ms,
                r.env_steps_per_sec,
                r.train_steps_per_sec,
                r.train_steps
            );
        }
        if let Some(mib) = peak {
            println!("peak memory (VmHWM): {mib:.1} MiB");
        }
    }
    Ok(())
}

fn bench_env(args: BenchEnvArgs) -> Result<()> {
    if !args.seconds.is_finite() || args.seconds <= 0.0 {
        bail!("--seconds: must be positive");
    }
    if args.copies == 0 {
        bail!("--copies: must be at least 1");
    }
    let names: Vec<String> = if args.scenario.is_empty() {
        shipped::names().map(str::to_string).collect()
    } else {
        args.scenario.clone()
    };
    let budget = Duration::from_secs_f64(args.seconds);
    let mut rows = Vec::new();
    for name in &names {
        let scenario = shipped::shipped(name)
            .with_context(|| format!("--scenario: `{name}` is not a shipped scenario"))?;
        if !args.json {
            eprintln!("measuring {name} ...");
        }
        rows.push(berth_env::bench::BenchRow {
            scenario: name.clone(),
            steps_per_sec: berth_env::bench::single(scenario.clone(), budget)?,
            vectorized: false,
            copies: 1,
        });
        rows.push(berth_env::bench::BenchRow {
            scenario: name.clone(),
            steps_per_sec: berth_env::bench::vectorized(scenario, args.copies, budget)?,
            vectorized: true,
            copies: args.copies,
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", table::bench_table(&rows));
        if let Some(mib) = berth_env::bench::peak_memory_mib(None) {
            println!("peak memory (VmHWM): {mib:.1} MiB");
        }
    }
    Ok(())
}
