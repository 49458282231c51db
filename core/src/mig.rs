//! NVIDIA's Multi-Instance GPU profiles of the 80 GB A100 and H100, and the layouts one GPU
//! can hold: the first piece of GPU sharing (issue 30), which scenarios, masks and the
//! emulator will build on.
//!
//! A GPU has 8 memory slices and 7 compute slices. A GPU instance of a profile takes a run of
//! memory slices at one of the start positions NVIDIA allows for that profile, and compute
//! slices of its own; instances never share either, which is what isolates them. The figures
//! are those of NVIDIA's MIG User Guide ("Supported MIG Profiles": the A100-SXM4-80GB and
//! H100 80GB tables, fraction of memory and of SMs, instances available) and the placements
//! NVML reports for them (`nvidia-smi mig -lgipp`; `nvmlDeviceGetGpuInstancePossiblePlacements`):
//!
//! | profile | compute (of 7) | memory (of 8) | start slices |
//! |---|---|---|---|
//! | 1g.10gb | 1 | 1 | 0, 1, 2, 3, 4, 5, 6 |
//! | 1g.20gb | 1 | 2 | 0, 2, 4, 6 |
//! | 2g.20gb | 2 | 2 | 0, 2, 4 |
//! | 3g.40gb | 3 | 4 | 0, 4 |
//! | 4g.40gb | 4 | 4 | 0 |
//! | 7g.80gb | 7 | 8 | 0 |

use crate::error::{Error, Result};

/// Memory slices of one GPU.
pub const MEMORY_SLICES: u8 = 8;
/// Compute slices of one GPU.
pub const COMPUTE_SLICES: u8 = 7;

/// A MIG profile of an 80 GB A100 or H100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MigProfile {
    /// One compute slice, one memory slice.
    G1Gb10,
    /// One compute slice, two memory slices.
    G1Gb20,
    /// Two compute slices, two memory slices.
    G2Gb20,
    /// Three compute slices, four memory slices.
    G3Gb40,
    /// Four compute slices, four memory slices.
    G4Gb40,
    /// The whole GPU as one instance.
    G7Gb80,
}

impl MigProfile {
    /// Every profile, smallest first.
    pub const ALL: [Self; 6] =
        [Self::G1Gb10, Self::G1Gb20, Self::G2Gb20, Self::G3Gb40, Self::G4Gb40, Self::G7Gb80];

    /// NVIDIA's name, as in `nvidia.com/mig-<name>`.
    pub fn name(self) -> &'static str {
        match self {
            Self::G1Gb10 => "1g.10gb",
            Self::G1Gb20 => "1g.20gb",
            Self::G2Gb20 => "2g.20gb",
            Self::G3Gb40 => "3g.40gb",
            Self::G4Gb40 => "4g.40gb",
            Self::G7Gb80 => "7g.80gb",
        }
    }

    /// The profile of a name, if NVIDIA has one so named for these GPUs.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Compute slices, of [`COMPUTE_SLICES`].
    pub fn compute_slices(self) -> u8 {
        match self {
            Self::G1Gb10 | Self::G1Gb20 => 1,
            Self::G2Gb20 => 2,
            Self::G3Gb40 => 3,
            Self::G4Gb40 => 4,
            Self::G7Gb80 => 7,
        }
    }

    /// Memory slices, of [`MEMORY_SLICES`].
    pub fn memory_slices(self) -> u8 {
        match self {
            Self::G1Gb10 => 1,
            Self::G1Gb20 | Self::G2Gb20 => 2,
            Self::G3Gb40 | Self::G4Gb40 => 4,
            Self::G7Gb80 => 8,
        }
    }

    /// The memory slices an instance may start at.
    pub fn starts(self) -> &'static [u8] {
        match self {
            Self::G1Gb10 => &[0, 1, 2, 3, 4, 5, 6],
            Self::G1Gb20 => &[0, 2, 4, 6],
            Self::G2Gb20 => &[0, 2, 4],
            Self::G3Gb40 => &[0, 4],
            Self::G4Gb40 | Self::G7Gb80 => &[0],
        }
    }

    /// The share of the GPU's compute an instance has: its slices of seven. MIG isolates
    /// instances, so this holds whatever the others run.
    pub fn compute_share(self) -> f64 {
        f64::from(self.compute_slices()) / f64::from(COMPUTE_SLICES)
    }

    /// An instance's memory on a GPU of `gpu_memory_mib`.
    pub fn memory_mib(self, gpu_memory_mib: u64) -> u64 {
        gpu_memory_mib * u64::from(self.memory_slices()) / u64::from(MEMORY_SLICES)
    }

    /// The extended resource the GPU operator's mixed strategy advertises for it.
    pub fn resource(self) -> String {
        format!("nvidia.com/mig-{}", self.name())
    }
}

