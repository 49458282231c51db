//! Resource amounts and the fit test kube-scheduler applies: requests must fit what is
//! allocatable, and GPU replicas get whole GPUs with enough memory each, or a slot of a
//! shared node's GPUs they accept ([`crate::sharing`]).

use std::fmt;

use crate::scenario::GpuSpec;
use crate::sharing::{self, Accepts};

/// CPU, memory and GPUs: a node's allocatable amount or a replica's request.
///
/// For a request `gpu_memory_mib` is what each of its GPUs must have; for a node it is the
/// memory of each of its GPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// Millicores.
    pub cpu_millicores: u64,
    /// MiB.
    pub memory_mib: u64,
    /// Whole GPUs.
    pub gpus: u32,
    /// MiB per GPU.
    pub gpu_memory_mib: u64,
    /// For a request: the slots of shared GPUs it accepts besides a whole GPU.
    pub accepts: Accepts,
}

impl Resources {
    /// What a node with `gpu` offers: its CPU and memory, and its GPUs with one's memory.
    pub fn of_node(cpu_millicores: u64, memory_mib: u64, gpu: Option<&GpuSpec>) -> Self {
        Self {
            cpu_millicores,
            memory_mib,
            gpus: gpu.map_or(0, |g| g.count),
            gpu_memory_mib: gpu.map_or(0, |g| g.memory_mib),
            accepts: Accepts::default(),
        }
    }

    /// Whether one such request fits on an empty node with these allocatable resources.
    pub fn fits_in(&self, allocatable: &Resources, gpu: Option<&GpuSpec>) -> bool {
        NodeUsage::default().fits(allocatable, gpu, self)
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cpu {}m, memory {} MiB", self.cpu_millicores, self.memory_mib)?;
        if self.gpus > 0 {
            write!(f, ", {} GPU(s) of {} MiB", self.gpus, self.gpu_memory_mib)?;
        }
        if let Some(profile) = self.accepts.mig {
            write!(f, ", or MIG {} and larger", profile.name())?;
        }
        if self.accepts.time_sliced {
            write!(f, ", or a time-sliced share")?;
        }
        Ok(())
    }
}

/// What the replicas on one node request in total.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeUsage {
    /// Millicores requested.
    pub cpu_millicores: u64,
    /// MiB requested.
    pub memory_mib: u64,
    /// Whole GPUs taken.
    pub gpus: u32,
    /// On a node with shared GPUs: the GPU memory of the tenant in each slot, 0 where free
    /// (empty until a slot is first taken).
    pub slots: Vec<u64>,
}

impl NodeUsage {
    /// Whether `request` fits beside what is already used.
    #[inline]
    pub fn fits(&self, allocatable: &Resources, gpu: Option<&GpuSpec>, request: &Resources) -> bool {
        let cpu_ok = self.cpu_millicores + request.cpu_millicores <= allocatable.cpu_millicores;
        let mem_ok = self.memory_mib + request.memory_mib <= allocatable.memory_mib;
        let gpu_ok = request.gpus == 0
            || gpu.is_some_and(|g| {
                if g.sharing.is_shared() {
                    sharing::free_slot(g, &self.slots, request).is_some()
                } else {
                    self.gpus + request.gpus <= g.count && request.gpu_memory_mib <= g.memory_mib
                }
            });
        cpu_ok && mem_ok && gpu_ok
    }

    /// Adds a request that takes whole GPUs or none.
    #[inline]
    pub fn add(&mut self, request: &Resources) {
        self.cpu_millicores += request.cpu_millicores;
        self.memory_mib += request.memory_mib;
        self.gpus += request.gpus;
    }

    /// Removes a request that was added before.
    #[inline]
    pub fn remove(&mut self, request: &Resources) {
        self.cpu_millicores -= request.cpu_millicores;
        self.memory_mib -= request.memory_mib;
        self.gpus -= request.gpus;
    }

    /// Adds a replica's request on a node with these GPUs and returns the slot it took on
    /// shared GPUs (`None`: whole GPUs, no GPU, or no slot free, which counts its GPUs as
    /// whole ones taken, as an over-committed placement read from a cluster would).
    pub fn take(&mut self, gpu: Option<&GpuSpec>, request: &Resources) -> Option<u8> {
        if let Some(g) = gpu.filter(|g| g.sharing.is_shared())
            && let Some(slot) = sharing::free_slot(g, &self.slots, request)
        {
            self.take_slot(g, request, slot);
            return Some(slot as u8);
        }
        self.add(request);
        None
    }

