//! GPU products as NVIDIA's GPU feature discovery labels them, and the figures a scenario
//! needs of each: its class name, memory, and speed against an L4.
//!
//! Speed is a service's throughput relative to an L4, so a GPU service's time on a product is
//! its L4 time divided by it. The H100 is taken at 3.33×, as every shipped scenario takes it
//! (`scenarios/gpu-small.yaml`: 9 ms against 30 ms on an L4); the others are the ratio of
//! dense FP16 tensor throughput in NVIDIA's data sheets to the L4's 121 TFLOPS. Memory is the
//! data sheet's in GiB, as MiB (as the shipped scenarios write it). `docs/scenarios.md` lists
//! the table with its sources.

/// One GPU product.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuProduct {
    /// The scenario's class name: a whole word of the product label (`h100`).
    pub class: &'static str,
    /// The `nvidia.com/gpu.product` value GPU feature discovery writes for it.
    pub label: &'static str,
    /// Memory per GPU, MiB.
    pub memory_mib: u64,
    /// Throughput relative to an L4.
    pub speed: f64,
}

/// The products berth knows, matched by class name as a whole word of the label.
pub const PRODUCTS: &[GpuProduct] = &[
    GpuProduct { class: "h200", label: "NVIDIA-H200", memory_mib: 144_384, speed: 3.33 },
    GpuProduct { class: "h100", label: "NVIDIA-H100-80GB-HBM3", memory_mib: 81_920, speed: 3.33 },
    GpuProduct { class: "a100", label: "NVIDIA-A100-SXM4-80GB", memory_mib: 81_920, speed: 2.58 },
    GpuProduct { class: "l40s", label: "NVIDIA-L40S", memory_mib: 49_152, speed: 2.99 },
    GpuProduct { class: "a10", label: "NVIDIA-A10", memory_mib: 24_576, speed: 1.03 },
    GpuProduct { class: "l4", label: "NVIDIA-L4", memory_mib: 24_576, speed: 1.0 },
    GpuProduct { class: "v100", label: "Tesla-V100-SXM2-32GB", memory_mib: 32_768, speed: 1.03 },
    GpuProduct { class: "t4", label: "Tesla-T4", memory_mib: 16_384, speed: 0.54 },
];

/// What an unknown product is taken as: an L4's speed (its memory comes from the
/// `nvidia.com/gpu.memory` label, else [`UNKNOWN_MEMORY_MIB`]).
pub const UNKNOWN_SPEED: f64 = 1.0;
/// Memory per GPU of a product with no `nvidia.com/gpu.memory` label and no table entry.
pub const UNKNOWN_MEMORY_MIB: u64 = 16_384;

/// The words of a product label, lower case: `NVIDIA-H100-80GB-HBM3` is `nvidia h100 80gb hbm3`.
fn words(product: &str) -> Vec<String> {
    product.split(|c: char| !c.is_ascii_alphanumeric()).map(str::to_ascii_lowercase).collect()
}

/// The index of the class a product label names: the class exactly, else one (never the CPU
/// class) that is a whole word of it, so `NVIDIA-A100-SXM4-40GB` is an `a100`, never an `a10`.
pub(super) fn class_index<S: AsRef<str>>(classes: &[S], product: &str) -> Option<usize> {
    let lower = product.to_ascii_lowercase();
    let words = words(product);
    let name = |i: usize| classes[i].as_ref();
    (0..classes.len()).find(|&i| name(i) == lower).or_else(|| {
        (0..classes.len()).find(|&i| name(i) != berth_core::CPU_CLASS && words.iter().any(|w| w == name(i)))
    })
}

/// The known product a label names (see [`class_index`]).
pub fn lookup(product: &str) -> Option<&'static GpuProduct> {
    let classes: Vec<&str> = PRODUCTS.iter().map(|p| p.class).collect();
    class_index(&classes, product).map(|i| &PRODUCTS[i])
}

/// The label GPU feature discovery would write for a scenario's GPU model: the table's for a
/// known class, else the model itself.
pub fn product_label(model: &str) -> &str {
    PRODUCTS.iter().find(|p| p.class == model).map_or(model, |p| p.label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_match_whole_words_and_round_trip() {
        assert_eq!(lookup("NVIDIA-A100-SXM4-40GB").unwrap().class, "a100");
        assert_eq!(lookup("NVIDIA-A10").unwrap().class, "a10");
        assert_eq!(lookup("Tesla-T4").unwrap().class, "t4");
        assert_eq!(lookup("h100").unwrap().class, "h100");
        assert!(lookup("NVIDIA-B200").is_none());
        for p in PRODUCTS {
            assert_eq!(lookup(product_label(p.class)), Some(p), "{}", p.class);
        }
        assert_eq!(product_label("p100"), "p100");
    }
}
