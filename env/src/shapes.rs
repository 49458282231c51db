//! Training across shapes: a variation of a scenario drawn per episode, so a size-agnostic
//! policy meets clusters it was not built for. Each draw keeps a random share of the nodes,
//! scales every user group's traffic, scales the failure rate, and sometimes takes a whole
//! zone down for a stretch of the day. The services stay as they are: a model knows them
//! by name. A [`Curriculum`] draws the variations and replays those where the policy trails
//! `greedy`.

use berth_core::{NodeEvent, NodeEventKind, Rng, Scenario};

use crate::PlacementEnv;
use crate::baselines::{GreedyPolicy, Policy};
use crate::gym::Env;

/// The ranges draws come from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShapeRanges {
    /// Share of the nodes kept, drawn uniformly from this range.
    pub nodes_kept: (f64, f64),
    /// Factor on every user group's rate.
    pub traffic: (f64, f64),
    /// Factor on the failure rate (on `1 / mtbf`).
    pub failure_rate: (f64, f64),
    /// Probability that one whole zone is down for part of the day.
    pub zone_outage: f64,
}

impl Default for ShapeRanges {
    fn default() -> Self {
        Self { nodes_kept: (0.5, 1.0), traffic: (0.6, 1.4), failure_rate: (0.5, 4.0), zone_outage: 0.15 }
    }
}

/// An env of a fresh variation of `base` whose replicas can all be placed, or of `base`
/// itself after a few draws that could not be (too few nodes kept for the replicas).
pub fn varied_env(base: &Scenario, ranges: &ShapeRanges, rng: &mut Rng) -> crate::Result<PlacementEnv> {
    for _ in 0..8 {
        if let Ok(env) = PlacementEnv::new(std::sync::Arc::new(draw(base, ranges, rng))) {
            return Ok(env);
        }
    }
    PlacementEnv::new(std::sync::Arc::new(base.clone()))
}

fn uniform(rng: &mut Rng, (low, high): (f64, f64)) -> f64 {
    low + (high - low) * rng.next_f64()
}

fn draw(base: &Scenario, ranges: &ShapeRanges, rng: &mut Rng) -> Scenario {
    let mut s = base.clone();
    let keep = uniform(rng, ranges.nodes_kept);
    let kept: Vec<bool> = (0..base.nodes.len()).map(|_| rng.next_f64() < keep).collect();
    let mut new_index = vec![usize::MAX; base.nodes.len()];
    let mut next = 0;
    for (n, &k) in kept.iter().enumerate() {
        if k {
            new_index[n] = next;
            next += 1;
        }
    }
    s.nodes = base.nodes.iter().zip(&kept).filter(|(_, k)| **k).map(|(n, _)| n.clone()).collect();
    s.failures.events = base
        .failures
        .events
        .iter()
        .filter(|e| kept[e.node])
        .map(|e| NodeEvent { node: new_index[e.node], ..*e })
        .collect();
    let traffic = uniform(rng, ranges.traffic);
    for g in &mut s.user_groups {
        g.rate.base_rps *= traffic;
    }
    if let Some(mtbf) = s.failures.mtbf_s.as_mut() {
        *mtbf /= uniform(rng, ranges.failure_rate);
    }
    if rng.next_f64() < ranges.zone_outage && !s.nodes.is_empty() {
        let day = s.tick_s * f64::from(s.episode_ticks);
        let zone = s.nodes[rng.below(s.nodes.len())].zone;
        let from = uniform(rng, (0.0, 0.8)) * day;
        let to = (from + uniform(rng, (0.05, 0.25)) * day).min(day);
        for n in (0..s.nodes.len()).filter(|&n| s.nodes[n].zone == zone) {
            s.failures.events.push(NodeEvent { at_s: from, node: n, kind: NodeEventKind::Fail });
            s.failures.events.push(NodeEvent { at_s: to, node: n, kind: NodeEventKind::Recover });
        }
        s.failures.events.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    }
    // Background pods keep their times; where their nodes went is decided as they start.
    s
}

