//! The `openb` scenario from Alibaba's production GPU cluster trace (`cluster-trace-gpu-v2023`,
//! Weng et al., "Beware of Fragmentation", USENIX ATC 2023): its node list as it is, its pods
//! as background load, and the embedding and rerank services on top.
//!
//! How the trace becomes one simulated day (docs/scenarios.md says why):
//! - **Zones.** The trace names none; node `i` of the CSV goes to zone `i mod 3`, so each
//!   zone gets a third of every node kind.
//! - **GPUs.** The trace gives kinds and counts only. Memory and speed come from NVIDIA's
//!   datasheets ([`GPU_KINDS`]); the undisclosed G1–G3 are taken to be V100-32GB-class.
//! - **Pods.** Pods that never ran (no `scheduled_time`) are dropped. The others, in
//!   creation order, slide through the day as a window: at any moment the `window` share of
//!   them that come next in the trace are running, so the day starts with the first of them
//!   and ends with the last. The trace's own times are not used for lifetimes: its pods are
//!   mostly minutes long and few run at once (under 5% of the GPUs), while together they
//!   request 98% of the cluster's GPUs, which is how the paper's simulator replays them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::csv::rows;
pub use crate::csv::{CsvFile, ImportError};

/// Seconds in the simulated day.
const DAY_S: f64 = 86_400.0;
/// Zones the nodes are dealt into.
pub const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];

/// A GPU kind of the trace: memory per GPU and the Infinity embedding time on it.
#[derive(Debug, Clone, Copy)]
pub struct GpuKind {
    /// The trace's `model` column.
    pub trace_name: &'static str,
    /// Memory per GPU, MiB.
    pub memory_mib: u64,
    /// Dense FP16 tensor throughput, TFLOPS: what an embedding batch is bound by.
    pub fp16_tflops: f64,
    /// Where the figures come from.
    pub source: &'static str,
}

/// The L4's dense FP16 tensor throughput (242 TFLOPS with sparsity, NVIDIA L4 datasheet) and
/// the Infinity embedding time on it that the other scenarios use (FIGURES.md).
const L4_TFLOPS: f64 = 121.0;
const L4_EMBED_MS: f64 = 30.0;

/// Every GPU kind of the trace.
pub const GPU_KINDS: [GpuKind; 8] = [
    GpuKind {
        trace_name: "T4",
        memory_mib: 16_384,
        fp16_tflops: 65.0,
        source: "NVIDIA T4 datasheet: 16 GB, 65 TFLOPS FP16 mixed precision",
    },
    GpuKind {
        trace_name: "P100",
        memory_mib: 16_384,
        fp16_tflops: 18.7,
        source: "NVIDIA Tesla P100 PCIe datasheet: 16 GB, 18.7 TFLOPS FP16 (no tensor cores)",
    },
    GpuKind {
        trace_name: "V100M16",
        memory_mib: 16_384,
        fp16_tflops: 125.0,
        source: "NVIDIA V100 datasheet (SXM2): 16 GB, 125 TFLOPS tensor",
    },
    GpuKind {
        trace_name: "V100M32",
        memory_mib: 32_768,
        fp16_tflops: 125.0,
        source: "NVIDIA V100 datasheet (SXM2): 32 GB, 125 TFLOPS tensor",
    },
    GpuKind {
        trace_name: "A10",
        memory_mib: 24_576,
        fp16_tflops: 125.0,
        source: "NVIDIA A10 datasheet: 24 GB, 125 TFLOPS FP16 tensor (250 with sparsity)",
    },
    GpuKind {
        trace_name: "G1",
        memory_mib: 32_768,
        fp16_tflops: 125.0,
        source: "undisclosed: assumed V100-32GB-class",
    },
    GpuKind {
        trace_name: "G2",
        memory_mib: 32_768,
        fp16_tflops: 125.0,
        source: "undisclosed: assumed V100-32GB-class",
    },
    GpuKind {
        trace_name: "G3",
        memory_mib: 32_768,
        fp16_tflops: 125.0,
        source: "undisclosed: assumed V100-32GB-class",
    },
];

