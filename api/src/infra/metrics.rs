//! The service's metrics registry, rendered for Prometheus at `/metrics`: requests by route and status with their latency,
//! training tasks and policy deployments by state, and how long training took. Text exposition format 0.0.4,
//! written here: a few counters do not need a metrics framework.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use crate::store::Status;

/// Upper bounds of the request latency buckets, seconds.
const REQUEST_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];
/// Upper bounds of the training duration buckets, seconds.
const TRAINING_BUCKETS: [f64; 8] = [1.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0];

/// A cumulative histogram.
#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self { bounds, counts: vec![0; bounds.len()], sum: 0.0, count: 0 }
    }

    fn observe(&mut self, value: f64) {
        for (bound, count) in self.bounds.iter().zip(&mut self.counts) {
            if value <= *bound {
                *count += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// The service's own metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// By `(method, route, status)`.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// By `(method, route)`.
    latency: Mutex<BTreeMap<(String, String), Histogram>>,
    /// By `(agent, final status)`.
    training: Mutex<BTreeMap<(String, String), Histogram>>,
}

impl Metrics {
    pub fn record_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let key = (method.to_string(), route.to_string());
        *self
            .requests
            .lock()
            .expect("metrics lock")
            .entry((key.0.clone(), key.1.clone(), status))
            .or_default() += 1;
        self.latency
            .lock()
            .expect("metrics lock")
            .entry(key)
            .or_insert_with(|| Histogram::new(&REQUEST_BUCKETS))
            .observe(seconds);
    }

    /// Records a training run that ended with `status` after `seconds`.
    pub fn record_training(&self, agent: &str, status: Status, seconds: f64) {
        self.training
            .lock()
            .expect("metrics lock")
            .entry((agent.to_string(), status.name().to_string()))
            .or_insert_with(|| Histogram::new(&TRAINING_BUCKETS))
            .observe(seconds);
    }

    /// The exposition text, with the task and deployment counts by status read from the store.
    pub fn render(&self, tasks_by_status: &[(Status, u64)], deployments_by_status: &[(&str, u64)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP berth_http_requests_total HTTP requests by method, route and status.\n");
        out.push_str("# TYPE berth_http_requests_total counter\n");
        for ((method, route, status), n) in self.requests.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "berth_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP berth_http_request_duration_seconds Time to answer, by method and route.\n");
        out.push_str("# TYPE berth_http_request_duration_seconds histogram\n");
        for ((method, route), h) in self.latency.lock().expect("metrics lock").iter() {
            h.render(
                &mut out,
                "berth_http_request_duration_seconds",
                &format!("method=\"{method}\",route=\"{route}\""),
            );
        }
        out.push_str("# HELP berth_training_tasks Training tasks in the store, by status.\n");
        out.push_str("# TYPE berth_training_tasks gauge\n");
        for (status, n) in tasks_by_status {
            let _ = writeln!(out, "berth_training_tasks{{status=\"{}\"}} {n}", status.name());
        }
        out.push_str("# HELP berth_deployments Policy deployments in the store, by status.\n");
        out.push_str("# TYPE berth_deployments gauge\n");
        for (status, n) in deployments_by_status {
            let _ = writeln!(out, "berth_deployments{{status=\"{status}\"}} {n}");
        }
        out.push_str("# HELP berth_training_duration_seconds Wall time of training runs this process ended, by agent and outcome.\n");
        out.push_str("# TYPE berth_training_duration_seconds histogram\n");
        for ((agent, status), h) in self.training.lock().expect("metrics lock").iter() {
            h.render(
                &mut out,
                "berth_training_duration_seconds",
                &format!("agent=\"{agent}\",status=\"{status}\""),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_render_in_the_exposition_format() {
        let metrics = Metrics::default();
        metrics.record_request("GET", "/api/v1/models", 200, 0.003);
        metrics.record_request("GET", "/api/v1/models", 200, 0.2);
        metrics.record_training("ppo", Status::Completed, 42.0);
        let text = metrics.render(&[(Status::Running, 1)], &[("succeeded", 3)]);
        assert!(
            text.contains(
                "berth_http_requests_total{method=\"GET\",route=\"/api/v1/models\",status=\"200\"} 2"
            )
        );
        assert!(text.contains("berth_http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/v1/models\",le=\"0.0025\"} 0"));
        assert!(text.contains("berth_http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/v1/models\",le=\"0.005\"} 1"));
        assert!(text.contains("berth_http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/v1/models\",le=\"+Inf\"} 2"));
        assert!(text.contains("berth_training_tasks{status=\"running\"} 1"));
        assert!(text.contains("berth_deployments{status=\"succeeded\"} 3"));
        assert!(text.contains(
            "berth_training_duration_seconds_bucket{agent=\"ppo\",status=\"completed\",le=\"60\"} 1"
        ));
        assert!(text.contains("berth_training_duration_seconds_count{agent=\"ppo\",status=\"completed\"} 1"));
    }

    /// The chart's Grafana dashboard (`helm/berth/dashboards/berth.json`) only queries
    /// metrics this module exports, so a renamed metric cannot leave a panel empty.
    #[test]
    fn the_grafana_dashboard_queries_only_metrics_we_export() {
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../../helm/berth/dashboards/berth.json")).unwrap();
        let metrics = Metrics::default();
        metrics.record_request("GET", "/health/live", 200, 0.001);
        metrics.record_training("dqn", Status::Completed, 1.0);
        let text = metrics.render(&[(Status::Pending, 0)], &[("planned", 0)]);
        let exported: Vec<&str> =
            text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split(['{', ' ']).next()).collect();
        let panels = dashboard["panels"].as_array().unwrap();
        assert!(panels.len() >= 6, "request rate, latency, errors, tasks, training, deployments");
        let mut queried = 0;
        for target in panels.iter().flat_map(|p| p["targets"].as_array().unwrap()) {
            let expr = target["expr"].as_str().unwrap();
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("berth_"))
            {
                assert!(
                    exported.contains(&name),
                    "the dashboard queries `{name}`, which /metrics does not export"
                );
                queried += 1;
            }
        }
        assert!(queried >= 6, "{queried}");
    }
}
