//! The scenario loader fed mutated documents: the shipped scenarios with bytes changed,
//! numbers swapped for extreme ones and lines repeated. It must answer every one with a
//! scenario or an error, never a panic, and nothing it accepts may be over the limits; the
//! process's peak memory stays small, so no document made it allocate at the size it claims.

use berth_core::{Scenario, limits};
use proptest::prelude::*;

const SHIPPED: [&str; 5] = [
    include_str!("../../scenarios/tiny.yaml"),
    include_str!("../../scenarios/gpu-small.yaml"),
    include_str!("../../scenarios/gpu-medium.yaml"),
    include_str!("../../scenarios/gpu-large.yaml"),
    include_str!("../../scenarios/gentd26.yaml"),
];

/// Numbers a mutation may write in place of one in the document.
const EXTREMES: [&str; 10] =
    ["0", "-1", "4294967295", "4294967296", "18446744073709551615", "1e308", "-1e308", ".nan", ".inf", "65"];

#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the byte at a position.
    Byte(prop::sample::Index, u8),
    /// Replace the n-th number with an extreme one.
    Number(prop::sample::Index, usize),
    /// Repeat a line many times.
    Repeat(prop::sample::Index, u16),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Byte(i, b)),
        (any::<prop::sample::Index>(), 0..EXTREMES.len()).prop_map(|(i, e)| Mutation::Number(i, e)),
        (any::<prop::sample::Index>(), 2..2000u16).prop_map(|(i, n)| Mutation::Repeat(i, n)),
    ]
}

fn apply(text: &str, mutation: &Mutation) -> String {
    match mutation {
        Mutation::Byte(at, byte) => {
            let mut bytes = text.as_bytes().to_vec();
            let i = at.index(bytes.len());
            bytes[i] = *byte;
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Mutation::Number(which, extreme) => {
            let count = number_spans(text).len().max(1);
            replace_number(text, which.index(count), EXTREMES[*extreme])
        }
        Mutation::Repeat(which, times) => {
            let lines: Vec<&str> = text.lines().collect();
            let i = which.index(lines.len());
            let mut out: Vec<&str> = lines[..i].to_vec();
            out.extend(std::iter::repeat_n(lines[i], usize::from(*times)));
            out.extend(&lines[i + 1..]);
            out.join("\n")
        }
    }
}

/// `text` with its `which`-th run of digits replaced by `with`.
fn replace_number(text: &str, which: usize, with: &str) -> String {
    match number_spans(text).get(which) {
        Some(&(start, end)) => format!("{}{with}{}", &text[..start], &text[end..]),
        None => text.to_string(),
    }
}

/// Byte ranges of the runs of digits in `text`.
fn number_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices().chain(std::iter::once((text.len(), ' '))) {
        match (c.is_ascii_digit(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                spans.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    spans
}

fn peak_rss_mib() -> f64 {
    berth_env::bench::peak_memory_mib(None).unwrap_or(0.0)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn mutated_scenarios_load_or_are_refused_within_the_limits(
        which in 0..SHIPPED.len(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let text = mutations.iter().fold(SHIPPED[which].to_string(), |t, m| apply(&t, m));
        if let Ok(scenario) = Scenario::from_yaml(&text) {
            prop_assert!(scenario.nodes.len() as u64 <= limits::MAX_NODES);
            prop_assert!(scenario.replica_count() as u64 <= limits::MAX_REPLICAS);
            prop_assert!(scenario.episode_ticks <= limits::MAX_EPISODE_TICKS);
            prop_assert!(scenario.user_groups.len() <= limits::MAX_USER_GROUPS);
        }
        // The largest document here is gpu-large with a line repeated 2,000 times; loading
        // it takes a few megabytes. A template expanded to its claimed count would take GBs.
        prop_assert!(peak_rss_mib() < 512.0, "peak memory {:.0} MiB", peak_rss_mib());
    }
}

#[test]
fn the_mutations_reach_the_checks_they_are_meant_for() {
    // One number made extreme: the first node template's count on gpu-large.
    let text = SHIPPED[3];
    let count_at = text.find("count: 20,").unwrap() + "count: ".len();
    let which = number_spans(text).iter().position(|&(s, _)| s == count_at).unwrap();
    let mutated = replace_number(text, which, EXTREMES[2]);
    let error = Scenario::from_yaml(&mutated).unwrap_err().to_string();
    assert!(error.starts_with("nodes[0].count: 4294967295"), "{error}");
}
