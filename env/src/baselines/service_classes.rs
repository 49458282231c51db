//! One service's placement classes: the multisets of (zone, service time) seats its replicas
//! can stand in, with every other replica held where it stands. Each is few where the joint
//! classes are not (924 for `gpu-medium`'s six embedding replicas, against 13.6 million
//! joint), so searches that go one service at a time can list them: the planner by service
//! ([`super::by_service`]) and the free re-placement reference ([`crate::free_moves`]).

use std::collections::HashMap;

use berth_core::Scenario;

use crate::PlacementEnv;
use crate::cost::ReplicaView;
use crate::error::{Error, Result};
use crate::oracle::{multiset_count, multisets};

/// The most placement classes one service may have (a multiset of its replicas over its seats
/// and "nowhere"): planning costs about this times the horizon times a move's neighbours.
pub const MAX_SERVICE_CLASSES: u128 = 20_000;

/// One service's classes: sorted seat indices of its replicas, where seat `seats.len()` is
/// "nowhere" (on a NotReady node), and the classes one move apart.
pub(crate) struct ServiceClasses {
    /// The service, and its first replica (replicas are numbered service by service).
    pub service: usize,
    pub start: usize,
    pub requests: berth_core::Resources,
    pub seats: Vec<(usize, f64)>,
    /// Per node, the seat a replica of this service has there.
    pub node_seat: Vec<Option<usize>>,
    pub classes: Vec<Vec<usize>>,
    pub index: HashMap<Vec<usize>, usize>,
    /// Per class, the classes one move away (a replica to another seat that serves).
    pub next: Vec<Vec<usize>>,
}

impl ServiceClasses {
    /// The classes of every service of `scenario`; refused, naming the service, where one has
    /// more than [`MAX_SERVICE_CLASSES`].
    pub fn all(scenario: &Scenario) -> Result<Vec<Self>> {
        let mut start = 0;
        (0..scenario.services.len())
            .map(|s| {
                let classes = Self::new(scenario, s, start);
                start += scenario.services[s].replicas as usize;
                classes
            })
            .collect()
    }

    fn new(scenario: &Scenario, s: usize, start: usize) -> Result<Self> {
        let mut seats = Vec::new();
        let node_seat = (0..scenario.nodes.len())
            .map(|n| {
                let time = scenario.service_time_ms(s, n).filter(|_| scenario.can_host(s, n))?;
                let seat = (scenario.nodes[n].zone, time);
                Some(seats.iter().position(|&x| x == seat).unwrap_or_else(|| {
                    seats.push(seat);
                    seats.len() - 1
                }))
            })
            .collect();
        let k = scenario.services[s].replicas as usize;
        let count = multiset_count(seats.len() + 1, k);
        if count > MAX_SERVICE_CLASSES {
            return Err(Error::OracleRefused(format!(
                "`{}` has {count} placement classes for service `{}` (limit {MAX_SERVICE_CLASSES}); \
                 the planner plans for clusters up to about gpu-medium's size",
                scenario.name, scenario.services[s].name
            )));
        }
        let classes = multisets(seats.len() + 1, k);
        let index: HashMap<Vec<usize>, usize> =
            classes.iter().enumerate().map(|(i, c)| (c.clone(), i)).collect();
        let next = classes
            .iter()
            .map(|class| {
                let mut out = Vec::new();
                for p in 0..k {
                    for to in (0..seats.len()).filter(|&to| to != class[p]) {
                        let mut moved = class.clone();
                        moved[p] = to;
                        moved.sort_unstable();
                        let j = index[&moved];
                        if !out.contains(&j) {
                            out.push(j);
                        }
                    }
                }
                out
            })
            .collect();
        Ok(Self {
            service: s,
            start,
            requests: scenario.services[s].requests,
            seats,
            node_seat,
            classes,
            index,
            next,
        })
    }

    /// The seat index of "nowhere".
    pub fn nowhere(&self) -> usize {
        self.seats.len()
    }

    /// The service's replicas.
    pub fn replicas(&self) -> std::ops::Range<usize> {
        self.start..self.start + self.classes[0].len()
    }

    /// The seat of a replica standing on node `n`.
    pub fn seat_on(&self, env: &PlacementEnv, n: usize) -> usize {
        match env.node_ready()[n] {
            true => self.node_seat[n].unwrap_or(self.nowhere()),
            false => self.nowhere(),
        }
    }

    /// The class the service is in on `env`.
    pub fn class_of(&self, env: &PlacementEnv) -> usize {
        let mut seats: Vec<usize> =
            env.placement()[self.replicas()].iter().map(|&n| self.seat_on(env, n)).collect();
        seats.sort_unstable();
        self.index[&seats]
    }

    /// How many replicas of the service each seat has room for on `env`'s Ready nodes beside
    /// every other replica where it stands.
    fn room(&self, env: &PlacementEnv) -> Vec<usize> {
        let scenario = env.scenario();
        let mine = self.replicas();
        let mut room = vec![0usize; self.seats.len()];
        for n in (0..env.node_count()).filter(|&n| env.node_ready()[n]) {
            let Some(seat) = self.node_seat[n] else { continue };
            let node = &scenario.nodes[n];
            let mut usage = env.usage()[n].clone();
            for r in mine.clone().filter(|&r| env.placement()[r] == n) {
                usage.release(&self.requests, env.seats()[r]);
            }
            while room[seat] < mine.len() && usage.fits(&node.allocatable, node.gpu.as_ref(), &self.requests)
            {
                usage.take(node.gpu.as_ref(), &self.requests);
                room[seat] += 1;
            }
        }
        room
    }

    /// Which classes fit on `env`'s Ready nodes beside every other replica where it stands:
    /// each seat no fuller than its nodes have room for, and no more replicas nowhere than in
    /// class `here` (a move never puts one there).
    pub fn fitting(&self, env: &PlacementEnv, here: usize) -> Vec<bool> {
        let room = self.room(env);
        let stranded = self.classes[here].iter().filter(|&&x| x == self.nowhere()).count();
        self.classes
            .iter()
            .map(|class| {
                let count = |seat: usize| class.iter().filter(|&&x| x == seat).count();
                count(self.nowhere()) <= stranded
                    && room.iter().enumerate().all(|(seat, &n)| count(seat) <= n)
            })
            .collect()
    }

    /// `views` (every replica's steady view) with this service's replicas in class `c`'s seats.
    pub fn place_views(&self, views: &mut [ReplicaView], c: usize) {
        for (view, &seat) in views[self.replicas()].iter_mut().zip(&self.classes[c]) {
            *view = match self.seats.get(seat) {
                Some(&(zone, service_time_ms)) => {
                    ReplicaView { service: self.service, zone, service_time_ms, up: true }
                }
                None => ReplicaView { service: self.service, zone: 0, service_time_ms: 1.0, up: false },
            };
        }
    }
}
