//! The experiment's plots as PNGs: learning curves with seed bands, latency bars with 95%
//! intervals, latency over a simulated day, and speed as the cluster grows.

use std::path::Path;

use berth_agents::plot::{FONT, register_font};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::Error;

/// Tableau's ten colours, in order.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

fn fail(path: &Path) -> impl Fn(&dyn std::fmt::Display) -> Error + '_ {
    move |e| Error::Io { path: path.display().to_string(), reason: format!("drawing failed: {e}") }
}

fn canvas(path: &Path, size: (u32, u32)) -> Result<DrawingArea<BitMapBackend<'_>, Shift>, Error> {
    register_font();
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(path)(&e))?;
    Ok(root)
}

fn y_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let pad = ((hi - lo) * 0.08).max(1e-6);
    (lo - pad)..(hi + pad)
}

/// One agent's curves, one per seed: `(step, episodic return)`.
pub struct Curves {
    /// Legend label.
    pub label: String,
    /// Per seed.
    pub seeds: Vec<Vec<(u64, f64)>>,
}

/// Bins of the step axis the seed curves are averaged on.
const BINS: usize = 40;

/// Mean, min and max over seeds of each seed's mean return per bin of the step axis; a bin
/// where a seed finished no episode carries that seed's previous value.
pub fn band(seeds: &[Vec<(u64, f64)>], x_max: f64) -> Vec<(f64, f64, f64, f64)> {
    let width = x_max / BINS as f64;
    let per_seed: Vec<Vec<Option<f64>>> = seeds
        .iter()
        .map(|points| {
            let mut sums = vec![(0.0, 0usize); BINS];
            for &(x, y) in points {
                let b = ((x as f64 / width) as usize).min(BINS - 1);
                sums[b].0 += y;
                sums[b].1 += 1;
            }
            let mut last = None;
            sums.iter()
                .map(|&(s, n)| {
                    if n > 0 {
                        last = Some(s / n as f64);
                    }
                    last
                })
                .collect()
        })
        .collect();
    (0..BINS)
        .filter_map(|b| {
            let v: Vec<f64> = per_seed.iter().filter_map(|s| s[b]).collect();
            (!v.is_empty()).then(|| {
                let mean = v.iter().sum::<f64>() / v.len() as f64;
                let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                ((b as f64 + 0.5) * width, mean, lo, hi)
            })
        })
        .collect()
}