impl GpuKind {
    /// Milliseconds of one embedding request, scaled from the L4's by throughput.
    pub fn embed_ms(&self) -> f64 {
        (L4_EMBED_MS * L4_TFLOPS / self.fp16_tflops * 10.0).round() / 10.0
    }

    /// The scenario's model name: the trace's, lower case.
    pub fn model(&self) -> String {
        self.trace_name.to_ascii_lowercase()
    }
}

/// What an import read and wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenbImport {
    /// The scenario document.
    pub yaml: String,
    /// Nodes.
    pub nodes: usize,
    /// GPUs by the trace's model name.
    pub gpus: BTreeMap<String, u64>,
    /// Pods in the pod list.
    pub pods: usize,
    /// Pods kept as background (those that ran).
    pub background: usize,
}

/// One node of the node list.
struct TraceNode {
    name: String,
    cpu_milli: u64,
    memory_mib: u64,
    gpus: u32,
    kind: Option<&'static GpuKind>,
}

/// One pod of the pod list that ran.
struct TracePod {
    cpu_milli: u64,
    memory_mib: u64,
    num_gpu: u32,
    gpu_milli: u32,
    gpu_spec: String,
    creation: u64,
}

/// How the trace becomes a scenario.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpenbOptions {
    /// The share of the pods running at once, in (0, 1).
    pub window: f64,
    /// Time-slice every GPU into this many shares (at most [`MAX_SLOTS_PER_NODE`] per node,
    /// fewer on nodes with many GPUs) and let the embedding service take a share: the
    /// `openb-shared` scenario, where the trace's fractional pods are tenants of the GPUs
    /// they share. `None`: whole GPUs, the `openb` scenario.
    pub time_slicing: Option<u32>,
}

/// Shares of all GPUs of a node together that a scenario accepts.
const MAX_SLOTS_PER_NODE: u32 = crate::limits::MAX_GPU_SLOTS_PER_NODE as u32;

impl Default for OpenbOptions {
    fn default() -> Self {
        Self { window: 0.8, time_slicing: None }
    }
}

/// Reads the two CSV files into the `openb` scenario (`openb-shared` when time-sliced).
pub fn import_openb(
    nodes: CsvFile<'_>,
    pods: CsvFile<'_>,
    options: OpenbOptions,
) -> Result<OpenbImport, ImportError> {
    let option_error =
        |option: &str, reason: String| ImportError { file: option.into(), line: 0, column: 0, reason };
    let window = options.window;
    if !(window > 0.0 && window < 1.0) {
        return Err(option_error("--window", format!("must be in (0, 1), got {window}")));
    }
    if let Some(shares) = options.time_slicing.filter(|s| !(2..=MAX_SLOTS_PER_NODE).contains(s)) {
        return Err(option_error(
            "--time-slicing",
            format!("shares per GPU must be 2..{MAX_SLOTS_PER_NODE}, got {shares}"),
        ));
    }
    let trace_nodes = read_nodes(nodes)?;
    let (total_pods, trace_pods) = read_pods(pods)?;
    let mut gpus = BTreeMap::new();
    for n in trace_nodes.iter().filter(|n| n.gpus > 0) {
        *gpus.entry(n.kind.expect("checked").trace_name.to_string()).or_insert(0) += u64::from(n.gpus);
    }
    let yaml = write_yaml(&trace_nodes, &trace_pods, options, total_pods);
    Ok(OpenbImport { yaml, nodes: trace_nodes.len(), gpus, pods: total_pods, background: trace_pods.len() })
}

/// Parses a cell as an unsigned number, or names where and why not.
fn number<T: std::str::FromStr>(
    file: &str,
    line: usize,
    (column, cell): (usize, &str),
    what: &str,
) -> Result<T, ImportError> {
    cell.trim().parse().map_err(|_| ImportError {
        file: file.into(),
        line,
        column,
        reason: format!("{what} must be a whole number of at least 0, got `{cell}`"),
    })
}

