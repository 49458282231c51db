//! A user group's request rate over time: the synthetic diurnal curve, or a recorded trace
//! (`traces:` in the scenario) scaled to the group's peak.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::scenario::finite_at_least;
use crate::spec::{RateSpec, TraceSpec};

/// How a trace of another length covers the rate's period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceFit {
    /// Stretched or squeezed so that it spans `period_s` (a day, unless said otherwise).
    #[default]
    Stretch,
    /// Played at its own step, starting again after its last sample.
    Wrap,
}

/// Request rate over time. Synthetic: `base * (1 + amplitude * sin(2π (t + phase) / period))`;
/// with a trace: `base * trace((t + phase) / period)`, the trace normalised to a peak of 1
/// and read cyclically with linear interpolation. Either way times `(1 + noise * N(0,1))`
/// per tick, which the simulator draws.
#[derive(Debug, Clone, PartialEq)]
pub struct RateModel {
    /// Mean requests per second; with a trace, the peak.
    pub base_rps: f64,
    /// Relative diurnal swing, in [0, 1]; 0 with a trace.
    pub amplitude: f64,
    /// Period of the swing, seconds; with a trace, the time it takes to play once.
    pub period_s: f64,
    /// Phase shift, seconds.
    pub phase_s: f64,
    /// Relative standard deviation of per-tick noise.
    pub noise: f64,
    /// The trace's samples, peak 1, evenly spread over the period.
    pub trace: Option<Arc<[f64]>>,
}

impl RateModel {
    /// The noise-free rate at time `t_s`.
    pub fn mean_at(&self, t_s: f64) -> f64 {
        match &self.trace {
            // The same arithmetic, in the same order, as before traces: results reproduce.
            None => {
                let angle = std::f64::consts::TAU * (t_s + self.phase_s) / self.period_s;
                self.base_rps * (1.0 + self.amplitude * angle.sin())
            }
            Some(trace) => {
                let cycles = (t_s + self.phase_s) / self.period_s;
                let at = cycles.rem_euclid(1.0) * trace.len() as f64;
                let k = (at.floor() as usize).min(trace.len() - 1);
                let w = at - k as f64;
                self.base_rps * (trace[k] * (1.0 - w) + trace[(k + 1) % trace.len()] * w)
            }
        }
    }

    /// An upper bound of the rate, used to normalise observations.
    pub fn peak(&self) -> f64 {
        self.base_rps * (1.0 + self.amplitude) * (1.0 + 3.0 * self.noise)
    }
}

/// A validated trace: its samples normalised to a peak of 1, and their step.
#[derive(Debug, Clone)]
pub(crate) struct Trace {
    shape: Arc<[f64]>,
    step_s: f64,
}

/// Traces by name.
pub(crate) type Traces = HashMap<String, Trace>;

/// Checks every trace: a step, at least two samples, none negative, not all zero.
pub(crate) fn validate_traces(specs: &BTreeMap<String, TraceSpec>) -> Result<Traces> {
    let mut out = HashMap::with_capacity(specs.len());
    for (name, spec) in specs {
        let path = format!("traces.{name}");
        let step_s = finite_at_least(&format!("{path}.step_s"), spec.step_s, 0.0, true)?;
        if spec.values.len() < 2 {
            return Err(Error::invalid(format!("{path}.values"), "a trace needs at least 2 samples"));
        }
        for (k, v) in spec.values.iter().enumerate() {
            finite_at_least(&format!("{path}.values[{k}]"), *v, 0.0, false)?;
        }
        let peak = spec.values.iter().copied().fold(0.0, f64::max);
        if peak <= 0.0 {
            return Err(Error::invalid(format!("{path}.values"), "all samples are 0; a trace needs a peak"));
        }
        let shape: Arc<[f64]> = spec.values.iter().map(|v| v / peak).collect();
        out.insert(name.clone(), Trace { shape, step_s });
    }
    Ok(out)
}