/// `base` with one node, drawn at random, NotReady for a stretch of the day: from a time drawn
/// in the first 80% of the day, for 1 to 8 hours. A failure drill for training: under the
/// scenario's own failure rate a policy meets a long outage of a node it crowded too seldom to
/// learn the evacuation and the day after it, which a whole node kind down (an H100 at noon)
/// demands. The day's other failures stay as they are.
pub fn node_outage_drill(base: &Scenario, rng: &mut Rng) -> Scenario {
    let mut s = base.clone();
    if s.nodes.is_empty() {
        return s;
    }
    let day = s.tick_s * f64::from(s.episode_ticks);
    let node = rng.below(s.nodes.len());
    let from = uniform(rng, (0.0, 0.8)) * day;
    let to = (from + uniform(rng, (1.0 / 24.0, 1.0 / 3.0)) * day).min(day);
    s.failures.events.push(NodeEvent { at_s: from, node, kind: NodeEventKind::Fail });
    s.failures.events.push(NodeEvent { at_s: to, node, kind: NodeEventKind::Recover });
    s.failures.events.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    s
}

/// One training condition: the seed of the variation drawn and the seed of the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Condition {
    /// Seeds the variation ([`varied_env`]).
    pub shape_seed: u64,
    /// Seeds the day (traffic and failures) the env is reset to.
    pub day_seed: u64,
}

/// A condition where the policy's return fell short of `greedy`'s.
#[derive(Debug, Clone, Copy)]
struct Trailed {
    condition: Condition,
    greedy_return: f64,
    /// How far short, as a share of `greedy`'s cost.
    gap: f64,
}

/// Draws the conditions of training across shapes. As Genet (Xia et al., SIGCOMM 2022)
/// does for rule-based baselines, a share of the episodes replays conditions where the
/// policy last trailed `greedy`, the more often the further it trailed; a replay it no longer
/// trails on leaves the pool. `greedy` runs once per condition, from the same start.
#[derive(Debug, Clone)]
pub struct Curriculum {
    base: Scenario,
    ranges: ShapeRanges,
    rng: Rng,
    replay_share: f64,
    trailed: Vec<Trailed>,
    greedy_runs: u64,
}

/// Conditions where the policy trailed that are kept for replay, the furthest behind first.
const TRAILED_KEPT: usize = 64;

impl Curriculum {
    /// Draws variations of `base` from `ranges`; `replay_share` of the draws (0 to 1) replay
    /// a condition where the policy trailed, when there is one.
    pub fn new(base: Scenario, ranges: ShapeRanges, seed: u64, replay_share: f64) -> Self {
        let rng = Rng::derive(seed, 0x6e7e);
        Self { base, ranges, rng, replay_share, trailed: Vec::new(), greedy_runs: 0 }
    }

    /// The next condition and its env, reset to its day.
    pub fn draw(&mut self) -> crate::Result<(Condition, PlacementEnv)> {
        let condition = if !self.trailed.is_empty() && self.rng.next_f64() < self.replay_share {
            let total: f64 = self.trailed.iter().map(|t| t.gap).sum();
            let mut pick = self.rng.next_f64() * total;
            let chosen = self.trailed.iter().find(|t| {
                pick -= t.gap;
                pick <= 0.0
            });
            chosen.unwrap_or(&self.trailed[0]).condition
        } else {
            Condition { shape_seed: self.rng.next_u64(), day_seed: self.rng.next_u64() }
        };
        Ok((condition, self.env(condition)?))
    }

    /// The env of `condition`, reset to its day.
    pub fn env(&self, condition: Condition) -> crate::Result<PlacementEnv> {
        let mut env = varied_env(&self.base, &self.ranges, &mut Rng::new(condition.shape_seed))?;
        env.reset(condition.day_seed);
        Ok(env)
    }

    /// The policy's return (summed reward of the day) on `condition`; compared with
    /// `greedy`'s there, it enters, stays in or leaves the pool of conditions to replay.
    pub fn record(&mut self, condition: Condition, policy_return: f64) -> crate::Result<()> {
        if self.replay_share <= 0.0 {
            return Ok(());
        }
        let known = self.trailed.iter().position(|t| t.condition == condition);
        let greedy_return = match known {
            Some(i) => self.trailed[i].greedy_return,
            None => self.greedy_return(condition)?,
        };
        let gap = (greedy_return - policy_return) / greedy_return.abs().max(1e-9);
        match (known, gap > 0.0) {
            (Some(i), true) => self.trailed[i].gap = gap,
            (Some(i), false) => {
                self.trailed.remove(i);
            }
            (None, true) => self.trailed.push(Trailed { condition, greedy_return, gap }),
            (None, false) => {}
        }
        self.trailed.sort_by(|a, b| b.gap.total_cmp(&a.gap));
        self.trailed.truncate(TRAILED_KEPT);
        Ok(())
    }