/// Learning curves: each agent's mean over seeds with a min–max band, baselines dashed.
pub fn learning_curves(
    path: &Path,
    title: &str,
    agents: &[Curves],
    references: &[(String, f64)],
) -> Result<(), Error> {
    let x_max = agents.iter().flat_map(|a| a.seeds.iter().flatten()).map(|p| p.0 as f64).fold(1.0, f64::max);
    let bands: Vec<Vec<(f64, f64, f64, f64)>> = agents.iter().map(|a| band(&a.seeds, x_max)).collect();
    let ys = bands.iter().flatten().flat_map(|b| [b.2, b.3]).chain(references.iter().map(|r| r.1));
    let root = canvas(path, (960, 540))?;
    let err = fail(path);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(0.0..x_max, y_range(ys))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("environment steps")
        .y_desc("episodic return (mean over seeds, band: min–max)")
        .x_label_formatter(&|x| {
            if x_max >= 10_000.0 { format!("{:.0}k", x / 1000.0) } else { format!("{x:.0}") }
        })
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (agent, band)) in agents.iter().zip(&bands).enumerate() {
        let c = colour(i);
        let outline: Vec<(f64, f64)> =
            band.iter().map(|b| (b.0, b.3)).chain(band.iter().rev().map(|b| (b.0, b.2))).collect();
        chart.draw_series(std::iter::once(Polygon::new(outline, c.mix(0.18)))).map_err(|e| err(&e))?;
        chart
            .draw_series(LineSeries::new(band.iter().map(|b| (b.0, b.1)), c.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(format!("{} ({} seeds)", agent.label, agent.seeds.len()))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    for (k, (label, value)) in references.iter().enumerate() {
        let c = colour(agents.len() + k);
        chart
            .draw_series(DashedLineSeries::new([(0.0, *value), (x_max, *value)], 8, 6, c.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(format!("{label} ({value:.2})"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight, path)?;
    root.present().map_err(|e| err(&e))
}

fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
    path: &Path,
) -> Result<(), Error> {
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(|e| fail(path)(&e))
}

/// One panel of bars: a scenario under a condition.
pub struct BarPanel {
    /// Panel title.
    pub title: String,
    /// `(policy, mean, 95% half-width)`.
    pub bars: Vec<(String, f64, f64)>,
}

/// A figure per policy with 95% intervals (`y_desc` its unit), one panel per scenario and
/// condition, under `title`.
pub fn bars(path: &Path, title: &str, y_desc: &str, panels: &[BarPanel]) -> Result<(), Error> {
    // Room for each bar's label ("descheduler-high" is about 110 px at this size).
    let panel_width = panels.iter().map(|p| (110 * p.bars.len() as u32 + 80).max(420)).max().unwrap_or(420);
    let width = (panel_width * panels.len() as u32).clamp(640, 4000);
    let root = canvas(path, (width, 480))?;
    let err = fail(path);
    root.titled(title, (FONT, 22)).map_err(|e| err(&e))?;
    let areas = root.margin(36, 0, 0, 0).split_evenly((1, panels.len().max(1)));
    for (panel, area) in panels.iter().zip(&areas) {
        let n = panel.bars.len();
        let (bottom, top) = bar_axis(&panel.bars);
        let y_desc = if bottom > 0.0 { format!("{y_desc} (axis from {bottom})") } else { y_desc.to_string() };
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, (FONT, 16))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(72)
            // A segmented range over `0..k` has k + 1 segments: `0..n - 1` gives one per bar.
            .build_cartesian_2d((0..n.saturating_sub(1)).into_segmented(), bottom..top)
            .map_err(|e| err(&e))?;
        let names: Vec<String> = panel.bars.iter().map(|b| b.0.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n.max(1))
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .y_desc(y_desc)
            .y_label_formatter(&|v| if top >= 100.0 { format!("{v:.0}") } else { format!("{v:.1}") })
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .draw()
            .map_err(|e| err(&e))?;
        for (i, (_, mean, half)) in panel.bars.iter().enumerate() {
            let c = colour(i);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(SegmentValue::Exact(i), bottom), (SegmentValue::Exact(i + 1), *mean)],
                    c.mix(0.8).filled(),
                )))
                .map_err(|e| err(&e))?;
            let whisker = PathElement::new(
                [(SegmentValue::CenterOf(i), mean - half), (SegmentValue::CenterOf(i), mean + half)],
                BLACK.stroke_width(2),
            );
            chart.draw_series(std::iter::once(whisker)).map_err(|e| err(&e))?;
        }
    }
    root.present().map_err(|e| err(&e))
}

/// The value axis of a panel of bars: from 0, unless every bar stands so far above it that
/// their differences would not show (the lowest whisker above half the highest), then from a
/// round figure a little below the lowest whisker; the top a tenth above the highest.
fn bar_axis(bars: &[(String, f64, f64)]) -> (f64, f64) {
    let high = bars.iter().map(|b| b.1 + b.2).fold(1.0, f64::max);
    let low = bars.iter().map(|b| b.1 - b.2).fold(f64::INFINITY, f64::min);
    if !(low.is_finite() && low > high / 2.0) {
        return (0.0, high * 1.1);
    }
    let span = (high - low).max(high * 1e-3);
    let step = 10f64.powf(span.log10().floor());
    let bottom = ((low - span * 0.5) / step).floor() * step;
    (bottom.max(0.0), high + (high - bottom) * 0.1)
}

