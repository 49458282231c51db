//! The runs an experiment is made of, and running one: train (agents), then evaluate on
//! every condition over the seed's held-out episodes.

use std::time::Instant;

use berth_agents::nets::DeviceKind;
use berth_agents::{AgentPolicy, Flow, Target, TrainRequest};
use berth_env::PlacementEnv;
use berth_env::baselines::{Policy, baseline, planner, planner_horizon};
use berth_env::cost::TickMetrics;
use berth_env::evaluate::{episode_seeds, run_oracle, run_policy};
use berth_env::shield::ShieldedPolicy;

use super::Error;
use super::run_state::{ConditionResult, Kind, RunRecord, Timing};
use super::spec::{AgentSpec, Experiment, ScenarioSpec};

/// This binary's identity: its size and modification time. Results reproduce only on the
/// same build, so runs stored by another build are not resumed.
fn build_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let meta = std::env::current_exe().and_then(std::fs::metadata);
        let stamp = meta
            .as_ref()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        format!(
            "{}/{}/{}",
            env!("CARGO_PKG_VERSION"),
            meta.map_or(0, |m| m.len()),
            stamp.map_or(0, |d| d.as_nanos())
        )
    })
}

/// Who acts in a run.
#[derive(Debug, Clone, Copy)]
pub enum Contender<'a> {
    /// An agent trained in the run.
    Agent(&'a AgentSpec),
    /// The same agent behind the per-tick shield: trained again from the same seed (training
    /// reproduces exactly, so it is the same model), then evaluated through the shield.
    ShieldedAgent(&'a AgentSpec),
    /// A baseline by name.
    Baseline(&'a str),
    /// The oracle.
    Oracle,
}

/// One (scenario, contender, seed).
#[derive(Debug, Clone, Copy)]
pub struct RunSpec<'a> {
    /// Scenario with its conditions.
    pub scenario: &'a ScenarioSpec,
    /// Who acts.
    pub contender: Contender<'a>,
    /// The seed.
    pub seed: u64,
}

/// Every run of the experiment, in report order: scenario, then agents, baselines and the
/// oracle as the file lists them, then seeds.
pub fn plan(exp: &Experiment) -> Vec<RunSpec<'_>> {
    let mut contenders: Vec<Contender> = Vec::new();
    for a in &exp.agents {
        contenders.push(Contender::Agent(a));
        if exp.shield {
            contenders.push(Contender::ShieldedAgent(a));
        }
    }
    contenders.extend(exp.baselines.iter().map(|b| Contender::Baseline(b)));
    if exp.oracle {
        contenders.push(Contender::Oracle);
    }
    let mut runs = Vec::new();
    for scenario in &exp.scenarios {
        for &contender in &contenders {
            if let Contender::Agent(a) | Contender::ShieldedAgent(a) = contender
                && !a.scenarios.contains(&scenario.name)
            {
                continue;
            }
            for &seed in &exp.seeds {
                runs.push(RunSpec { scenario, contender, seed });
            }
        }
    }
    runs
}