/// One GPU instance: a profile at a start slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigInstance {
    /// Its profile.
    pub profile: MigProfile,
    /// The first memory slice it takes.
    pub start: u8,
}

impl MigInstance {
    /// The memory slices it takes, as a bit mask.
    fn memory_mask(self) -> u8 {
        let run = ((1u16 << self.profile.memory_slices()) - 1) as u8;
        run << self.start
    }
}

/// The instances one GPU is partitioned into: a layout NVIDIA allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigLayout {
    instances: Vec<MigInstance>,
}

impl MigLayout {
    /// Checks explicit instances: each at a start its profile allows, no two sharing a memory
    /// slice, at most seven compute slices in all. Errors name `path` and the instance.
    pub fn new(path: &str, instances: Vec<MigInstance>) -> Result<Self> {
        let (mut memory, mut compute) = (0u8, 0u8);
        for (i, instance) in instances.iter().enumerate() {
            let name = instance.profile.name();
            if !instance.profile.starts().contains(&instance.start) {
                return Err(Error::invalid(
                    format!("{path}[{i}]"),
                    format!(
                        "{name} cannot start at memory slice {} (it may at {:?})",
                        instance.start,
                        instance.profile.starts()
                    ),
                ));
            }
            if memory & instance.memory_mask() != 0 {
                return Err(Error::invalid(
                    format!("{path}[{i}]"),
                    format!("{name} at slice {} overlaps an instance before it", instance.start),
                ));
            }
            memory |= instance.memory_mask();
            compute += instance.profile.compute_slices();
            if compute > COMPUTE_SLICES {
                return Err(Error::invalid(
                    format!("{path}[{i}]"),
                    format!("{name} takes the GPU past its {COMPUTE_SLICES} compute slices"),
                ));
            }
        }
        Ok(Self { instances })
    }

    /// Places `profiles` on one GPU, as `nvidia-smi mig -cgi` or the GPU operator's MIG
    /// manager would: the first layout found, larger instances first, each at the lowest
    /// start free for it; an error naming `path` when NVIDIA's placements hold no such set.
    pub fn arrange(path: &str, profiles: &[MigProfile]) -> Result<Self> {
        let mut order: Vec<MigProfile> = profiles.to_vec();
        order.sort_by_key(|p| std::cmp::Reverse((p.memory_slices(), p.compute_slices())));
        let compute: u32 = order.iter().map(|p| u32::from(p.compute_slices())).sum();
        let mut placed = Vec::with_capacity(order.len());
        if compute <= u32::from(COMPUTE_SLICES) && place(&order, 0, &mut placed) {
            return Self::new(path, placed);
        }
        let names: Vec<&str> = profiles.iter().map(|p| p.name()).collect();
        Err(Error::invalid(
            path,
            format!(
                "one 80 GB A100 or H100 cannot hold [{}]: NVIDIA's placements allow no such layout",
                names.join(", ")
            ),
        ))
    }

    /// The instances, in the order given or placed.
    pub fn instances(&self) -> &[MigInstance] {
        &self.instances
    }
}