/// Latency over one simulated day: `(label, latency per tick)`, tick length in hours.
pub fn day(path: &Path, title: &str, tick_hours: f64, lines: &[(String, Vec<f64>)]) -> Result<(), Error> {
    let ticks = lines.iter().map(|l| l.1.len()).max().unwrap_or(1);
    let x_max = (ticks as f64 * tick_hours).max(tick_hours);
    let root = canvas(path, (960, 480))?;
    let err = fail(path);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max, y_range(lines.iter().flat_map(|l| l.1.iter().copied())))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("hour of the simulated day")
        .y_desc("mean request latency (ms)")
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (label, values)) in lines.iter().enumerate() {
        let c = colour(i);
        let points = values.iter().enumerate().map(|(t, v)| ((t as f64 + 0.5) * tick_hours, *v));
        chart
            .draw_series(LineSeries::new(points, c.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight, path)?;
    root.present().map_err(|e| err(&e))
}

/// Steps per second against cluster size (log–log): `(label, [(nodes, steps/s)])`.
pub fn scaling(path: &Path, series: &[(String, Vec<(f64, f64)>)]) -> Result<(), Error> {
    let xs = series.iter().flat_map(|s| s.1.iter().map(|p| p.0));
    let ys = series.iter().flat_map(|s| s.1.iter().map(|p| p.1));
    let (x_lo, x_hi) = xs.fold((f64::INFINITY, 1.0f64), |(l, h), v| (l.min(v), h.max(v)));
    let (y_lo, y_hi) = ys.fold((f64::INFINITY, 1.0f64), |(l, h), v| (l.min(v), h.max(v)));
    let root = canvas(path, (960, 540))?;
    let err = fail(path);
    let mut chart = ChartBuilder::on(&root)
        .caption("Steps per second as the cluster grows", (FONT, 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(
            (x_lo.min(x_hi) * 0.7..x_hi * 1.4).log_scale(),
            (y_lo.min(y_hi).max(1e-3) * 0.5..y_hi * 2.0).log_scale(),
        )
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("nodes")
        .y_desc("steps per second")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (label, points)) in series.iter().enumerate() {
        let c = colour(i);
        chart
            .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 4, c.filled()))).map_err(|e| err(&e))?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight, path)?;
    root.present().map_err(|e| err(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn band_averages_bins_and_carries_empty_ones() {
        let seeds = vec![vec![(0, 1.0), (10, 3.0)], vec![(0, 5.0)]];
        let b = band(&seeds, 40.0);
        // bin 0 (x < 1): seeds 1.0 and 5.0
        assert_eq!((b[0].1, b[0].2, b[0].3), (3.0, 1.0, 5.0));
        // bin 10: seed 1 has 3.0, seed 2 carries 5.0
        assert_eq!((b[10].1, b[10].2, b[10].3), (4.0, 3.0, 5.0));
        assert_eq!(b.len(), BINS);
    }

    #[test]
    fn bars_far_above_zero_get_an_axis_that_shows_their_differences() {
        let bar = |mean: f64, half: f64| ("p".to_string(), mean, half);
        // Latencies from 100 to 800 ms: from 0.
        assert_eq!(bar_axis(&[bar(100.0, 5.0), bar(800.0, 80.0)]), (0.0, 880.0 * 1.1));
        // 4,621 to 4,716 GPUs: from a round figure below the lowest whisker.
        let (bottom, top) = bar_axis(&[bar(4621.0, 1.2), bar(4716.0, 2.7)]);
        assert_eq!(bottom, 4570.0, "half the span (49.5) below 4,619.8, in tens");
        assert!(top > 4718.7 && top < 4740.0, "{top}");
        // Identical bars still get a range, and nothing goes below 0.
        let (bottom, top) = bar_axis(&[bar(4.0, 0.0), bar(4.0, 0.0)]);
        assert!(bottom < 4.0 && top > 4.0 && bottom >= 0.0, "{bottom}..{top}");
        assert_eq!(bar_axis(&[]), (0.0, 1.1));
    }
}
