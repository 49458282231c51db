//! Backends: where an episode's traffic and node events come from.
//!
//! The gym asks its backend for a [`Trace`] at every reset and replays it through the cost
//! model, so every policy evaluated with the same seed meets exactly the same traffic and
//! failures. `sim` draws them from the scenario's synthetic models; `replay` replays a
//! recording of a live cluster. The live cluster itself is not a backend but an env of its
//! own (`live::LiveEnv`): its moves act on the cluster, so it cannot replay an episode.

use berth_core::{NodeEventKind, Rng, Scenario};

/// A node event placed on the tick grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceEvent {
    /// The step (1-based) during which it happens.
    pub tick: u32,
    /// Exact time, seconds from the start of the episode.
    pub at_s: f64,
    /// Node index.
    pub node: usize,
    /// Failure or recovery.
    pub kind: NodeEventKind,
}

/// The exogenous part of one episode.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trace {
    /// Number of user groups.
    pub groups: usize,
    /// `rates_rps[t * groups + g]` for t in `0..=episode_ticks`; t = 0 is what the first
    /// observation shows, t ≥ 1 the mean rate during step t.
    pub rates_rps: Vec<f64>,
    /// Node events sorted by time.
    pub events: Vec<TraceEvent>,
}

impl Trace {
    /// The rates during tick `t`.
    #[inline]
    pub fn rates(&self, t: u32) -> &[f64] {
        let start = t as usize * self.groups;
        &self.rates_rps[start..start + self.groups]
    }
}

/// A source of episodes.
pub trait Backend: Send + std::fmt::Debug {
    /// Short name (`sim`, `replay`, `live`).
    fn name(&self) -> &'static str;
    /// The traffic and node events of the episode with this seed. Backends load or check
    /// their data when they are built, so this cannot fail.
    fn episode(&mut self, scenario: &Scenario, seed: u64) -> Trace;
    /// A copy, for envs cloned into vectorised batches.
    fn boxed_clone(&self) -> Box<dyn Backend>;
}

/// A boxed backend that can be cloned, so envs holding one can be.
#[derive(Debug)]
pub struct BoxedBackend(pub Box<dyn Backend>);

impl Clone for BoxedBackend {
    fn clone(&self) -> Self {
        Self(self.0.boxed_clone())
    }
}

/// The embedded simulator: diurnal traffic with noise, random and scripted node failures.
#[derive(Debug, Clone, Default)]
pub struct SimBackend {
    /// Noise-free rates per tick and group, the same every episode: computed once.
    mean_rates: Vec<f64>,
}

impl SimBackend {
    /// A simulator; it learns the scenario's traffic curve at its first episode.
    pub fn new() -> Self {
        Self::default()
    }

    fn mean_rates(&mut self, scenario: &Scenario) -> &[f64] {
        let len = (scenario.episode_ticks as usize + 1) * scenario.user_groups.len();
        if self.mean_rates.len() != len {
            self.mean_rates = (0..=scenario.episode_ticks)
                .flat_map(|t| {
                    let at = if t == 0 { 0.0 } else { (t as f64 - 0.5) * scenario.tick_s };
                    scenario.user_groups.iter().map(move |g| g.rate.mean_at(at))
                })
                .collect();
        }
        &self.mean_rates
    }
}

/// Independent random streams derived from an episode seed.
pub(crate) mod streams {
    /// Traffic noise.
    pub const TRAFFIC: u64 = 1;
    /// Node failures.
    pub const FAILURES: u64 = 2;
    /// Random initial placements.
    pub const INITIAL: u64 = 3;
    /// Cold starts' lengths (scenarios with `cold_starts:`).
    pub const COLD_STARTS: u64 = 4;
}

impl Backend for SimBackend {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn boxed_clone(&self) -> Box<dyn Backend> {
        Box::new(self.clone())
    }

    fn episode(&mut self, scenario: &Scenario, seed: u64) -> Trace {
        let groups = scenario.user_groups.len();
        let ticks = scenario.episode_ticks as usize;
        let dt = scenario.tick_s;
        let mut rng = Rng::derive(seed, streams::TRAFFIC);
        let means = self.mean_rates(scenario);
        let mut rates_rps = Vec::with_capacity(means.len());
        for (i, &mean) in means.iter().enumerate() {
            let sd = scenario.user_groups[i % groups].rate.noise;
            let factor = if sd > 0.0 { (1.0 + sd * rng.normal()).max(0.0) } else { 1.0 };
            rates_rps.push((mean * factor).max(0.0));
        }
        let horizon = dt * ticks as f64;
        let tick_of = |at_s: f64| ((at_s / dt).floor() as u32 + 1).min(scenario.episode_ticks);
        let mut events: Vec<TraceEvent> = scenario
            .failures
            .events
            .iter()
            .map(|e| TraceEvent { tick: tick_of(e.at_s), at_s: e.at_s, node: e.node, kind: e.kind })
            .collect();
        if let Some(mtbf) = scenario.failures.mtbf_s {
            let mttr = scenario.failures.mttr_s;
            let mut rng = Rng::derive(seed, streams::FAILURES);
            for node in 0..scenario.nodes.len() {
                let mut t = rng.exponential(mtbf);
                while t < horizon {
                    events.push(TraceEvent { tick: tick_of(t), at_s: t, node, kind: NodeEventKind::Fail });
                    let back = t + rng.exponential(mttr);
                    if back >= horizon {
                        break;
                    }
                    events.push(TraceEvent {
                        tick: tick_of(back),
                        at_s: back,
                        node,
                        kind: NodeEventKind::Recover,
                    });
                    t = back + rng.exponential(mtbf);
                }
            }
        }
        events.sort_by(|a, b| a.at_s.total_cmp(&b.at_s).then(a.node.cmp(&b.node)));
        Trace { groups, rates_rps, events }
    }
}