/// Depth-first: places `order[0]` at each free start in turn, then the rest.
fn place(order: &[MigProfile], memory: u8, placed: &mut Vec<MigInstance>) -> bool {
    let Some((&profile, rest)) = order.split_first() else { return true };
    for &start in profile.starts() {
        let instance = MigInstance { profile, start };
        if memory & instance.memory_mask() == 0 {
            placed.push(instance);
            if place(rest, memory | instance.memory_mask(), placed) {
                return true;
            }
            placed.pop();
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::MigProfile::*;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_layouts_nvidia_documents_are_held_and_others_refused() {
        // The GPU operator's shipped mig-parted configurations for 80 GB parts, and mixed ones.
        for layout in [
            vec![G1Gb10; 7],
            vec![G1Gb20; 4],
            vec![G2Gb20; 3],
            vec![G3Gb40; 2],
            vec![G4Gb40],
            vec![G7Gb80],
            vec![G3Gb40, G2Gb20, G1Gb10, G1Gb10],
            vec![G4Gb40, G2Gb20, G1Gb10],
            vec![G4Gb40, G3Gb40],
            vec![G2Gb20, G2Gb20, G2Gb20, G1Gb10],
            vec![G3Gb40, G1Gb20, G1Gb20],
        ] {
            let held = MigLayout::arrange("gpu.mig", &layout).unwrap();
            assert_eq!(held.instances().len(), layout.len(), "{layout:?}");
        }
        // Eight compute slices; the whole GPU and more; two 4g (which start at slice 0 only);
        // a 3g beside a 4g.40gb and a 1g (eight compute slices again).
        for layout in
            [vec![G1Gb10; 8], vec![G7Gb80, G1Gb10], vec![G4Gb40, G4Gb40], vec![G4Gb40, G3Gb40, G1Gb10]]
        {
            let refused = MigLayout::arrange("nodes[2].gpu.mig", &layout).unwrap_err().to_string();
            assert!(
                refused.starts_with("nodes[2].gpu.mig: ") && refused.contains("no such layout"),
                "{refused}"
            );
        }
    }

    #[test]
    fn explicit_instances_are_checked_slice_by_slice() {
        let at = |profile, start| MigInstance { profile, start };
        assert!(MigLayout::new("mig", vec![at(G3Gb40, 4), at(G4Gb40, 0)]).is_ok());
        let bad_start = MigLayout::new("mig", vec![at(G2Gb20, 6)]).unwrap_err().to_string();
        assert!(bad_start.starts_with("mig[0]: 2g.20gb cannot start at memory slice 6"), "{bad_start}");
        let overlap = MigLayout::new("mig", vec![at(G3Gb40, 0), at(G1Gb10, 3)]).unwrap_err().to_string();
        assert!(overlap.starts_with("mig[1]: 1g.10gb at slice 3 overlaps"), "{overlap}");
        let compute = (0..7).map(|s| at(G1Gb10, s)).chain([at(G1Gb20, 6)]).collect();
        assert!(MigLayout::new("mig", compute).is_err());
    }

    #[test]
    fn profiles_give_their_share_of_compute_and_memory() {
        assert_eq!(G1Gb10.memory_mib(81_920), 10_240);
        assert_eq!(G3Gb40.memory_mib(81_920), 40_960);
        assert!((G3Gb40.compute_share() - 3.0 / 7.0).abs() < 1e-12);
        assert_eq!(G7Gb80.compute_share(), 1.0);
        assert_eq!(G2Gb20.resource(), "nvidia.com/mig-2g.20gb");
        assert!(MigProfile::ALL.iter().all(|p| MigProfile::parse(p.name()) == Some(*p)));
        assert_eq!(MigProfile::parse("1g.5gb"), None);
    }

    /// Every set of instances: placed one by one at every start in turn, the sets that fit
    /// are exactly those `arrange` holds.
    fn holdable(profiles: &[MigProfile]) -> bool {
        fn any(profiles: &[MigProfile], memory: u8, compute: u8) -> bool {
            let Some((&p, rest)) = profiles.split_first() else { return true };
            compute + p.compute_slices() <= COMPUTE_SLICES
                && p.starts().iter().any(|&start| {
                    let mask = MigInstance { profile: p, start }.memory_mask();
                    memory & mask == 0 && any(rest, memory | mask, compute + p.compute_slices())
                })
        }
        any(profiles, 0, 0)
    }

    proptest! {
        #[test]
        fn arrange_holds_exactly_the_sets_some_order_of_placements_holds(
            picks in proptest::collection::vec(0usize..6, 0..9)
        ) {
            let profiles: Vec<MigProfile> = picks.iter().map(|&i| MigProfile::ALL[i]).collect();
            let arranged = MigLayout::arrange("mig", &profiles);
            prop_assert_eq!(arranged.is_ok(), holdable(&profiles), "{:?}", profiles);
            if let Ok(layout) = arranged {
                // What it returns passes the slice-by-slice check and holds the same profiles.
                prop_assert!(MigLayout::new("mig", layout.instances().to_vec()).is_ok());
                let mut got: Vec<MigProfile> = layout.instances().iter().map(|i| i.profile).collect();
                let mut want = profiles.clone();
                got.sort();
                want.sort();
                prop_assert_eq!(got, want);
            }
        }
    }
}
