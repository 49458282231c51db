//! `metrics.k8s.io/v1beta1`: PodMetrics and NodeMetrics, as metrics-server serves them.
//!
//! No crate has their types, so they are read and written as `DynamicObject`s with the
//! small serde structs here; quantities are parsed the way the API server writes them
//! (`250m`, `2`, `123456789n`; `512Mi`, `1048576Ki`, `1Gi`, bytes).

use std::collections::BTreeMap;

use kube::discovery::ApiResource;
use serde::{Deserialize, Serialize};

const GROUP: &str = "metrics.k8s.io";
const VERSION: &str = "v1beta1";

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: GROUP.into(),
        version: VERSION.into(),
        api_version: format!("{GROUP}/{VERSION}"),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// The PodMetrics resource (namespaced, plural `pods`).
pub fn pod_metrics() -> ApiResource {
    resource("PodMetrics", "pods")
}

/// The NodeMetrics resource (cluster-wide, plural `nodes`).
pub fn node_metrics() -> ApiResource {
    resource("NodeMetrics", "nodes")
}

/// What a PodMetrics object holds besides its metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodMetricsBody {
    /// When the sample was taken (RFC 3339).
    pub timestamp: String,
    /// Over how long it was averaged (`30s`).
    pub window: String,
    /// Per container usage.
    pub containers: Vec<ContainerUsage>,
}

/// One container's usage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerUsage {
    /// The container's name.
    pub name: String,
    /// `cpu` and `memory` quantities.
    pub usage: BTreeMap<String, String>,
}

/// What a NodeMetrics object holds besides its metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeMetricsBody {
    /// When the sample was taken (RFC 3339).
    pub timestamp: String,
    /// Over how long it was averaged.
    pub window: String,
    /// `cpu` and `memory` quantities.
    pub usage: BTreeMap<String, String>,
}

/// Millicores in a CPU quantity (`250m`, `2`, `0.5`, `123456789n`, `1500u`).
pub fn cpu_millicores(quantity: &str) -> Option<f64> {
    let q = quantity.trim();
    let (number, scale) = match q.char_indices().last()? {
        (i, 'n') => (&q[..i], 1e-6),
        (i, 'u') => (&q[..i], 1e-3),
        (i, 'm') => (&q[..i], 1.0),
        _ => (q, 1000.0),
    };
    number.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).map(|v| v * scale)
}

/// MiB in a memory quantity (`512Mi`, `1048576Ki`, `2Gi`, `1G`, `500M`, bytes).
pub fn memory_mib(quantity: &str) -> Option<f64> {
    const MIB: f64 = 1024.0 * 1024.0;
    let q = quantity.trim();
    let suffixes: [(&str, f64); 8] = [
        ("Ki", 1024.0),
        ("Mi", MIB),
        ("Gi", 1024.0 * MIB),
        ("Ti", 1024.0 * 1024.0 * MIB),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    let (number, bytes) = suffixes
        .iter()
        .find_map(|(suffix, bytes)| q.strip_suffix(suffix).map(|n| (n, *bytes)))
        .unwrap_or((q, 1.0));
    number.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).map(|v| v * bytes / MIB)
}

/// A CPU quantity in millicores, as written back to the API server.
pub fn cpu_quantity(millicores: f64) -> String {
    format!("{}m", millicores.max(0.0).round() as u64)
}

/// A memory quantity in MiB, as written back to the API server.
pub fn memory_quantity(mib: f64) -> String {
    format!("{}Ki", (mib.max(0.0) * 1024.0).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities_in_every_form_the_api_server_writes() {
        assert_eq!(cpu_millicores("250m"), Some(250.0));
        assert_eq!(cpu_millicores("2"), Some(2000.0));
        assert_eq!(cpu_millicores("0.5"), Some(500.0));
        assert_eq!(cpu_millicores("123456789n"), Some(123.456789));
        assert_eq!(cpu_millicores("1500u"), Some(1.5));
        assert_eq!(cpu_millicores("-1"), None);
        assert_eq!(cpu_millicores("lots"), None);
        assert_eq!(cpu_millicores(""), None);
    }

    #[test]
    fn memory_quantities_in_every_form_the_api_server_writes() {
        assert_eq!(memory_mib("512Mi"), Some(512.0));
        assert_eq!(memory_mib("1048576Ki"), Some(1024.0));
        assert_eq!(memory_mib("2Gi"), Some(2048.0));
        assert_eq!(memory_mib("1048576"), Some(1.0));
        assert!((memory_mib("1G").unwrap() - 953.674).abs() < 1e-3);
        assert_eq!(memory_mib("Mi"), None);
        assert_eq!(memory_mib("x"), None);
    }

    #[test]
    fn quantities_written_read_back_the_same() {
        assert_eq!(cpu_millicores(&cpu_quantity(1234.4)), Some(1234.0));
        assert_eq!(memory_mib(&memory_quantity(16384.0)), Some(16384.0));
    }
}
