//! Runs policies and the oracle over the same episodes and summarises each as one row of
//! the comparison table `berth eval` prints.

use std::sync::Arc;

use berth_core::Scenario;
use serde::{Deserialize, Serialize};

use crate::PlacementEnv;
use crate::backend::Trace;
use crate::baselines::{self, Policy, baseline};
use crate::cost::TickMetrics;
use crate::error::{Error, Result};
use crate::fixed::{FixedPolicy, search_steps};
use crate::free_moves::FreeMoves;
use crate::gym::Env;
use crate::oracle::{Oracle, OracleTick};
use crate::shield::{ShieldSettings, ShieldedPolicy};

/// The contenders of a comparison unless told otherwise: every baseline, then the oracle.
pub fn default_policies() -> Vec<&'static str> {
    baselines::NAMES.iter().copied().chain(["oracle"]).collect()
}

/// The names `--policy` accepts besides saved models: every baseline, `fixed`, `lookahead`
/// and `planner` (each simulates or searches for seconds, so they are asked for by name), the
/// oracle, and `free-moves` ([`crate::free_moves`]) where the oracle cannot search.
pub fn named_policies() -> Vec<&'static str> {
    baselines::NAMES
        .iter()
        .copied()
        .chain(["fixed", "lookahead", "planner", "oracle", "free-moves"])
        .collect()
}

/// One row of the comparison: a policy's figures over all evaluated episodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRow {
    /// Policy name.
    pub policy: String,
    /// Mean end-to-end latency of a request, ms (request-weighted over all ticks).
    pub mean_latency_ms: f64,
    /// Request-weighted mean of each tick's p95 latency, ms.
    pub p95_latency_ms: f64,
    /// Fraction of requests over the SLO.
    pub slo_miss: f64,
    /// Replica moves per episode.
    pub moves: f64,
    /// Mean episode return (sum of rewards).
    pub reward: f64,
    /// `(cost - oracle cost) / oracle cost` with cost = -reward; `None` without an oracle.
    pub gap_to_oracle: Option<f64>,
    /// Physical GPUs with anything on them, mean over ticks; `None` for the oracle, whose
    /// search weighs latency only and does not track GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus_used: Option<f64>,
    /// The same figures for each episode (simulated day), in order: what claims about a
    /// policy's worst day are read from. Not in the JSON (`berth eval --per-day` writes them).
    #[serde(skip)]
    pub days: Vec<DayRow>,
}

/// One episode's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DayRow {
    /// The episode's seed.
    pub seed: u64,
    /// Its cost: minus its return.
    pub cost: f64,
    /// Mean end-to-end latency of a request that day, ms.
    pub mean_latency_ms: f64,
    /// Fraction of that day's requests over the SLO.
    pub slo_miss: f64,
    /// Replica moves that day.
    pub moves: u32,
    /// Physical GPUs with anything on them, mean over that day's ticks (`None` for the oracle).
    pub gpus_used: Option<f64>,
}

/// Accumulates ticks into a row.
#[derive(Debug, Default)]
struct Summary {
    weight: f64,
    latency: f64,
    p95: f64,
    miss: f64,
    moves: f64,
    reward: f64,
    /// GPUs in use summed over ticks, and the ticks counted (none for the oracle).
    gpus: f64,
    gpu_ticks: f64,
    /// Per episode: its seed and the sums of its ticks.
    days: Vec<DaySums>,
}

/// One episode's figures while it runs: `row` holds request-weighted sums until the end.
#[derive(Debug, Default)]
struct DaySums {
    row: DayRow,
    weight: f64,
    gpus: f64,
    gpu_ticks: f64,
}

impl Summary {
    /// Starts the figures of the episode of `seed`.
    fn day(&mut self, seed: u64) {
        self.days.push(DaySums { row: DayRow { seed, ..DayRow::default() }, ..DaySums::default() });
    }

    fn add(&mut self, m: &TickMetrics, moves: u32, reward: f64) {
        let w = m.offered_rps;
        self.weight += w;
        self.latency += w * m.mean_latency_ms;
        self.p95 += w * m.p95_latency_ms;
        self.miss += w * m.slo_miss;
        self.moves += moves as f64;
        self.reward += reward;
        if let Some(DaySums { row: day, weight, .. }) = self.days.last_mut() {
            *weight += w;
            day.cost -= reward;
            day.mean_latency_ms += w * m.mean_latency_ms;
            day.slo_miss += w * m.slo_miss;
            day.moves += moves;
        }
    }

