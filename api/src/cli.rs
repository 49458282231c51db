//! Command-line arguments and what each command does.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use berth_env::evaluate::{self, Contender, POLICIES};
use berth_env::{bench, shipped};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::table;

/// berth: learns where to place GPU inference services on a Kubernetes cluster.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the baselines and the oracle on a scenario and print how they compare.
    Eval(EvalArgs),
    /// Measure the speed of berth's parts.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
}

#[derive(Debug, Args)]
struct EvalArgs {
    /// Scenario: a YAML file, or a shipped name (tiny, gpu-small, gpu-medium, gpu-large).
    #[arg(long)]
    scenario: String,
    /// Policies to compare, comma-separated: random, spread, greedy, oracle.
    #[arg(long, value_delimiter = ',', default_values_t = POLICIES.map(String::from))]
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
}

#[derive(Debug, Subcommand)]
enum BenchWhat {
    /// Env steps per second, single thread, for every shipped scenario and a vector env.
    Env(BenchEnvArgs),
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
        Command::Eval(args) => eval(args),
        Command::Bench { what: BenchWhat::Env(args) } => bench_env(args),
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

fn eval(args: EvalArgs) -> Result<()> {
    for p in &args.policy {
        if !POLICIES.contains(&p.as_str()) {
            bail!("--policy: unknown policy `{p}` (expected one of {})", POLICIES.join(", "));
        }
    }
    if args.episodes == 0 {
        bail!("--episodes: must be at least 1");
    }
    let scenario = shipped::load(&args.scenario).with_context(|| "--scenario".to_string())?;
    let seed = args.seed.unwrap_or(scenario.seed);
    let bar = progress_bar(
        evaluate::total_steps(&scenario, args.policy.len(), args.episodes),
        &format!("eval {}", scenario.name),
    );
    let contenders = args.policy.iter().map(|p| Contender::named(p)).collect::<Result<Vec<_>, _>>()?;
    let (rows, note) =
        evaluate::compare(scenario.clone(), contenders, args.episodes, seed, &mut || bar.inc(1))?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "scenario {} ({} nodes, {} replicas), {} episode(s) of {} ticks from seed {seed}",
            scenario.name,
            scenario.nodes.len(),
            scenario.replica_count(),
            args.episodes,
            scenario.episode_ticks
        );
        print!("{}", table::eval_table(&rows));
    }
    if let Some(note) = note {
        eprintln!("note: no oracle row: {note}");
    }
    Ok(())
}

/// Peak resident memory of this process, from /proc (Linux only).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn bench_env(args: BenchEnvArgs) -> Result<()> {
    if !args.seconds.is_finite() || args.seconds <= 0.0 {
        bail!("--seconds: must be positive");
    }
    if args.copies == 0 {
        bail!("--copies: must be at least 1");
    }
    let names: Vec<String> = if args.scenario.is_empty() {
        shipped::SHIPPED.iter().map(|(n, _)| n.to_string()).collect()
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
        rows.push(bench::BenchRow {
            scenario: name.clone(),
            steps_per_sec: bench::single(scenario.clone(), budget)?,
            vectorized: false,
            copies: 1,
        });
        rows.push(bench::BenchRow {
            scenario: name.clone(),
            steps_per_sec: bench::vectorized(scenario, args.copies, budget)?,
            vectorized: true,
            copies: args.copies,
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", table::bench_table(&rows));
        if let Some(mib) = peak_rss_mib() {
            println!("peak memory (VmHWM): {mib:.1} MiB");
        }
    }
    Ok(())
}
