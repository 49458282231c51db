//! Resource amounts and the fit test kube-scheduler applies: requests must fit what is
//! allocatable, and GPU replicas get whole GPUs with enough memory each.

use std::fmt;

use crate::scenario::GpuSpec;

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
}

impl Resources {
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
        Ok(())
    }
}

/// What the replicas on one node request in total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeUsage {
    /// Millicores requested.
    pub cpu_millicores: u64,
    /// MiB requested.
    pub memory_mib: u64,
    /// GPUs taken.
    pub gpus: u32,
}

impl NodeUsage {
    /// Whether `request` fits beside what is already used.
    #[inline]
    pub fn fits(&self, allocatable: &Resources, gpu: Option<&GpuSpec>, request: &Resources) -> bool {
        let cpu_ok = self.cpu_millicores + request.cpu_millicores <= allocatable.cpu_millicores;
        let mem_ok = self.memory_mib + request.memory_mib <= allocatable.memory_mib;
        let gpu_ok = request.gpus == 0
            || gpu.is_some_and(|g| {
                self.gpus + request.gpus <= g.count && request.gpu_memory_mib <= g.memory_mib
            });
        cpu_ok && mem_ok && gpu_ok
    }

    /// Adds a request.
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(count: u32, memory_mib: u64) -> GpuSpec {
        GpuSpec { count, model: "l4".into(), memory_mib }
    }

    #[test]
    fn gpu_request_needs_whole_gpus_with_enough_memory() {
        let node = Resources { cpu_millicores: 8000, memory_mib: 32768, gpus: 2, gpu_memory_mib: 24576 };
        let g = gpu(2, 24576);
        let req = Resources { cpu_millicores: 1000, memory_mib: 1024, gpus: 1, gpu_memory_mib: 8192 };
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