    /// Counts the GPUs in use after a tick, overall and for the day.
    fn add_gpus(&mut self, gpus: u32) {
        self.gpus += f64::from(gpus);
        self.gpu_ticks += 1.0;
        if let Some(day) = self.days.last_mut() {
            day.gpus += f64::from(gpus);
            day.gpu_ticks += 1.0;
        }
    }

    fn row(&self, policy: &str, episodes: usize) -> EvalRow {
        let w = self.weight.max(f64::MIN_POSITIVE);
        let days = self
            .days
            .iter()
            .map(|d| {
                let weight = d.weight.max(f64::MIN_POSITIVE);
                DayRow {
                    mean_latency_ms: d.row.mean_latency_ms / weight,
                    slo_miss: d.row.slo_miss / weight,
                    gpus_used: (d.gpu_ticks > 0.0).then(|| d.gpus / d.gpu_ticks),
                    ..d.row
                }
            })
            .collect();
        EvalRow {
            policy: policy.to_string(),
            mean_latency_ms: self.latency / w,
            p95_latency_ms: self.p95 / w,
            slo_miss: self.miss / w,
            moves: self.moves / episodes as f64,
            reward: self.reward / episodes as f64,
            gap_to_oracle: None,
            gpus_used: (self.gpu_ticks > 0.0).then(|| self.gpus / self.gpu_ticks),
            days,
        }
    }
}

/// Seeds of the evaluation episodes: `seed`, `seed + 1`, ...
pub fn episode_seeds(seed: u64, episodes: usize) -> Vec<u64> {
    (0..episodes as u64).map(|i| seed.wrapping_add(i)).collect()
}

/// Where each evaluated day (episode) starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DayStart {
    /// Every day from the scenario's start placement (or where the policy's own scheduler
    /// places the replicas): each day a fresh deployment, comparable across policies.
    #[default]
    Fresh,
    /// Each day after the first where the policy left the replicas the day before, every node
    /// Ready again: a cluster that runs on. A policy that moves replicas toward a better
    /// placement pays for those moves once, not every morning.
    CarriedOver,
}

/// Runs `policy` for one episode per seed; `on_tick` is called after every step with the
/// episode's index in `seeds` and the tick's metrics (progress bars, latency traces).
pub fn run_policy(
    env: &mut PlacementEnv,
    policy: &mut dyn Policy,
    seeds: &[u64],
    on_tick: &mut dyn FnMut(usize, &TickMetrics),
) -> Result<EvalRow> {
    run_policy_from(env, policy, seeds, DayStart::Fresh, on_tick)
}

/// [`run_policy`], each day after the first starting as `start` says.
pub fn run_policy_from(
    env: &mut PlacementEnv,
    policy: &mut dyn Policy,
    seeds: &[u64],
    start: DayStart,
    on_tick: &mut dyn FnMut(usize, &TickMetrics),
) -> Result<EvalRow> {
    let mut summary = Summary::default();
    for (episode, &seed) in seeds.iter().enumerate() {
        summary.day(seed);
        policy.reset(seed);
        let carried = (start == DayStart::CarriedOver && episode > 0).then(|| env.placement().to_vec());
        // Asked every day, carried over or not: a scheduler's start draws from the policy's
        // random numbers.
        let scheduled = policy.start(env);
        match carried.or(scheduled) {
            Some(placement) => {
                env.reset_placed(seed, &placement)?;
            }
            None => {
                env.reset(seed);
            }
        }
        loop {
            let action = policy.act(env);
            let step = env.step(action)?;
            summary.add(&step.info.metrics, step.info.moves, step.reward);
            on_tick(episode, &step.info.metrics);
            let terminal = step.terminated || step.truncated;
            summary.add_gpus(env.gpus_in_use());
            if terminal {
                break;
            }
        }
    }
    let name = policy.name().to_string();
    Ok(summary.row(&name, seeds.len()))
}

/// Runs the oracle over the same episodes (same traces) as the policies; `on_tick` as in
/// [`run_policy`].
pub fn run_oracle(
    env: &mut PlacementEnv,
    seeds: &[u64],
    on_tick: &mut dyn FnMut(usize, &TickMetrics),
) -> Result<EvalRow> {
    let mut oracle = Oracle::new(env.scenario().clone())?;
    run_search(env, seeds, "oracle", on_tick, &mut |_, trace| Ok(oracle.episode(trace)))
}