fn read_nodes(file: CsvFile<'_>) -> Result<Vec<TraceNode>, ImportError> {
    let header = ["sn", "cpu_milli", "memory_mib", "gpu", "model"];
    let mut nodes = Vec::new();
    for (line, cells) in rows(file, &header)? {
        let n = |i: usize, what: &str| number::<u64>(file.name, line, cells[i], what);
        let (name_col, name) = cells[0];
        let err =
            |column: usize, reason: String| ImportError { file: file.name.into(), line, column, reason };
        if !is_dns_name(name) {
            let reason =
                format!("sn must be a node name (lower-case letters, digits, `-` and `.`), got `{name}`");
            return Err(err(name_col, reason));
        }
        let (cpu_milli, memory_mib) = (n(1, "cpu_milli")?, n(2, "memory_mib")?);
        if cpu_milli == 0 || memory_mib == 0 {
            return Err(err(
                cells[1].0,
                "a node needs CPU and memory (cpu_milli and memory_mib above 0)".into(),
            ));
        }
        let gpus = number::<u32>(file.name, line, cells[3], "gpu")?;
        let (model_col, model) = cells[4];
        let kind = match (gpus, model) {
            (0, "") => None,
            (0, m) => return Err(err(model_col, format!("model `{m}` given for a node with 0 GPUs"))),
            (_, m) => Some(GPU_KINDS.iter().find(|k| k.trace_name == m).ok_or_else(|| {
                let known: Vec<&str> = GPU_KINDS.iter().map(|k| k.trace_name).collect();
                err(model_col, format!("unknown GPU model `{m}` (known: {})", known.join(", ")))
            })?),
        };
        nodes.push(TraceNode { name: name.to_string(), cpu_milli, memory_mib, gpus, kind });
    }
    if nodes.is_empty() {
        return Err(ImportError {
            file: file.name.into(),
            line: 2,
            column: 1,
            reason: "no nodes listed".into(),
        });
    }
    Ok(nodes)
}

/// The pod list's length, and the pods that ran in creation order (file order on ties).
fn read_pods(file: CsvFile<'_>) -> Result<(usize, Vec<TracePod>), ImportError> {
    let header = [
        "name",
        "cpu_milli",
        "memory_mib",
        "num_gpu",
        "gpu_milli",
        "gpu_spec",
        "qos",
        "pod_phase",
        "creation_time",
        "deletion_time",
        "scheduled_time",
    ];
    let rows = rows(file, &header)?;
    let mut pods = Vec::new();
    for (line, cells) in &rows {
        let line = *line;
        let n = |i: usize, what: &str| number::<u64>(file.name, line, cells[i], what);
        let gpu_milli = number::<u32>(file.name, line, cells[4], "gpu_milli")?;
        if gpu_milli > 1000 {
            let reason = format!("gpu_milli is a share of one GPU, at most 1000, got {gpu_milli}");
            return Err(ImportError { file: file.name.into(), line, column: cells[4].0, reason });
        }
        let num_gpu = number::<u32>(file.name, line, cells[3], "num_gpu")?;
        let bad_share = match (num_gpu, gpu_milli) {
            (0, _) => None,
            (_, 0) => Some("gpu_milli must be 1..1000 when num_gpu is above 0".to_string()),
            (1, _) | (_, 1000) => None,
            (n, m) => Some(format!("a share of a GPU ({m}) needs num_gpu 1, got {n}")),
        };
        if let Some(reason) = bad_share {
            return Err(ImportError { file: file.name.into(), line, column: cells[4].0, reason });
        }
        let (spec_col, gpu_spec) = cells[5];
        if !gpu_spec.chars().all(|c| c.is_ascii_alphanumeric() || c == '|') {
            let reason = format!("gpu_spec must be GPU models separated by `|`, got `{gpu_spec}`");
            return Err(ImportError { file: file.name.into(), line, column: spec_col, reason });
        }
        let pod = TracePod {
            cpu_milli: n(1, "cpu_milli")?,
            memory_mib: n(2, "memory_mib")?,
            num_gpu,
            gpu_milli,
            gpu_spec: gpu_spec.to_string(),
            creation: n(8, "creation_time")?,
        };
        if !cells[10].1.is_empty() {
            pods.push(pod);
        }
    }
    pods.sort_by_key(|p| p.creation);
    Ok((rows.len(), pods))
}

