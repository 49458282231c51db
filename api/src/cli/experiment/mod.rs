//! `berth experiment run`: every (scenario, policy, seed) an experiment file names, run in
//! parallel, resumable, and reported as CSV, a Markdown summary and PNG plots.
//!
//! - [`spec`]: the file and its checks; [`execute`]: the runs and running one;
//! - [`run_state`]: one JSON file per finished run (resume); [`report`]: CSVs and summary;
//!   [`plots`]: the PNGs.

pub mod execute;
pub mod plots;
pub mod report;
pub mod run_state;
pub mod spec;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use execute::{RunSpec, plan};
use report::{EnvSpeed, Line};
use run_state::{RunRecord, StateDir};
pub use spec::Experiment;

/// What can go wrong in an experiment.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field of the experiment file.
    #[error("{field}: {reason}")]
    Invalid {
        /// Path of the field, e.g. `agents[1].steps`.
        field: String,
        /// Why it is refused.
        reason: String,
    },
    /// Reading or writing a file.
    #[error("`{path}`: {reason}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        reason: String,
    },
    /// The gym.
    #[error(transparent)]
    Env(#[from] berth_env::Error),
    /// Training.
    #[error(transparent)]
    Agents(#[from] berth_agents::Error),
    /// Runs that failed; the others are kept and a rerun resumes.
    #[error("{} run(s) failed (the finished ones are kept; rerun to resume):\n  {}", .0.len(), .0.join("\n  "))]
    Runs(Vec<String>),
}

/// How to run an experiment.
#[derive(Debug, Clone)]
pub struct Options {
    /// Runs at once.
    pub jobs: usize,
    /// Results folder.
    pub out: PathBuf,
    /// Forget finished runs and run everything again.
    pub fresh: bool,
}

/// What a run of the command did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Runs done now.
    pub ran: usize,
    /// Runs found finished from an earlier invocation.
    pub resumed: usize,
    /// Files written, relative to the results folder.
    pub files: Vec<String>,
    /// The Markdown summary.
    pub summary: String,
}

/// File-name-safe form of a scenario or condition name.
pub fn slug(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '-' }).collect()
}

/// Runs what is not finished yet, then writes the report from every finished run.
pub fn run(exp: &Experiment, options: &Options) -> Result<Outcome, Error> {
    if options.jobs == 0 {
        return Err(Error::Invalid { field: "--jobs".into(), reason: "must be at least 1".into() });
    }
    std::fs::create_dir_all(&options.out).map_err(|e| run_state::io(&options.out, e))?;
    let state = StateDir::new(options.out.join("state"));
    if options.fresh {
        state.clear()?;
    }
    let runs = plan(exp);
    let stored: Vec<Option<RunRecord>> =
        runs.iter().map(|r| state.done(&r.key(), &r.fingerprint(exp))).collect();
    let todo: Vec<&RunSpec> = runs.iter().zip(&stored).filter(|(_, s)| s.is_none()).map(|(r, _)| r).collect();
    let resumed = runs.len() - todo.len();
    if resumed > 0 {
        eprintln!("resuming: {resumed} of {} runs finished earlier", runs.len());
    }
    execute_all(exp, &todo, &state, options.jobs)?;
    // Runs done now are read back from their files, so the report always sees stored numbers.
    let records: Vec<RunRecord> = runs
        .iter()
        .zip(stored)
        .map(|(r, s)| s.or_else(|| state.done(&r.key(), &r.fingerprint(exp))).expect("every run finished"))
        .collect();
    let speeds = measure_env(exp, &options.out.join("state").join("env_sps.json"))?;
    let (files, summary) = write_report(exp, &records, &speeds, &options.out)?;
    Ok(Outcome { ran: todo.len(), resumed, files, summary })
}

/// Runs `todo` on `jobs` threads with one progress bar over all their steps.
fn execute_all(exp: &Experiment, todo: &[&RunSpec], state: &StateDir, jobs: usize) -> Result<(), Error> {
    if todo.is_empty() {
        return Ok(());
    }
    let bar = ProgressBar::new(todo.iter().map(|r| r.work(exp)).sum());
    bar.set_style(
        ProgressStyle::with_template("experiment {prefix} [{bar:30}] {percent}% ({msg}, eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(exp.name.clone());
    let next = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    bar.set_message(format!("0/{} runs", todo.len()));
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(todo.len()) {
            scope.spawn(|| {
                while let Some(spec) = todo.get(next.fetch_add(1, Ordering::SeqCst)) {
                    let key = spec.key();
                    let result = spec.run(exp, &|n| bar.inc(n)).and_then(|record| state.save(&key, &record));
                    if let Err(e) = result {
                        failures.lock().expect("no panics while held").push(format!("{key}: {e}"));
                    }
                    let n = finished.fetch_add(1, Ordering::SeqCst) + 1;
                    bar.set_message(format!("{n}/{} runs", todo.len()));
                }
            });
        }
    });
    bar.finish_and_clear();
    let failures = failures.into_inner().expect("threads joined");
    if failures.is_empty() { Ok(()) } else { Err(Error::Runs(failures)) }
}