/// Runs the free re-placement reference ([`FreeMoves`]) over the same episodes as the
/// policies; `on_tick` as in [`run_policy`].
pub fn run_free_moves(
    env: &mut PlacementEnv,
    seeds: &[u64],
    on_tick: &mut dyn FnMut(usize, &TickMetrics),
) -> Result<EvalRow> {
    let mut search = FreeMoves::new(env.scenario().clone())?;
    run_search(env, seeds, "free-moves", on_tick, &mut |seed, trace| search.episode(seed, trace))
}

/// The row named `name` of a search that places every tick of a day's trace itself, moves
/// free (`episode` gives each tick's metrics for a seed and its trace).
fn run_search(
    env: &mut PlacementEnv,
    seeds: &[u64],
    name: &str,
    on_tick: &mut dyn FnMut(usize, &TickMetrics),
    episode: &mut dyn FnMut(u64, &Trace) -> Result<Vec<OracleTick>>,
) -> Result<EvalRow> {
    let mut summary = Summary::default();
    for (episode_index, &seed) in seeds.iter().enumerate() {
        summary.day(seed);
        env.reset(seed);
        for tick in episode(seed, env.trace())? {
            summary.add(&tick.metrics, tick.moves, -tick.metrics.cost);
            on_tick(episode_index, &tick.metrics);
        }
    }
    Ok(summary.row(name, seeds.len()))
}

/// Fills `gap_to_oracle` in every row from the oracle's row, if there is one.
pub fn fill_gaps(rows: &mut [EvalRow]) {
    let Some(oracle_cost) = rows.iter().find(|r| r.policy == "oracle").map(|r| -r.reward) else {
        return;
    };
    for row in rows {
        row.gap_to_oracle = (oracle_cost > 0.0).then(|| (-row.reward - oracle_cost) / oracle_cost);
    }
}

/// A row's cost against a baseline's on the same days: the mean and the largest of the
/// per-day ratios minus 1, so each day weighs the same however costly (how results here
/// compare a policy with `greedy`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Versus {
    /// Mean over the days of `cost / baseline's cost - 1`.
    pub mean: f64,
    /// The worst (largest) of them.
    pub worst: f64,
}

/// `row` against `baseline` over the days both played (matched by seed); `None` where they
/// share no day or the baseline's cost on one is not above 0.
pub fn versus(row: &EvalRow, baseline: &EvalRow) -> Option<Versus> {
    let ratios: Vec<f64> = row
        .days
        .iter()
        .filter_map(|day| {
            let base = baseline.days.iter().find(|b| b.seed == day.seed)?;
            Some(if base.cost > 0.0 { day.cost / base.cost - 1.0 } else { f64::NAN })
        })
        .collect();
    if ratios.is_empty() || ratios.iter().any(|r| !r.is_finite()) {
        return None;
    }
    let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
    Some(Versus { mean, worst: ratios.iter().copied().fold(f64::MIN, f64::max) })
}

/// Steps one evaluation takes, for progress bars: every contender's episodes, and the
/// `fixed` search's ticks before its own.
pub fn total_steps(scenario: &Scenario, contenders: &[Contender], episodes: usize) -> u64 {
    let searches: u64 =
        contenders.iter().filter(|c| matches!(c, Contender::Fixed)).map(|_| search_steps(scenario)).sum();
    scenario.episode_ticks as u64 * contenders.len() as u64 * episodes as u64 + searches
}

/// One contender in a comparison.
pub enum Contender {
    /// A policy acting in the env (a baseline or a trained agent).
    Policy(Box<dyn Policy>),
    /// The per-tick exhaustive oracle.
    Oracle,
    /// Free re-placement each tick, one service at a time ([`FreeMoves`]).
    FreeMoves,
    /// The best fixed placement, searched for before the episodes ([`FixedPolicy::search`]).
    Fixed,
    /// The planner over this many ticks ([`baselines::planner::build`]), built for the scenario.
    Planner(u32),
}

impl Contender {
    /// A baseline or the oracle by name (one of [`named_policies`]).
    pub fn named(name: &str) -> Result<Self> {
        match name {
            "oracle" => Ok(Self::Oracle),
            "free-moves" => Ok(Self::FreeMoves),
            "fixed" => Ok(Self::Fixed),
            _ if name.starts_with("planner") => baselines::planner_horizon(name)
                .map(Self::Planner)
                .ok_or_else(|| Error::InvalidArgument { name: "policy", reason: unknown_policy(name) }),
            _ if name.starts_with("shield:") => {
                Self::named(&name["shield:".len()..])?.shielded(name, ShieldSettings::default())
            }
            _ => baseline(name)
                .map(Self::Policy)
                .ok_or_else(|| Error::InvalidArgument { name: "policy", reason: unknown_policy(name) }),
        }
    }
}