/// Checks one group's rate (`path` is its `rate`): `base_rps` and the curve's figures, or
/// `trace` and `peak_rps`, never a mix.
pub(crate) fn validate_rate(path: &str, r: &RateSpec, traces: &Traces) -> Result<RateModel> {
    let field = |name: &str| format!("{path}.{name}");
    let phase_s = finite_at_least(&field("phase_s"), r.phase_s, f64::MIN, false)?;
    let noise = finite_at_least(&field("noise"), r.noise, 0.0, false)?;
    let Some(name) = &r.trace else {
        if r.peak_rps.is_some() {
            return Err(Error::invalid(
                field("peak_rps"),
                "is for a traced rate; give base_rps, or name a trace",
            ));
        }
        let base_rps = r
            .base_rps
            .ok_or_else(|| Error::invalid(field("base_rps"), "is required unless a trace is named"))?;
        let amplitude = finite_at_least(&field("amplitude"), r.amplitude, 0.0, false)?;
        if amplitude > 1.0 {
            return Err(Error::invalid(
                field("amplitude"),
                format!("must be in [0, 1] (a relative swing), got {amplitude}"),
            ));
        }
        return Ok(RateModel {
            base_rps: finite_at_least(&field("base_rps"), base_rps, 0.0, false)?,
            amplitude,
            period_s: finite_at_least(&field("period_s"), r.period_s, 0.0, true)?,
            phase_s,
            noise,
            trace: None,
        });
    };
    let trace = traces.get(name).ok_or_else(|| {
        let known: Vec<&str> = traces.keys().map(String::as_str).collect();
        Error::invalid(field("trace"), format!("unknown trace `{name}` (the scenario's traces: {known:?})"))
    })?;
    if r.base_rps.is_some() {
        return Err(Error::invalid(field("base_rps"), "a traced rate is scaled by peak_rps, not base_rps"));
    }
    if r.amplitude != 0.0 {
        return Err(Error::invalid(field("amplitude"), "a traced rate takes its swing from the trace"));
    }
    let peak_rps = r.peak_rps.ok_or_else(|| Error::invalid(field("peak_rps"), "is required with a trace"))?;
    let period_s = match r.fit {
        TraceFit::Stretch => finite_at_least(&field("period_s"), r.period_s, 0.0, true)?,
        TraceFit::Wrap => trace.step_s * trace.shape.len() as f64,
    };
    Ok(RateModel {
        base_rps: finite_at_least(&field("peak_rps"), peak_rps, 0.0, false)?,
        amplitude: 0.0,
        period_s,
        phase_s,
        noise,
        trace: Some(Arc::clone(&trace.shape)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traced(values: &[f64], fit: TraceFit, period_s: f64, phase_s: f64) -> RateModel {
        let spec = TraceSpec { _source: String::new(), step_s: 60.0, values: values.to_vec() };
        let traces = validate_traces(&BTreeMap::from([("t".to_string(), spec)])).unwrap();
        let rate = RateSpec {
            base_rps: None,
            peak_rps: Some(10.0),
            trace: Some("t".into()),
            fit,
            amplitude: 0.0,
            period_s,
            phase_s,
            noise: 0.0,
        };
        validate_rate("rate", &rate, &traces).unwrap()
    }

    #[test]
    fn a_stretched_trace_spans_the_period_scaled_to_the_peak() {
        let rate = traced(&[1.0, 2.0, 4.0, 2.0], TraceFit::Stretch, 400.0, 0.0);
        assert_eq!(rate.mean_at(0.0), 2.5);
        assert_eq!(rate.mean_at(200.0), 10.0);
        assert_eq!(rate.mean_at(250.0), 7.5);
        // Between the last sample and the first again.
        assert_eq!(rate.mean_at(350.0), 3.75);
        assert_eq!(rate.mean_at(600.0), 10.0);
        assert_eq!(rate.peak(), 10.0);
    }

    #[test]
    fn a_wrapped_trace_plays_at_its_own_step_and_the_phase_shifts_it() {
        let rate = traced(&[1.0, 2.0, 4.0, 2.0], TraceFit::Wrap, 86_400.0, 60.0);
        assert_eq!(rate.period_s, 240.0);
        assert_eq!(rate.mean_at(0.0), 5.0);
        assert_eq!(rate.mean_at(60.0), 10.0);
        assert_eq!(rate.mean_at(240.0), 5.0);
    }
}