/// Whether `name` is a valid Kubernetes node name (a DNS subdomain): it is written into the
/// YAML as it is.
fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// `[from_s, to_s)` of the `k`-th of `count` pods when `window` of them run at once.
pub fn pod_lifetime(k: usize, count: usize, window: f64) -> (f64, f64) {
    let running = window * count as f64;
    let pace = DAY_S / (count as f64 - running);
    ((k as f64 - running) * pace, k as f64 * pace)
}

/// Time-sliced shares per GPU on a node with `gpus` GPUs: `shares`, or fewer where the node's
/// GPUs together would pass the per-node limit.
pub fn shares_per_gpu(shares: u32, gpus: u32) -> u32 {
    shares.min(MAX_SLOTS_PER_NODE / gpus.max(1))
}

fn write_yaml(nodes: &[TraceNode], pods: &[TracePod], options: OpenbOptions, total_pods: usize) -> String {
    let window = options.window;
    let mut y = String::with_capacity(120 * (nodes.len() + pods.len()));
    let gpu_count: u64 = nodes.iter().map(|n| u64::from(n.gpus)).sum();
    let name = if options.time_slicing.is_some() { "openb-shared" } else { "openb" };
    let _ = writeln!(y, "# {name}: Alibaba's production GPU cluster (cluster-trace-gpu-v2023; Weng et al.,");
    let _ = writeln!(
        y,
        "# \"Beware of Fragmentation\", USENIX ATC 2023): {} nodes, {gpu_count} GPUs, as the trace lists them,",
        nodes.len()
    );
    let _ = writeln!(
        y,
        "# {} of its {total_pods} pods as background load, and the embedding and rerank services",
        pods.len()
    );
    let command = match options.time_slicing {
        Some(shares) => format!("berth scenario openb --time-slicing {shares}"),
        None => "berth scenario openb".into(),
    };
    let _ = writeln!(y, "# on top. Generated by `{command}` from data/openb/ (docs/scenarios.md):");
    let _ = writeln!(y, "# do not edit by hand.");
    let _ = writeln!(y, "# - Zones: node i of the CSV is in zone i mod 3.");
    let _ =
        writeln!(y, "# - GPU memory and speed (embedding time = 30 ms on an L4 x 121 TFLOPS / the GPU's):");
    for k in &GPU_KINDS {
        let _ = writeln!(y, "#   {}: {} MiB, {} ms ({})", k.model(), k.memory_mib, k.embed_ms(), k.source);
    }
    let _ = writeln!(
        y,
        "# - Background: the pods that ran, in creation order, slide through the day; {:.0}% of",
        window * 100.0
    );
    let (from_s, to_s) = pod_lifetime(0, pods.len(), window);
    let _ = writeln!(
        y,
        "#   them run at any moment, each for {:.1} h. Services, traffic and failures sized as gpu-large's.",
        (to_s - from_s) / 3600.0
    );
    if let Some(shares) = options.time_slicing {
        let _ =
            writeln!(y, "# - Every GPU is time-sliced {shares} ways (fewer where a node's GPUs would pass");
        let _ = writeln!(
            y,
            "#   {MAX_SLOTS_PER_NODE} shares): a pod's gpu_milli share is a tenant holding that part"
        );
        let _ = writeln!(y, "#   of the GPU's memory, and an embedding replica may take a share beside it.");
    }
    let description = match options.time_slicing {
        None => "with its pods as background load",
        Some(_) => "with every GPU time-sliced and its pods as background load",
    };
    let _ = write!(
        y,
        "name: {name}\ndescription: Alibaba's 1,523-node production GPU cluster {description}, serving embeddings and rerank.\n"
    );
    y.push_str(concat!(
        "seed: 17\ntick_s: 300\nepisode_ticks: 288\nslo_ms: 500\ntimeout_ms: 3000\nrouting: topology_aware\n",
        "reward:\n  violation: 2.0\n  move: 0.002\n",
        "zones: [zone-a, zone-b, zone-c]\n",
        "rtt_ms:\n  - [0.3, 2.0, 3.0]\n  - [2.0, 0.3, 2.5]\n  - [3.0, 2.5, 0.3]\n",
        "nodes:\n",
    ));
    for (i, n) in nodes.iter().enumerate() {
        let _ = write!(
            y,
            "  - {{name: {}, zone: {}, cpu_millicores: {}, memory_mib: {}",
            n.name,
            ZONES[i % ZONES.len()],
            n.cpu_milli,
            n.memory_mib
        );
        if let Some(k) = n.kind {
            let _ =
                write!(y, ", gpu: {{count: {}, model: {}, memory_mib: {}", n.gpus, k.model(), k.memory_mib);
            if let Some(shares) = options.time_slicing {
                let _ = write!(y, ", time_slicing: {{replicas: {}}}", shares_per_gpu(shares, n.gpus));
            }
            y.push('}');
        }
        y.push_str("}\n");
    }
    let embed_times: Vec<String> =
        GPU_KINDS.iter().map(|k| format!("{}: {}", k.model(), k.embed_ms())).collect();
    let _ = write!(
        y,
        concat!(
            "services:\n",
            "  - {{name: router, replicas: 40, requests: {{cpu_millicores: 500, memory_mib: 512}}, service_time_ms: {{cpu: 1.5}}, cold_start_s: 5}}\n",
            "  - {{name: infinity-embed, replicas: 100, requests: {{cpu_millicores: 4000, memory_mib: 16384, gpus: 1, gpu_memory_mib: 8192{}}}, service_time_ms: {{{}}}, cold_start_s: 45}}\n",
            "  - {{name: rerank, replicas: 60, requests: {{cpu_millicores: 8000, memory_mib: 4096}}, service_time_ms: {{cpu: 60.0}}, cold_start_s: 20}}\n",
            "user_groups:\n",
            "  - {{name: search-a, zone: zone-a, rate: {{base_rps: 200, amplitude: 0.6, noise: 0.05}}, chain: [router, infinity-embed, rerank]}}\n",
            "  - {{name: search-b, zone: zone-b, rate: {{base_rps: 180, amplitude: 0.6, phase_s: 3600, noise: 0.05}}, chain: [router, infinity-embed, rerank]}}\n",
            "  - {{name: search-c, zone: zone-c, rate: {{base_rps: 150, amplitude: 0.6, phase_s: -3600, noise: 0.05}}, chain: [router, infinity-embed, rerank]}}\n",
            "  - {{name: index-a, zone: zone-a, rate: {{base_rps: 150, amplitude: 0.8, phase_s: 43200, noise: 0.1}}, chain: [router, infinity-embed]}}\n",
            "  - {{name: index-b, zone: zone-b, rate: {{base_rps: 100, amplitude: 0.8, phase_s: 43200, noise: 0.1}}, chain: [router, infinity-embed]}}\n",
            "  - {{name: index-c, zone: zone-c, rate: {{base_rps: 80, amplitude: 0.8, phase_s: 43200, noise: 0.1}}, chain: [router, infinity-embed]}}\n",
            "failures:\n  mtbf_hours: 720\n  mttr_minutes: 45\n",
            "background:\n",
        ),
        if options.time_slicing.is_some() { ", accepts: {time_sliced: true}" } else { "" },
        embed_times.join(", ")
    );
    for (k, p) in pods.iter().enumerate() {
        let (from_s, to_s) = pod_lifetime(k, pods.len(), window);
        let _ = write!(y, "  - {{cpu_milli: {}, memory_mib: {}", p.cpu_milli, p.memory_mib);
        if p.num_gpu > 0 {
            let _ = write!(y, ", num_gpu: {}, gpu_milli: {}", p.num_gpu, p.gpu_milli);
        }
        if !p.gpu_spec.is_empty() {
            let _ = write!(y, ", gpu_spec: \"{}\"", p.gpu_spec);
        }
        let _ = writeln!(y, ", from_s: {from_s:.1}, to_s: {to_s:.1}}}");
    }
    y
}
