//! An experiment file (`experiments/<name>.toml`): what to run, checked before anything
//! runs. Every field is described in `experiments/README.md`; errors name the field.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use berth_agents::AgentKind;
use berth_core::{NodeEvent, NodeEventKind, Scenario};
use berth_env::{baselines, shipped};
use serde::Deserialize;

use super::Error;

/// The name of the evaluation on the scenario as it is.
pub const BASE_CONDITION: &str = "base";

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExperimentFile {
    description: String,
    scenarios: Vec<String>,
    seeds: Vec<u64>,
    #[serde(default = "default_episodes")]
    episodes: usize,
    #[serde(default = "default_eval_seed")]
    eval_seed: u64,
    #[serde(default)]
    baselines: Vec<String>,
    #[serde(default = "default_true")]
    oracle: bool,
    #[serde(default)]
    shield: bool,
    #[serde(default)]
    agents: Vec<AgentFile>,
    #[serde(default)]
    conditions: Vec<ConditionFile>,
    #[serde(default)]
    env_bench_seconds: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentFile {
    agent: AgentKind,
    name: Option<String>,
    #[serde(default)]
    scenarios: Vec<String>,
    steps: Option<u64>,
    #[serde(default)]
    steps_by_scenario: BTreeMap<String, u64>,
    #[serde(default)]
    hyperparameters: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionFile {
    name: String,
    #[serde(default = "default_one")]
    rate_scale: f64,
    #[serde(default)]
    phase_shift_hours: f64,
    mtbf_hours: Option<f64>,
    #[serde(default)]
    failures: Vec<FailureFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FailureFile {
    node: String,
    at_hours: f64,
    for_hours: Option<f64>,
}

fn default_episodes() -> usize {
    3
}
fn default_eval_seed() -> u64 {
    1_000_000
}
fn default_true() -> bool {
    true
}
fn default_one() -> f64 {
    1.0
}

/// A trained contender.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    /// Row label (unique in the experiment).
    pub name: String,
    /// The algorithm.
    pub agent: AgentKind,
    /// Scenarios it trains on (every scenario of the experiment when the file lists none).
    pub scenarios: Vec<String>,
    /// Steps per scenario name; a missing name trains for the agent's default budget.
    pub steps: BTreeMap<String, u64>,
    /// Overrides of the algorithm's config.
    pub hyperparameters: serde_json::Value,
    /// The row label of the agent behind the shield: `shield:<name>`.
    pub shielded_name: String,
}

/// A scenario with its evaluation conditions applied.
#[derive(Debug, Clone)]
pub struct Condition {
    /// `base`, or the condition's name.
    pub name: String,
    /// The scenario the policies are evaluated on.
    pub scenario: Arc<Scenario>,
}

/// One scenario of the experiment: trained on as is, evaluated under every condition.
#[derive(Debug, Clone)]
pub struct ScenarioSpec {
    /// Shipped name or path, as written.
    pub name: String,
    /// What agents train on (also the `base` condition).
    pub scenario: Arc<Scenario>,
    /// `base` first, then the file's conditions.
    pub conditions: Vec<Condition>,
}

/// A checked experiment.
#[derive(Debug, Clone)]
pub struct Experiment {
    /// File stem: the results folder's name.
    pub name: String,
    /// What it shows.
    pub description: String,
    /// Scenarios, in file order.
    pub scenarios: Vec<ScenarioSpec>,
    /// Training seeds; each also picks its own evaluation episodes.
    pub seeds: Vec<u64>,
    /// Evaluation episodes per seed and condition.
    pub episodes: usize,
    /// Evaluation episodes of seed `s` are `eval_seed + s * episodes ..`: held apart from
    /// training's episodes, the same for every policy.
    pub eval_seed: u64,
    /// Baselines to run.
    pub baselines: Vec<String>,
    /// Whether to run the oracle (gap column).
    pub oracle: bool,
    /// Whether each agent is also evaluated behind the per-tick shield, as its own row.
    pub shield: bool,
    /// Agents to train.
    pub agents: Vec<AgentSpec>,
    /// Seconds to measure env steps/s per scenario (0: not measured).
    pub env_bench_seconds: f64,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Invalid { field: field.into(), reason: reason.into() }
}

fn unique<'a>(field: &str, names: impl Iterator<Item = &'a str>) -> Result<(), Error> {
    let mut seen = HashSet::new();
    for (i, name) in names.enumerate() {
        if !seen.insert(name) {
            return Err(invalid(format!("{field}[{i}]"), format!("`{name}` is listed twice")));
        }
    }
    Ok(())
}

impl Experiment {
    /// Reads and checks an experiment file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Io { path: path.display().to_string(), reason: e.to_string() })?;
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("experiment").to_string();
        Self::parse(&name, &text)
    }

    /// Parses and checks the text of an experiment file named `name`.
    pub fn parse(name: &str, text: &str) -> Result<Self, Error> {
        let value: serde_json::Value =
            toml::from_str(text).map_err(|e| invalid("(file)", format!("not valid TOML: {e}")))?;
        let file: ExperimentFile = serde_path_to_error::deserialize(value)
            .map_err(|e| invalid(e.path().to_string(), e.into_inner().to_string()))?;
        file.check(name)
    }
}