impl RunSpec<'_> {
    /// Row label.
    pub fn policy(&self) -> &str {
        match self.contender {
            Contender::Agent(a) => &a.name,
            Contender::ShieldedAgent(a) => &a.shielded_name,
            Contender::Baseline(b) => b,
            Contender::Oracle => "oracle",
        }
    }

    fn kind(&self) -> Kind {
        match self.contender {
            Contender::Agent(_) | Contender::ShieldedAgent(_) => Kind::Agent,
            Contender::Baseline(_) => Kind::Baseline,
            Contender::Oracle => Kind::Oracle,
        }
    }

    /// File name of the run's record: scenario, policy and seed.
    pub fn key(&self) -> String {
        format!("{}__{}__{}", super::slug(&self.scenario.name), self.policy(), self.seed)
    }

    /// Training steps (agents only): the file's figure or the agent's default budget.
    pub fn train_steps(&self) -> Option<u64> {
        let (Contender::Agent(a) | Contender::ShieldedAgent(a)) = self.contender else { return None };
        Some(a.steps.get(&self.scenario.name).copied().unwrap_or_else(|| {
            berth_agents::train::default_steps(a.agent, &Target::Placement(self.scenario.scenario.clone()))
        }))
    }

    /// Steps of work (training and evaluation), for the progress bar.
    pub fn work(&self, exp: &Experiment) -> u64 {
        let eval: u64 = self
            .scenario
            .conditions
            .iter()
            .map(|c| u64::from(c.scenario.episode_ticks) * exp.episodes as u64)
            .sum();
        self.train_steps().unwrap_or(0) + eval
    }

    /// Hash of everything the run's numbers depend on: a changed file or a rebuilt binary
    /// reruns it.
    pub fn fingerprint(&self, exp: &Experiment) -> String {
        let agent = match self.contender {
            Contender::Agent(a) | Contender::ShieldedAgent(a) => {
                format!("{:?}/{}", a.agent, a.hyperparameters)
            }
            _ => String::new(),
        };
        let conditions: Vec<String> =
            self.scenario.conditions.iter().map(|c| format!("{}={:?}", c.name, c.scenario)).collect();
        crate::store::fingerprint(&format!(
            "{}|{}|{}|{agent}|{:?}|{}|{}|{}|{}",
            build_id(),
            self.key(),
            self.seed,
            self.train_steps(),
            exp.episodes,
            exp.eval_seed,
            conditions.join(";"),
            self.kind().name(),
        ))
    }

    /// Trains (agents) and evaluates; `on_work` gets the steps done as they are done.
    pub fn run(&self, exp: &Experiment, on_work: &(dyn Fn(u64) + Sync)) -> Result<RunRecord, Error> {
        let seeds = episode_seeds(
            exp.eval_seed.wrapping_add(self.seed.wrapping_mul(exp.episodes as u64)),
            exp.episodes,
        );
        let mut timing = Timing::default();
        let mut curve = Vec::new();
        let mut policy: Option<Box<dyn Policy>> = match self.contender {
            Contender::Agent(a) | Contender::ShieldedAgent(a) => {
                let steps = self.train_steps().expect("agents train");
                let request = TrainRequest {
                    agent: a.agent,
                    target: Target::Placement(self.scenario.scenario.clone()),
                    steps: Some(steps),
                    seed: self.seed,
                    hyperparameters: a.hyperparameters.clone(),
                    device: DeviceKind::Cpu,
                };
                let start = Instant::now();
                let mut done = 0;
                let trained = berth_agents::train(&request, &mut |p| {
                    on_work(p.step.min(steps).saturating_sub(done));
                    done = done.max(p.step.min(steps));
                    Flow::Continue
                })?;
                on_work(steps - done);
                timing.train_wall_s = start.elapsed().as_secs_f64();
                timing.train_sps = steps as f64 / timing.train_wall_s.max(1e-9);
                let policy = Box::new(AgentPolicy::new(trained.agent));
                if let Contender::ShieldedAgent(_) = self.contender {
                    // Its learning curve is the plain row's: drawn once.
                    Some(Box::new(ShieldedPolicy::new(policy)))
                } else {
                    curve = trained
                        .log
                        .rows()
                        .iter()
                        .filter_map(|r| r.episodic_return.map(|v| (r.global_step, v)))
                        .collect();
                    Some(policy)
                }
            }
            // The planner is built for each condition's cluster, below.
            Contender::Baseline(name) if planner_horizon(name).is_some() => None,
            Contender::Baseline(name) => Some(baseline(name).expect("checked baseline name")),
            Contender::Oracle => None,
        };
        let start = Instant::now();
        let mut results = Vec::new();
        let mut refused = None;
        for condition in &self.scenario.conditions {
            let mut env = PlacementEnv::new(condition.scenario.clone())?;
            let mut day = Vec::new();
            let mut on_tick = |episode: usize, m: &TickMetrics| {
                if episode == 0 {
                    day.push(m.mean_latency_ms);
                }
                on_work(1);
            };
            let searched = match (policy.as_mut(), self.contender) {
                (Some(p), _) => run_policy(&mut env, p.as_mut(), &seeds, &mut on_tick),
                (None, Contender::Baseline(name)) => {
                    let horizon = planner_horizon(name).expect("checked planner name");
                    planner::build(condition.scenario.clone(), horizon)
                        .and_then(|mut planner| run_policy(&mut env, planner.as_mut(), &seeds, &mut on_tick))
                }
                (None, _) => run_oracle(&mut env, &seeds, &mut on_tick),
            };
            let row = match searched {
                Ok(row) => row,
                // A search that refuses one condition gives the run no rows, as for the oracle.
                Err(berth_env::Error::OracleRefused(why)) => {
                    refused = Some(why);
                    results.clear();
                    break;
                }
                Err(e) => return Err(e.into()),
            };
            let row = berth_env::evaluate::EvalRow { policy: self.policy().to_string(), ..row };
            results.push(ConditionResult { condition: condition.name.clone(), row, day_latency_ms: day });
        }
        timing.eval_wall_s = start.elapsed().as_secs_f64();
        Ok(RunRecord {
            fingerprint: self.fingerprint(exp),
            scenario: self.scenario.name.clone(),
            policy: self.policy().to_string(),
            kind: self.kind(),
            seed: self.seed,
            train_steps: self.train_steps(),
            results,
            refused,
            curve,
            timing,
        })
    }
}