impl Contender {
    /// This contender behind the shield ([`ShieldedPolicy`]) with `settings`; `spec` names it
    /// in errors.
    pub fn shielded(self, spec: &str, settings: ShieldSettings) -> Result<Self> {
        // Each level plans with the one inside at every step of its own rollouts: nesting
        // multiplies the work and adds nothing.
        if spec.strip_prefix("shield:").is_some_and(|inner| inner.starts_with("shield:")) {
            return Err(Error::InvalidArgument {
                name: "policy",
                reason: format!("`{spec}`: a policy is put behind the shield once"),
            });
        }
        match self {
            Self::Policy(inner) => Ok(Self::Policy(Box::new(ShieldedPolicy::with(inner, settings)))),
            _ => Err(Error::InvalidArgument {
                name: "policy",
                reason: format!("`{spec}`: only a policy that acts (a baseline or a model) can be shielded"),
            }),
        }
    }
}

/// Why `name` names no policy: an interval out of range, or a name not known.
pub fn unknown_policy(name: &str) -> String {
    match name.split_once(':') {
        Some((base, secs)) if base.starts_with("descheduler") => {
            format!("`{name}`: the descheduler's interval `{secs}` must be whole seconds from 1 to 86400")
        }
        Some((base @ ("lookahead" | "planner"), ticks)) => format!(
            "`{name}`: the {base}'s horizon `{ticks}` must be whole ticks from 1 to {}",
            baselines::lookahead::MAX_HORIZON_TICKS
        ),
        _ => format!("unknown policy `{name}` (expected one of {})", named_policies().join(", ")),
    }
}