/// Single-thread env steps/s of every scenario, when the file asks for it; measured once and
/// kept with the runs, so a resumed experiment reports the figures of the same machine.
fn measure_env(exp: &Experiment, cache: &Path) -> Result<Vec<EnvSpeed>, Error> {
    if exp.env_bench_seconds <= 0.0 {
        return Ok(Vec::new());
    }
    let names: Vec<&str> = exp.scenarios.iter().map(|s| s.name.as_str()).collect();
    let key = format!("{}|{}", names.join(","), exp.env_bench_seconds);
    if let Ok(bytes) = std::fs::read(cache)
        && let Ok((cached_key, speeds)) = serde_json::from_slice::<(String, Vec<EnvSpeed>)>(&bytes)
        && cached_key == key
    {
        return Ok(speeds);
    }
    let speeds = exp
        .scenarios
        .iter()
        .map(|s| {
            let budget = Duration::from_secs_f64(exp.env_bench_seconds);
            Ok(EnvSpeed {
                scenario: s.name.clone(),
                nodes: s.scenario.nodes.len(),
                replicas: s.scenario.replica_count(),
                steps_per_sec: berth_env::bench::single(s.scenario.clone(), budget)?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let dir = cache.parent().expect("a file in the state folder");
    std::fs::create_dir_all(dir).map_err(|e| run_state::io(dir, e))?;
    let bytes = serde_json::to_vec(&(key, &speeds)).expect("speeds serialise");
    std::fs::write(cache, bytes).map_err(|e| run_state::io(cache, e))?;
    Ok(speeds)
}

/// Writes the CSVs, the plots and `summary.md`; returns the files and the summary.
fn write_report(
    exp: &Experiment,
    records: &[RunRecord],
    speeds: &[EnvSpeed],
    out: &Path,
) -> Result<(Vec<String>, String), Error> {
    let lines = report::lines(exp, records);
    report::write_runs_csv(&out.join("runs.csv"), exp, &lines)?;
    report::write_timings_csv(&out.join("timings.csv"), records)?;
    let mut files = vec!["runs.csv".to_string(), "timings.csv".to_string()];
    if !speeds.is_empty() {
        report::write_env_csv(&out.join("env_sps.csv"), speeds)?;
        files.push("env_sps.csv".into());
    }
    let groups = report::groups(&lines);
    let plots = draw_plots(exp, records, &groups, speeds, out)?;
    let summary = report::summary_markdown(exp, &groups, records, speeds, &plots);
    std::fs::write(out.join("summary.md"), &summary)
        .map_err(|e| run_state::io(&out.join("summary.md"), e))?;
    files.push("summary.md".into());
    files.extend(plots);
    Ok((files, summary))
}

fn draw_plots(
    exp: &Experiment,
    records: &[RunRecord],
    groups: &[report::Group],
    speeds: &[EnvSpeed],
    out: &Path,
) -> Result<Vec<String>, Error> {
    let mut plots = Vec::new();
    let mean_of = |scenario: &str, condition: &str, policy: &str, f: fn(&Line) -> f64| {
        groups
            .iter()
            .find(|g| g.scenario == scenario && g.condition == condition && g.policy == policy)
            .and_then(|g| g.stat(|l| Some(f(l))))
    };
    for scenario in &exp.scenarios {
        let agents: Vec<plots::Curves> = exp
            .agents
            .iter()
            .map(|a| plots::Curves {
                label: a.name.clone(),
                seeds: records
                    .iter()
                    .filter(|r| r.scenario == scenario.name && r.policy == a.name && !r.curve.is_empty())
                    .map(|r| r.curve.clone())
                    .collect(),
            })
            .filter(|c| !c.seeds.is_empty())
            .collect();
        if !agents.is_empty() {
            let references: Vec<(String, f64)> = exp
                .baselines
                .iter()
                .filter(|b| *b != "random")
                .map(String::as_str)
                .chain(exp.oracle.then_some("oracle"))
                .filter_map(|p| {
                    mean_of(&scenario.name, spec::BASE_CONDITION, p, |l| l.result.row.reward)
                        .map(|s| (p.to_string(), s.0))
                })
                .collect();
            let name = format!("learning_curves_{}.png", slug(&scenario.name));
            let title = format!("Learning curves on {}", scenario.name);
            plots::learning_curves(&out.join(&name), &title, &agents, &references)?;
            plots.push(name);
        }
        for condition in &scenario.conditions {
            if let Some(name) = day_plot(exp, records, groups, scenario, &condition.name, out)? {
                plots.push(name);
            }
        }
    }
    let latency = bar_panels(exp, groups, |l| Some(l.result.row.mean_latency_ms));
    let title = "Mean request latency (mean over seeds, 95% interval)";
    plots::bars(&out.join("latency.png"), title, "ms", &latency)?;
    plots.insert(0, "latency.png".into());
    // Where GPUs are shared, what a placement costs in GPUs is half of what sharing buys.
    let shared = |s: &spec::ScenarioSpec| {
        s.scenario.nodes.iter().any(|n| n.gpu.as_ref().is_some_and(|g| g.sharing.is_shared()))
    };
    if exp.scenarios.iter().any(shared) {
        let gpus = bar_panels(exp, groups, |l| l.result.row.gpus_used);
        let title = "Physical GPUs in use, mean over ticks (mean over seeds, 95% interval)";
        plots::bars(&out.join("gpus.png"), title, "GPUs", &gpus)?;
        plots.insert(1, "gpus.png".into());
    }
    if speeds.len() > 1 {
        let mut series = vec![(
            "env (simulator)".to_string(),
            speeds.iter().map(|s| (s.nodes as f64, s.steps_per_sec)).collect(),
        )];
        for a in &exp.agents {
            let points: Vec<(f64, f64)> = speeds
                .iter()
                .filter_map(|s| {
                    let sps: Vec<f64> = records
                        .iter()
                        .filter(|r| r.scenario == s.scenario && r.policy == a.name)
                        .map(|r| r.timing.train_sps)
                        .collect();
                    (!sps.is_empty()).then(|| (s.nodes as f64, report::mean_ci(&sps).0))
                })
                .collect();
            series.push((format!("{} training", a.name), points));
        }
        plots::scaling(&out.join("scaling.png"), &series)?;
        plots.push("scaling.png".into());
    }
    Ok(plots)
}

/// Latency over the first evaluation day of the first seed: the best policy (lowest mean
/// latency over seeds, the oracle and `spread` aside) and the best agent, against `spread`
/// and the oracle.
/// One bar panel per scenario and condition: each policy's `figure`, mean over seeds with
/// its 95% interval (`random`, off every scale, left out; a policy without the figure too).
fn bar_panels(
    exp: &Experiment,
    groups: &[report::Group],
    figure: impl Fn(&report::Line) -> Option<f64>,
) -> Vec<plots::BarPanel> {
    exp.scenarios
        .iter()
        .flat_map(|s| s.conditions.iter().map(move |c| (s, c)))
        .map(|(s, c)| plots::BarPanel {
            title: if c.name == spec::BASE_CONDITION {
                s.name.clone()
            } else {
                format!("{} ({})", s.name, c.name)
            },
            bars: groups
                .iter()
                .filter(|g| g.scenario == s.name && g.condition == c.name && g.policy != "random")
                .filter_map(|g| g.stat(&figure).map(|(m, h)| (g.policy.to_string(), m, h)))
                .collect(),
        })
        .collect()
}

fn day_plot(
    exp: &Experiment,
    records: &[RunRecord],
    groups: &[report::Group],
    scenario: &spec::ScenarioSpec,
    condition: &str,
    out: &Path,
) -> Result<Option<String>, Error> {
    let latency =
        |g: &&report::Group| g.stat(|l| Some(l.result.row.mean_latency_ms)).map_or(f64::INFINITY, |s| s.0);
    let here: Vec<&report::Group> = groups
        .iter()
        .filter(|g| g.scenario == scenario.name && g.condition == condition && g.policy != "oracle")
        .collect();
    let best_of = |keep: &dyn Fn(&str) -> bool| {
        here.iter()
            .filter(|g| keep(g.policy))
            .min_by(|a, b| latency(a).total_cmp(&latency(b)))
            .map(|g| g.policy)
    };
    let Some(best) = best_of(&|p| p != "spread") else { return Ok(None) };
    let best_agent = best_of(&|p| exp.agents.iter().any(|a| a.name == p));
    let seed = exp.seeds[0];
    let trace = |policy: &str| {
        records
            .iter()
            .find(|r| r.scenario == scenario.name && r.policy == policy && r.seed == seed)
            .and_then(|r| r.results.iter().find(|c| c.condition == condition))
            .map(|c| (policy.to_string(), c.day_latency_ms.clone()))
    };
    let mut policies = vec![best];
    policies.extend(best_agent.filter(|a| *a != best));
    policies.extend(["spread", "oracle"]);
    let lines: Vec<(String, Vec<f64>)> = policies.into_iter().filter_map(trace).collect();
    let name = if condition == spec::BASE_CONDITION {
        format!("day_{}.png", slug(&scenario.name))
    } else {
        format!("day_{}_{}.png", slug(&scenario.name), slug(condition))
    };
    let title = format!("{} ({condition}), first evaluation day of seed {seed}", scenario.name);
    let s = &scenario.scenario;
    plots::day(&out.join(&name), &title, s.tick_s / 3600.0, &lines)?;
    Ok(Some(name))
}