impl ExperimentFile {
    fn check(self, name: &str) -> Result<Experiment, Error> {
        if self.scenarios.is_empty() {
            return Err(invalid("scenarios", "name at least one scenario"));
        }
        unique("scenarios", self.scenarios.iter().map(String::as_str))?;
        if self.seeds.is_empty() {
            return Err(invalid("seeds", "name at least one seed (5 or more for useful intervals)"));
        }
        let mut seen = HashSet::new();
        for (i, seed) in self.seeds.iter().enumerate() {
            if !seen.insert(seed) {
                return Err(invalid(format!("seeds[{i}]"), format!("seed {seed} is listed twice")));
            }
        }
        if self.episodes == 0 {
            return Err(invalid("episodes", "must be at least 1"));
        }
        for (i, b) in self.baselines.iter().enumerate() {
            // The oracle has its own switch.
            if baselines::baseline(b).is_none() && baselines::planner_horizon(b).is_none() {
                return Err(invalid(
                    format!("baselines[{i}]"),
                    format!(
                        "unknown baseline `{b}` (expected one of {}, lookahead, planner; `descheduler:<seconds>` \
                         sets its interval, `lookahead:<ticks>` and `planner:<ticks>` their horizons)",
                        baselines::NAMES.join(", ")
                    ),
                ));
            }
        }
        unique("baselines", self.baselines.iter().map(String::as_str))?;
        if !self.env_bench_seconds.is_finite() || self.env_bench_seconds < 0.0 {
            return Err(invalid("env_bench_seconds", "must be a finite number of at least 0"));
        }
        let agents = self
            .agents
            .into_iter()
            .enumerate()
            .map(|(i, a)| a.check(i, &self.scenarios))
            .collect::<Result<Vec<_>, _>>()?;
        let labels: Vec<&str> = agents.iter().map(|a| a.name.as_str()).collect();
        unique("agents", labels.iter().copied())?;
        for (i, label) in labels.iter().enumerate() {
            if self.baselines.iter().any(|b| b == label) || *label == "oracle" {
                return Err(invalid(format!("agents[{i}].name"), format!("`{label}` is a baseline's name")));
            }
        }
        if agents.is_empty() && self.baselines.is_empty() && !self.oracle {
            return Err(invalid("agents", "name at least one agent, baseline or the oracle"));
        }
        unique("conditions", self.conditions.iter().map(|c| c.name.as_str()))?;
        let mut scenarios = Vec::new();
        for (i, spec) in self.scenarios.iter().enumerate() {
            let scenario =
                shipped::load(spec).map_err(|e| invalid(format!("scenarios[{i}]"), e.to_string()))?;
            let mut conditions = vec![Condition { name: BASE_CONDITION.into(), scenario: scenario.clone() }];
            for (c, condition) in self.conditions.iter().enumerate() {
                conditions.push(condition.apply(c, &scenario)?);
            }
            scenarios.push(ScenarioSpec { name: spec.clone(), scenario, conditions });
        }
        Ok(Experiment {
            name: name.to_string(),
            description: self.description,
            scenarios,
            seeds: self.seeds,
            episodes: self.episodes,
            eval_seed: self.eval_seed,
            baselines: self.baselines,
            oracle: self.oracle,
            shield: self.shield,
            agents,
            env_bench_seconds: self.env_bench_seconds,
        })
    }
}