/// Evaluates every contender on `episodes` episodes from `seed` (the same traces for all).
/// The oracle's, `free-moves`', `fixed`'s and the planner's rows are left out where their searches refuse the scenario,
/// with the reasons in the second value.
pub fn compare(
    scenario: Arc<Scenario>,
    contenders: Vec<Contender>,
    episodes: usize,
    seed: u64,
    start: DayStart,
    progress: &mut dyn FnMut(),
) -> Result<(Vec<EvalRow>, Option<String>)> {
    if episodes == 0 {
        return Err(Error::InvalidArgument { name: "episodes", reason: "must be at least 1".into() });
    }
    let mut env = PlacementEnv::new(scenario)?;
    let seeds = episode_seeds(seed, episodes);
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for contender in contenders {
        match contender {
            Contender::Oracle => match run_oracle(&mut env, &seeds, &mut |_, _| progress()) {
                Ok(row) => rows.push(row),
                Err(Error::OracleRefused(why)) => notes.push(format!("no oracle row: {why}")),
                Err(e) => return Err(e),
            },
            Contender::FreeMoves => match run_free_moves(&mut env, &seeds, &mut |_, _| progress()) {
                Ok(row) => rows.push(row),
                Err(Error::OracleRefused(why)) => notes.push(format!("no free-moves row: {why}")),
                Err(e) => return Err(e),
            },
            // The search's ticks count on the same bar as the episodes'.
            Contender::Fixed => match FixedPolicy::search(env.scenario().clone(), &mut *progress) {
                Ok(mut fixed) => {
                    rows.push(run_policy_from(&mut env, &mut fixed, &seeds, start, &mut |_, _| progress())?)
                }
                Err(Error::FixedRefused(why)) => notes.push(format!("no fixed row: {why}")),
                Err(e) => return Err(e),
            },
            Contender::Planner(horizon) => match baselines::planner::build(env.scenario().clone(), horizon) {
                Ok(mut planner) => {
                    rows.push(run_policy_from(&mut env, planner.as_mut(), &seeds, start, &mut |_, _| {
                        progress()
                    })?)
                }
                Err(Error::OracleRefused(why)) => notes.push(format!("no planner row: {why}")),
                Err(e) => return Err(e),
            },
            Contender::Policy(mut policy) => {
                rows.push(run_policy_from(&mut env, policy.as_mut(), &seeds, start, &mut |_, _| progress())?)
            }
        }
    }
    fill_gaps(&mut rows);
    Ok((rows, (!notes.is_empty()).then(|| notes.join("; "))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shipped;

    fn row_of(policy: &str, days: &[(u64, f64)]) -> EvalRow {
        let days = days.iter().map(|&(seed, cost)| DayRow { seed, cost, ..DayRow::default() }).collect();
        EvalRow {
            policy: policy.into(),
            mean_latency_ms: 0.0,
            p95_latency_ms: 0.0,
            slo_miss: 0.0,
            moves: 0.0,
            reward: 0.0,
            gap_to_oracle: None,
            gpus_used: None,
            days,
        }
    }

    /// `greedy`, noting where each day's replicas stand when it first acts.
    struct Starts(Vec<Vec<usize>>);

    impl Policy for Starts {
        fn name(&self) -> &str {
            "starts"
        }
        fn act(&mut self, env: &PlacementEnv) -> usize {
            if env.tick() == 0 {
                self.0.push(env.placement().to_vec());
            }
            baselines::GreedyPolicy.act(env)
        }
    }

    /// Carried over, the second day starts where the policy left the first; fresh, from the
    /// scenario's start for that day.
    #[test]
    fn a_carried_over_day_starts_where_the_day_before_ended() {
        let mut env = PlacementEnv::new(shipped::load("gpu-medium").unwrap()).unwrap();
        let (first, second) = (40_000, 40_001);
        run_policy(&mut env, &mut Starts(Vec::new()), &[first], &mut |_, _| {}).unwrap();
        let ended = env.placement().to_vec();
        env.reset(second);
        let fresh = env.placement().to_vec();
        assert_ne!(ended, fresh, "greedy moved during the first day");
        for (start, expected) in [(DayStart::Fresh, &fresh), (DayStart::CarriedOver, &ended)] {
            let mut starts = Starts(Vec::new());
            run_policy_from(&mut env, &mut starts, &[first, second], start, &mut |_, _| {}).unwrap();
            assert_eq!(&starts.0[1], expected, "{start:?}");
        }
    }

    #[test]
    fn versus_weighs_each_day_alike_and_matches_days_by_seed() {
        let greedy = row_of("greedy", &[(1, 100.0), (2, 200.0)]);
        // Day 2 listed first: matched by seed, not by order.
        let policy = row_of("p", &[(2, 190.0), (1, 102.0)]);
        let v = versus(&policy, &greedy).unwrap();
        assert!((v.mean - (-0.05 + 0.02) / 2.0).abs() < 1e-12, "{v:?}");
        assert!((v.worst - 0.02).abs() < 1e-12, "{v:?}");
        assert_eq!(versus(&row_of("q", &[(3, 1.0)]), &greedy), None, "no day in common");
        assert_eq!(versus(&policy, &row_of("zero", &[(1, 0.0), (2, 5.0)])), None, "a day that cost nothing");
    }

    #[test]
    fn progress_counts_every_tick_the_comparison_simulates_the_fixed_search_included() {
        let scenario = shipped::load("tiny").unwrap();
        let contenders = || ["spread", "fixed", "oracle"].map(|n| Contender::named(n).unwrap());
        let total = total_steps(&scenario, &contenders(), 2);
        let episodes_only = 3 * 2 * u64::from(scenario.episode_ticks);
        assert!(total > episodes_only, "the search's ticks are counted: {total}");
        let mut calls = 0;
        let (rows, _) =
            compare(scenario, contenders().into(), 2, 1, DayStart::Fresh, &mut || calls += 1).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(calls, total);
    }

    /// The planner is a row where it plans (jointly on `tiny`, by service on `gpu-medium`),
    /// and a note saying why elsewhere; its horizon is checked like the lookahead's.
    #[test]
    fn the_planner_runs_where_it_plans_and_says_why_not_elsewhere() {
        let planner = || vec![Contender::named("planner:12").unwrap()];
        for name in ["tiny", "gpu-medium"] {
            let (rows, notes) =
                compare(shipped::load(name).unwrap(), planner(), 1, 1, DayStart::Fresh, &mut || {}).unwrap();
            assert_eq!((rows.len(), rows[0].policy.as_str(), notes), (1, "planner:12", None), "{name}");
        }
        let (rows, notes) =
            compare(shipped::load("gpu-mig").unwrap(), planner(), 1, 1, DayStart::Fresh, &mut || {}).unwrap();
        assert!(rows.is_empty(), "{rows:?}");
        assert!(notes.as_deref().is_some_and(|n| n.starts_with("no planner row")), "{notes:?}");
        for bad in ["planner:0", "planner:289", "planner:x", "planners"] {
            let err = Contender::named(bad).err().expect(bad).to_string();
            assert!(err.contains("policy"), "{bad}: {err}");
        }
        assert!(unknown_policy("planner:0").contains("planner's horizon"));
    }
}