    fn greedy_return(&mut self, condition: Condition) -> crate::Result<f64> {
        self.greedy_runs += 1;
        let mut env = self.env(condition)?;
        let mut greedy = GreedyPolicy;
        let mut total = 0.0;
        loop {
            let step = env.step(greedy.act(&env))?;
            total += step.reward;
            if step.terminated || step.truncated {
                return Ok(total);
            }
        }
    }

    /// Conditions in the pool now.
    pub fn trailing(&self) -> usize {
        self.trailed.len()
    }

    /// Days `greedy` has been run for, one per condition recorded.
    pub fn greedy_runs(&self) -> u64 {
        self.greedy_runs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_where_the_policy_trailed_greedy_come_back_and_leave_once_caught_up() {
        let base = crate::shipped::shipped("tiny").unwrap();
        let mut curriculum = Curriculum::new((*base).clone(), ShapeRanges::default(), 3, 0.5);
        let (first, env) = curriculum.draw().unwrap();
        assert_eq!(
            env.placement(),
            curriculum.env(first).unwrap().placement(),
            "a condition is reproducible"
        );
        // Far behind greedy on `first`, level with it elsewhere.
        curriculum.record(first, -1e12).unwrap();
        assert_eq!((curriculum.trailing(), curriculum.greedy_runs()), (1, 1));
        let replays = (0..400).filter(|_| curriculum.draw().unwrap().0 == first).count();
        assert!((150..250).contains(&replays), "{replays} of 400 draws replayed it");
        curriculum.record(first, -1e12).unwrap();
        assert_eq!(curriculum.greedy_runs(), 1, "greedy runs once per condition");
        curriculum.record(first, 0.0).unwrap();
        assert_eq!(curriculum.trailing(), 0, "caught up: it leaves the pool");
        assert!((0..50).all(|_| curriculum.draw().unwrap().0 != first));
        // Off, nothing is run or kept.
        let mut off = Curriculum::new((*base).clone(), ShapeRanges::default(), 3, 0.0);
        let (c, _) = off.draw().unwrap();
        off.record(c, -1e12).unwrap();
        assert_eq!((off.trailing(), off.greedy_runs()), (0, 0));
    }

    #[test]
    fn variations_keep_the_services_and_a_placeable_cluster() {
        let base = crate::shipped::shipped("gpu-medium").unwrap();
        let mut rng = Rng::new(7);
        let mut sizes = std::collections::BTreeSet::new();
        let mut outages = 0;
        for _ in 0..40 {
            let env = varied_env(&base, &ShapeRanges::default(), &mut rng).unwrap();
            let s = env.scenario();
            assert_eq!(s.services, base.services);
            assert!(s.nodes.len() <= base.nodes.len());
            assert!(s.failures.events.iter().all(|e| e.node < s.nodes.len()));
            outages += usize::from(!s.failures.events.is_empty());
            sizes.insert(s.nodes.len());
        }
        assert!(sizes.len() > 5, "node counts drawn: {sizes:?}");
        assert!((1..40).contains(&outages), "{outages} zone outages in 40 draws");
    }

    #[test]
    fn a_drill_takes_one_node_down_for_one_to_eight_hours_and_changes_nothing_else() {
        let base = crate::shipped::shipped("gpu-small").unwrap();
        let day = base.tick_s * f64::from(base.episode_ticks);
        let mut rng = Rng::new(11);
        let mut nodes = std::collections::BTreeSet::new();
        for _ in 0..60 {
            let drill = node_outage_drill(&base, &mut rng);
            let added: Vec<&NodeEvent> =
                drill.failures.events.iter().filter(|e| !base.failures.events.contains(e)).collect();
            let [fail, recover] = added[..] else { panic!("{added:?}") };
            assert_eq!((fail.kind, recover.kind), (NodeEventKind::Fail, NodeEventKind::Recover));
            assert_eq!(fail.node, recover.node);
            let hours = (recover.at_s - fail.at_s) / 3600.0;
            assert!(fail.at_s < 0.8 * day && recover.at_s <= day, "{fail:?} {recover:?}");
            assert!((1.0..=8.0).contains(&hours) || recover.at_s == day, "{hours} h");
            assert!(drill.failures.events.windows(2).all(|w| w[0].at_s <= w[1].at_s), "events in time order");
            assert_eq!(
                (&drill.nodes, &drill.services, drill.failures.mtbf_s),
                (&base.nodes, &base.services, base.failures.mtbf_s)
            );
            nodes.insert(fail.node);
        }
        assert_eq!(nodes.len(), base.nodes.len(), "every node is drilled: {nodes:?}");
    }
}
