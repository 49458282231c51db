//! The learning curve as a PNG: episodic return over environment steps, with the
//! baselines' returns as reference lines.
//!
//! Text is drawn with DejaVu Sans compiled into the binary, so plots look the same on a
//! machine without any fonts installed.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::error::{Error, Result};
use crate::run_log::RunLog;

const SIZE: (u32, u32) = (960, 540);
/// The font family every plot draws with (DejaVu Sans, registered by [`register_font`]).
pub const FONT: &str = "sans-serif";

/// Colours of the reference lines, in order.
const REFERENCE_COLOURS: [RGBColor; 5] =
    [RGBColor(214, 39, 40), RGBColor(44, 160, 44), RGBColor(148, 103, 189), RGBColor(140, 86, 75), GREEN];

/// Registers the embedded DejaVu Sans as [`FONT`]; call before drawing text.
pub fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are DejaVu Sans itself; registering cannot fail for them.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
    });
}

/// A horizontal line to compare the curve with (a baseline's mean return).
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// Legend label.
    pub label: String,
    /// Its mean return per episode.
    pub value: f64,
}

/// Draws the episodic returns of `log` over steps, smoothed over a window of rows, with
/// `references` as dashed lines, to `path` (PNG). Fails if no episode finished.
pub fn learning_curve(log: &RunLog, title: &str, references: &[Reference], path: &Path) -> Result<()> {
    let points: Vec<(f64, f64)> =
        log.rows().iter().filter_map(|r| r.episodic_return.map(|ret| (r.global_step as f64, ret))).collect();
    let err = |reason: String| Error::Write { path: path.display().to_string(), reason };
    if points.is_empty() {
        return Err(err("no episode finished during the run: nothing to plot".into()));
    }
    let smoothed = moving_average(&points, (points.len() / 25).max(1));
    let x_max = points.last().map_or(1.0, |p| p.0).max(1.0);
    let values = points.iter().map(|p| p.1).chain(references.iter().map(|r| r.value));
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let pad = ((hi - lo) * 0.05).max(1e-6);
    register_font();
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    let draw = |e: &dyn std::fmt::Display| err(e.to_string());
    root.fill(&WHITE).map_err(|e| draw(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(0.0..x_max, (lo - pad)..(hi + pad))
        .map_err(|e| draw(&e))?;
    chart
        .configure_mesh()
        .x_desc("environment steps")
        .x_label_formatter(&|x| {
            if x_max >= 10_000.0 { format!("{:.0}k", x / 1000.0) } else { format!("{x:.0}") }
        })
        .y_label_formatter(&|y| format!("{y:.1}"))
        .y_desc("episodic return")
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(|e| draw(&e))?;
    let raw = RGBColor(31, 119, 180).mix(0.25);
    chart.draw_series(LineSeries::new(points.iter().copied(), raw)).map_err(|e| draw(&e))?;
    chart
        .draw_series(LineSeries::new(smoothed, RGBColor(31, 119, 180).stroke_width(2)))
        .map_err(|e| draw(&e))?
        .label("agent (smoothed)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RGBColor(31, 119, 180).stroke_width(2)));
    for (reference, colour) in references.iter().zip(REFERENCE_COLOURS.iter().cycle()) {
        let line = DashedLineSeries::new(
            [(0.0, reference.value), (x_max, reference.value)],
            8,
            6,
            colour.stroke_width(2),
        );
        chart
            .draw_series(line)
            .map_err(|e| draw(&e))?
            .label(format!("{} ({:.2})", reference.label, reference.value))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(|e| draw(&e))?;
    root.present().map_err(|e| draw(&e))
}

/// Trailing mean over `window` points.
fn moving_average(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let mut sum = 0.0;
    points
        .iter()
        .enumerate()
        .map(|(i, &(x, y))| {
            sum += y;
            if i >= window {
                sum -= points[i - window].1;
            }
            (x, sum / (i + 1).min(window) as f64)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_log::LogRow;

    #[test]
    fn moving_average_over_a_trailing_window() {
        let pts = [(0.0, 1.0), (1.0, 3.0), (2.0, 5.0), (3.0, 7.0)];
        let avg: Vec<f64> = moving_average(&pts, 2).iter().map(|p| p.1).collect();
        assert_eq!(avg, vec![1.0, 2.0, 4.0, 6.0]);
    }

    #[test]
    fn learning_curve_is_a_png_and_an_empty_log_is_refused() {
        let dir = std::env::temp_dir().join(format!("berth-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("curve.png");
        let mut log = RunLog::new();
        assert!(learning_curve(&log, "empty", &[], &path).is_err());
        for i in 0..50u64 {
            log.push(LogRow {
                global_step: i * 100,
                episodic_return: Some(-100.0 + i as f64),
                ..Default::default()
            });
        }
        let refs = [Reference { label: "oracle".into(), value: -40.0 }];
        learning_curve(&log, "test run", &refs, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert!(bytes.len() > 5_000, "a drawn chart, not a blank image: {} bytes", bytes.len());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
