//! Plain-text tables for the terminal.

use berth_env::bench::BenchRow;
use berth_env::evaluate::EvalRow;

/// Formats rows under headers, columns right-aligned but the first.
fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..headers.len())
        .map(|c| rows.iter().map(|r| r[c].len()).chain([headers[c].len()]).max().unwrap_or(0))
        .collect();
    let line =
        |cells: Vec<String>| {
            cells
                .iter()
                .enumerate()
                .map(|(c, s)| {
                    if c == 0 { format!("{s:<w$}", w = widths[c]) } else { format!("{s:>w$}", w = widths[c]) }
                })
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
                + "\n"
        };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    out += &line(widths.iter().map(|&w| "-".repeat(w)).collect());
    for r in rows {
        out += &line(r.clone());
    }
    out
}

/// The comparison table of `berth eval`.
pub fn eval_table(rows: &[EvalRow]) -> String {
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.policy.clone(),
                format!("{:.1}", r.mean_latency_ms),
                format!("{:.1}", r.p95_latency_ms),
                format!("{:.2}%", r.slo_miss * 100.0),
                format!("{:.1}", r.moves),
                format!("{:.2}", r.reward),
                r.gap_to_oracle.map_or("-".into(), |g| format!("{:+.1}%", g * 100.0)),
            ]
        })
        .collect();
    render(&["policy", "mean ms", "p95 ms", "SLO miss", "moves/ep", "return", "gap to oracle"], &body)
}

/// The table of `berth bench env`.
pub fn bench_table(rows: &[BenchRow]) -> String {
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.scenario.clone(),
                if r.vectorized { format!("vector x{}", r.copies) } else { "single".into() },
                format!("{:.0}", r.steps_per_sec),
            ]
        })
        .collect();
    render(&["scenario", "env", "steps/s"], &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eval_table_shows_a_dash_without_an_oracle() {
        let row = EvalRow {
            policy: "spread".into(),
            mean_latency_ms: 120.25,
            p95_latency_ms: 300.0,
            slo_miss: 0.0123,
            moves: 2.0,
            reward: -100.5,
            gap_to_oracle: None,
        };
        let t = eval_table(&[row]);
        assert!(t.lines().nth(2).unwrap().starts_with("spread"), "{t}");
        assert!(t.contains("1.23%") && t.trim_end().ends_with('-'), "{t}");
    }
}