impl AgentFile {
    fn check(self, i: usize, scenarios: &[String]) -> Result<AgentSpec, Error> {
        let field = |f: &str| format!("agents[{i}].{f}");
        let name = self.name.unwrap_or_else(|| self.agent.name().to_string());
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(invalid(field("name"), "use letters, digits, `-` and `_` only"));
        }
        if self.steps == Some(0) {
            return Err(invalid(field("steps"), "must be at least 1"));
        }
        for (k, scenario) in self.scenarios.iter().enumerate() {
            if !scenarios.contains(scenario) {
                return Err(invalid(
                    field(&format!("scenarios[{k}]")),
                    "not one of the experiment's scenarios",
                ));
            }
        }
        let mut steps = BTreeMap::new();
        for (scenario, n) in self.steps_by_scenario {
            let f = field(&format!("steps_by_scenario.{scenario}"));
            if !scenarios.contains(&scenario) {
                return Err(invalid(f, "not one of the experiment's scenarios"));
            }
            if n == 0 {
                return Err(invalid(f, "must be at least 1"));
            }
            steps.insert(scenario, n);
        }
        if let Some(n) = self.steps {
            for s in scenarios {
                steps.entry(s.clone()).or_insert(n);
            }
        }
        let hyperparameters = serde_json::Value::Object(self.hyperparameters);
        berth_agents::train::check_hyperparameters(self.agent, &hyperparameters).map_err(|e| match e {
            berth_agents::Error::Config { name, reason } => {
                invalid(field(&format!("hyperparameters.{name}")), reason)
            }
            other => invalid(field("hyperparameters"), other.to_string()),
        })?;
        let trains_on = if self.scenarios.is_empty() { scenarios.to_vec() } else { self.scenarios };
        let shielded_name = format!("shield:{name}");
        Ok(AgentSpec { name, agent: self.agent, scenarios: trains_on, steps, hyperparameters, shielded_name })
    }
}

impl ConditionFile {
    /// The scenario with this condition's traffic and failures.
    fn apply(&self, c: usize, base: &Scenario) -> Result<Condition, Error> {
        let field = |f: &str| format!("conditions[{c}].{f}");
        if self.name.is_empty() || self.name == BASE_CONDITION {
            return Err(invalid(field("name"), format!("must be a name other than `{BASE_CONDITION}`")));
        }
        if !self.rate_scale.is_finite() || self.rate_scale <= 0.0 {
            return Err(invalid(field("rate_scale"), "must be a finite number greater than 0"));
        }
        if !self.phase_shift_hours.is_finite() {
            return Err(invalid(field("phase_shift_hours"), "must be a finite number"));
        }
        let mut scenario = base.clone();
        for group in &mut scenario.user_groups {
            group.rate.base_rps *= self.rate_scale;
            group.rate.phase_s += self.phase_shift_hours * 3600.0;
        }
        if let Some(h) = self.mtbf_hours {
            if !h.is_finite() || h <= 0.0 {
                return Err(invalid(field("mtbf_hours"), "must be a finite number greater than 0"));
            }
            scenario.failures.mtbf_s = Some(h * 3600.0);
        }
        let day_s = scenario.tick_s * f64::from(scenario.episode_ticks);
        for (k, f) in self.failures.iter().enumerate() {
            let ff = |x: &str| field(&format!("failures[{k}].{x}"));
            let node = scenario.node_index(&f.node).ok_or_else(|| {
                invalid(ff("node"), format!("scenario `{}` has no node `{}`", base.name, f.node))
            })?;
            let at_s = f.at_hours * 3600.0;
            if !at_s.is_finite() || at_s < 0.0 || at_s >= day_s {
                return Err(invalid(
                    ff("at_hours"),
                    format!("must be within the episode (0 to {} h)", day_s / 3600.0),
                ));
            }
            scenario.failures.events.push(NodeEvent { at_s, node, kind: NodeEventKind::Fail });
            if let Some(h) = f.for_hours {
                if !h.is_finite() || h <= 0.0 {
                    return Err(invalid(ff("for_hours"), "must be a finite number greater than 0"));
                }
                scenario.failures.events.push(NodeEvent {
                    at_s: at_s + h * 3600.0,
                    node,
                    kind: NodeEventKind::Recover,
                });
            }
        }
        scenario.failures.events.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
        Ok(Condition { name: self.name.clone(), scenario: Arc::new(scenario) })
    }
}
