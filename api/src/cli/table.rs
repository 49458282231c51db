//! Plain-text tables for the terminal.

use berth_env::bench::BenchRow;
use berth_env::evaluate::{self, EvalRow};

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

/// The comparison table of `berth eval`; with a `greedy` row, every other row's cost against
/// `greedy`'s on the same days (the mean of the per-day ratios, and the worst day).
pub fn eval_table(rows: &[EvalRow]) -> String {
    let greedy = rows.iter().find(|r| r.policy == "greedy");
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let versus = greedy.filter(|g| g.policy != r.policy).and_then(|g| evaluate::versus(r, g));
            vec![
                r.policy.clone(),
                format!("{:.1}", r.mean_latency_ms),
                format!("{:.1}", r.p95_latency_ms),
                format!("{:.2}%", r.slo_miss * 100.0),
                format!("{:.1}", r.moves),
                r.gpus_used.map_or("-".into(), |g| format!("{g:.2}")),
                format!("{:.2}", r.reward),
                r.gap_to_oracle.map_or("-".into(), |g| signed_percent(g, 1)),
                versus.map_or("-".into(), |v| signed_percent(v.mean, 2)),
                versus.map_or("-".into(), |v| signed_percent(v.worst, 2)),
            ]
        })
        .collect();
    let headers = [
        "policy",
        "mean ms",
        "p95 ms",
        "SLO miss",
        "moves/ep",
        "GPUs used",
        "return",
        "gap to oracle",
        "vs greedy",
        "worst day",
    ];
    render(&headers, &body)
}

/// `fraction` as a signed percentage with `decimals` places; one that rounds to zero is
/// `+0.00%`, not `-0.00%`, so a day a hair below `greedy` does not read as a gain.
fn signed_percent(fraction: f64, decimals: usize) -> String {
    let scale = 10f64.powi(decimals as i32);
    let rounded = (fraction * 100.0 * scale).round() / scale;
    // Adding zero turns a negative zero into a positive one.
    format!("{:+.*}%", decimals, rounded + 0.0)
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

/// Every row's episodes as CSV, one line a policy and day: `policy, seed, cost,
/// mean_latency_ms, slo_miss, moves, gap_to_oracle, gpus_used` (that day's; the gap empty
/// without an oracle row, GPUs empty for the oracle).
pub fn per_day_csv(rows: &[EvalRow]) -> String {
    let oracle = rows.iter().find(|r| r.policy == "oracle");
    let mut out = String::from("policy,seed,cost,mean_latency_ms,slo_miss,moves,gap_to_oracle,gpus_used\n");
    for row in rows {
        // A model's path may hold a comma or a quote: quoted as CSV quotes.
        let name = if row.policy.contains([',', '"']) {
            format!("\"{}\"", row.policy.replace('"', "\"\""))
        } else {
            row.policy.clone()
        };
        for (i, day) in row.days.iter().enumerate() {
            let gap = oracle
                .and_then(|o| o.days.get(i))
                .filter(|o| o.seed == day.seed && o.cost > 0.0)
                .map_or(String::new(), |o| format!("{}", (day.cost - o.cost) / o.cost));
            let gpus = day.gpus_used.map_or(String::new(), |g| g.to_string());
            out.push_str(&format!(
                "{name},{},{},{},{},{},{gap},{gpus}\n",
                day.seed, day.cost, day.mean_latency_ms, day.slo_miss, day.moves
            ));
        }
    }
    out
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
            gpus_used: Some(3.5),
            days: Vec::new(),
        };
        let t = eval_table(std::slice::from_ref(&row));
        assert!(t.lines().nth(2).unwrap().starts_with("spread"), "{t}");
        let last: Vec<&str> = t.lines().nth(2).unwrap().split_whitespace().rev().take(3).collect();
        assert!(t.contains("1.23%") && t.contains("3.50") && last == ["-", "-", "-"], "{t}");
    }

    #[test]
    fn eval_table_compares_each_row_with_greedy_day_by_day() {
        let row = |policy: &str, costs: [f64; 2]| EvalRow {
            policy: policy.into(),
            mean_latency_ms: 100.0,
            p95_latency_ms: 200.0,
            slo_miss: 0.01,
            moves: 1.0,
            reward: -(costs[0] + costs[1]) / 2.0,
            gap_to_oracle: None,
            gpus_used: None,
            days: (0..2)
                .map(|d| evaluate::DayRow { seed: d, cost: costs[d as usize], ..Default::default() })
                .collect(),
        };
        let t = eval_table(&[row("greedy", [100.0, 50.0]), row("ppo", [90.0, 51.0])]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].ends_with("vs greedy  worst day"), "{t}");
        let cells = |line: &str| line.split_whitespace().rev().take(2).map(String::from).collect::<Vec<_>>();
        assert_eq!(cells(lines[2]), ["-", "-"], "greedy against itself: {t}");
        assert_eq!(cells(lines[3]), ["+2.00%", "-4.00%"], "mean of -10% and +2%, worst +2%: {t}");
        let t = eval_table(&[row("greedy", [100.0, 50.0]), row("ppo", [99.999_99, 49.999_99])]);
        let hair = t.lines().nth(3).unwrap();
        assert_eq!(cells(hair), ["+0.00%", "+0.00%"], "a hair below greedy: {t}");
    }
}