    /// Adds a replica's request in shared slot `slot`, which the caller found free (the
    /// oracle tries each instance, not only the smallest).
    pub fn take_slot(&mut self, gpu: &GpuSpec, request: &Resources, slot: usize) {
        if self.slots.is_empty() {
            self.slots = vec![0; gpu.count as usize * gpu.sharing.slots_per_gpu()];
        }
        self.slots[slot] = request.gpu_memory_mib.max(1);
        self.cpu_millicores += request.cpu_millicores;
        self.memory_mib += request.memory_mib;
    }

    /// Removes a request added by [`take`](Self::take), which returned `slot`.
    pub fn release(&mut self, request: &Resources, slot: Option<u8>) {
        self.cpu_millicores -= request.cpu_millicores;
        self.memory_mib -= request.memory_mib;
        match slot {
            Some(i) => self.slots[usize::from(i)] = 0,
            None => self.gpus -= request.gpus,
        }
    }

    /// GPUs of the node with nothing on them: whole ones not taken, or shared ones none of
    /// whose slots is.
    pub fn free_gpus(&self, gpu: Option<&GpuSpec>) -> u32 {
        match gpu {
            None => 0,
            Some(g) if g.sharing.is_shared() => {
                let per_gpu = g.sharing.slots_per_gpu().max(1);
                let busy = (0..g.count as usize)
                    .filter(|&i| {
                        self.slots
                            .get(i * per_gpu..(i + 1) * per_gpu)
                            .is_some_and(|s| s.iter().any(|&m| m > 0))
                    })
                    .count() as u32;
                g.count.saturating_sub(busy).saturating_sub(self.gpus)
            }
            Some(g) => g.count.saturating_sub(self.gpus),
        }
    }

    /// The fraction of the node's GPUs (or of their slots, where shared) taken.
    pub fn gpu_fraction(&self, gpu: Option<&GpuSpec>) -> f64 {
        match gpu {
            None => 0.0,
            Some(g) if g.sharing.is_shared() => {
                let taken = self.slots.iter().filter(|&&m| m > 0).count();
                let slots = taken as f64 / (g.count as usize * g.sharing.slots_per_gpu()).max(1) as f64;
                (slots + f64::from(self.gpus) / f64::from(g.count)).min(1.0)
            }
            Some(g) => f64::from(self.gpus) / f64::from(g.count),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(count: u32, memory_mib: u64) -> GpuSpec {
        GpuSpec { count, model: "l4".into(), memory_mib, sharing: Default::default() }
    }

    #[test]
    fn gpu_request_needs_whole_gpus_with_enough_memory() {
        let node = Resources {
            cpu_millicores: 8000,
            memory_mib: 32768,
            gpus: 2,
            gpu_memory_mib: 24576,
            ..Default::default()
        };
        let g = gpu(2, 24576);
        let req = Resources {
            cpu_millicores: 1000,
            memory_mib: 1024,
            gpus: 1,
            gpu_memory_mib: 8192,
            ..Default::default()
        };
        let mut used = NodeUsage::default();
        assert!(used.fits(&node, Some(&g), &req));
        used.add(&req);
        used.add(&req);
        assert!(!used.fits(&node, Some(&g), &req), "a third GPU replica does not fit on two GPUs");
        let big = Resources { gpu_memory_mib: 40960, ..req };
        assert!(!big.fits_in(&node, Some(&g)), "40 GiB does not fit a 24 GiB GPU");
        assert!(!req.fits_in(&node, None), "no GPU on a CPU node");
    }

    #[test]
    fn cpu_and_memory_are_bounded_by_allocatable() {
        let node = Resources { cpu_millicores: 2000, memory_mib: 4096, ..Default::default() };
        let req = Resources { cpu_millicores: 1000, memory_mib: 1024, ..Default::default() };
        let mut used = NodeUsage::default();
        used.add(&req);
        assert!(used.fits(&node, None, &req));
        used.add(&req);
        assert!(!used.fits(&node, None, &req));
        used.remove(&req);
        assert!(used.fits(&node, None, &req));
    }
}
