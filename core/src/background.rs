//! Background pods: the other workloads of a shared cluster. They are not placed by the
//! policy; each holds CPU, memory and GPUs while it lives, so the services' replicas must
//! find room around them (the `openb` scenario's 1,523-node production cluster).

use crate::error::{Error, Result};
use crate::spec::BackgroundPodSpec;

/// A share of one GPU in thousandths, as the `openb` trace's `gpu_milli`.
pub const WHOLE_GPU_MILLI: u32 = 1000;

/// What a background pod takes of a node's GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuClaim {
    /// No GPU.
    None,
    /// This many whole GPUs.
    Whole(u32),
    /// This share of one GPU, in thousandths (1..1000): that GPU is no longer free for a
    /// whole-GPU replica, though other shares may join it up to 1000.
    Share(u32),
}

/// A validated background pod.
#[derive(Debug, Clone, PartialEq)]
pub struct BackgroundPod {
    /// Millicores.
    pub cpu_millicores: u64,
    /// MiB.
    pub memory_mib: u64,
    /// Its GPUs.
    pub gpu: GpuClaim,
    /// GPU models (lower case) it accepts; empty for any.
    pub gpu_models: Vec<String>,
    /// Seconds from the start of the episode when it starts holding capacity (negative:
    /// already running when the episode starts).
    pub from_s: f64,
    /// Seconds from the start of the episode when it stops.
    pub to_s: f64,
}

impl BackgroundPod {
    /// Whether a node with GPUs of `model` (or none) is of a kind the pod accepts.
    pub fn accepts(&self, model: Option<&str>) -> bool {
        match (self.gpu, model) {
            (GpuClaim::None, _) => true,
            (_, None) => false,
            (_, Some(m)) => self.gpu_models.is_empty() || self.gpu_models.iter().any(|g| g == m),
        }
    }
}

/// Validates the background pods, in document order.
pub(crate) fn validate_background(specs: &[BackgroundPodSpec]) -> Result<Vec<BackgroundPod>> {
    specs.iter().enumerate().map(|(i, spec)| validate_pod(&format!("background[{i}]"), spec)).collect()
}

fn validate_pod(path: &str, spec: &BackgroundPodSpec) -> Result<BackgroundPod> {
    let invalid = |field: &str, reason: String| Error::invalid(format!("{path}.{field}"), reason);
    if !spec.from_s.is_finite() {
        return Err(invalid("from_s", format!("must be a finite number of seconds, got {}", spec.from_s)));
    }
    if !(spec.to_s.is_finite() && spec.to_s > spec.from_s) {
        return Err(invalid(
            "to_s",
            format!("must be finite and after from_s ({}), got {}", spec.from_s, spec.to_s),
        ));
    }
    if spec.gpu_milli > WHOLE_GPU_MILLI {
        return Err(invalid(
            "gpu_milli",
            format!("is a share of one GPU, at most 1000, got {}", spec.gpu_milli),
        ));
    }
    let gpu = match (spec.num_gpu, spec.gpu_milli) {
        (0, _) => GpuClaim::None,
        (_, 0) => return Err(invalid("gpu_milli", "must be 1..1000 when num_gpu is set, got 0".into())),
        (n, WHOLE_GPU_MILLI) if n <= crate::limits::MAX_GPUS_PER_NODE => GpuClaim::Whole(n),
        (1, share) => GpuClaim::Share(share),
        (n, WHOLE_GPU_MILLI) => {
            return Err(invalid(
                "num_gpu",
                format!("{n} GPUs; a node has at most {}", crate::limits::MAX_GPUS_PER_NODE),
            ));
        }
        (n, share) => {
            return Err(invalid(
                "gpu_milli",
                format!(
                    "a share of a GPU ({share}) needs num_gpu 1, got {n}: shares of several GPUs are not modelled"
                ),
            ));
        }
    };
    let gpu_models =
        spec.gpu_spec.split('|').map(|m| m.trim().to_ascii_lowercase()).filter(|m| !m.is_empty()).collect();
    Ok(BackgroundPod {
        cpu_millicores: spec.cpu_milli,
        memory_mib: spec.memory_mib,
        gpu,
        gpu_models,
        from_s: spec.from_s,
        to_s: spec.to_s,
    })
}
