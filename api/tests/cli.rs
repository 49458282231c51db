//! The `berth` binary end to end: eval and bench output, and clear errors for bad input.

use std::process::{Command, Output};

fn berth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth")).args(args).output().expect("berth runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn eval_json_has_a_row_per_policy_with_the_documented_fields() {
    let out = berth(&["eval", "--scenario", "tiny", "--episodes", "1", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["policy"].as_str().unwrap()).collect();
    let baselines = berth_env::baselines::NAMES;
    assert_eq!(names[..baselines.len()], baselines, "every baseline, in order");
    assert_eq!(names[baselines.len()..], ["oracle"]);
    for row in rows {
        for field in ["mean_latency_ms", "p95_latency_ms", "slo_miss", "moves", "reward", "gap_to_oracle"] {
            assert!(row[field].is_number(), "{field} in {row}");
        }
    }
    assert_eq!(rows[baselines.len()]["gap_to_oracle"].as_f64(), Some(0.0));
}

#[test]
fn eval_writes_each_policys_days_with_their_gap_to_that_days_oracle() {
    let dir = std::env::temp_dir().join(format!("berth-per-day-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("days.csv");
    let args =
        ["eval", "--scenario", "tiny", "--episodes", "3", "--seed", "40", "--policy", "spread,greedy,oracle"];
    let out = berth(&[&args[..], &["--per-day", file.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let csv = std::fs::read_to_string(&file).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("policy,seed,cost,mean_latency_ms,slo_miss,moves,gap_to_oracle,gpus_used"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 9, "{csv}");
    let seeds: Vec<&str> = rows.iter().filter(|r| r[0] == "greedy").map(|r| r[1]).collect();
    assert_eq!(seeds, ["40", "41", "42"]);
    // The days' costs average to the table's return, and the oracle's own gap is 0 each day.
    let json = berth(&[&args[..], &["--json"]].concat());
    let table: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    for (policy, row) in ["spread", "greedy", "oracle"].iter().zip(table.as_array().unwrap()) {
        let costs: Vec<f64> =
            rows.iter().filter(|r| r[0] == *policy).map(|r| r[2].parse().unwrap()).collect();
        let mean = costs.iter().sum::<f64>() / 3.0;
        assert!((mean + row["reward"].as_f64().unwrap()).abs() < 1e-9, "{policy}: {mean} against {row}");
        // Every day has as many ticks, so the days' GPUs average to the table's.
        let gpus: Vec<f64> = rows
            .iter()
            .filter(|r| r[0] == *policy && !r[7].is_empty())
            .map(|r| r[7].parse().unwrap())
            .collect();
        match row["gpus_used"].as_f64() {
            Some(table) => {
                assert!((gpus.iter().sum::<f64>() / 3.0 - table).abs() < 1e-9, "{policy}: {gpus:?}")
            }
            None => assert!(gpus.is_empty(), "the oracle tracks no GPUs: {csv}"),
        }
    }
    assert!(rows.iter().filter(|r| r[0] == "oracle").all(|r| r[6] == "0"), "{csv}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn eval_without_an_oracle_gives_null_gaps_and_says_why() {
    let out = berth(&[
        "eval",
        "--scenario",
        "gpu-medium",
        "--policy",
        "spread,fixed,oracle",
        "--episodes",
        "1",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert!(rows[0]["gap_to_oracle"].is_null());
    let why = stderr(&out);
    assert!(why.contains("no oracle row: `gpu-medium` has"), "{why}");
    assert!(why.contains("no fixed row: `gpu-medium` has"), "{why}");
}

#[test]
fn eval_of_the_fixed_baseline_sits_between_the_oracle_and_spread() {
    let out = berth(&["eval", "--scenario", "tiny", "--policy", "spread,fixed,oracle", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let reward = |i: usize| rows[i]["reward"].as_f64().unwrap();
    assert_eq!(rows[1]["policy"], "fixed");
    assert!(reward(2) >= reward(1) && reward(1) > reward(0), "{rows:#}");
}

#[test]
fn eval_prints_a_table() {
    let out =
        berth(&["eval", "--scenario", "tiny", "--policy", "spread,greedy", "--episodes", "1", "--seed", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("from seed 3"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("greedy")), "{text}");
}

#[test]
fn unknown_scenario_is_a_clear_error() {
    let out = berth(&["eval", "--scenario", "no-such-scenario"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("--scenario") && err.contains("not a shipped scenario"), "{err}");
}

#[test]
fn invalid_scenario_file_names_the_field() {
    let dir = std::env::temp_dir().join(format!("berth-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.yaml");
    let text =
        include_str!("../../scenarios/tiny.yaml").replace("cpu_millicores: 32000", "cpu_millicores: -1");
    std::fs::write(&path, text).unwrap();
    let out = berth(&["eval", "--scenario", path.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nodes[0].cpu_millicores"), "{}", stderr(&out));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unknown_policy_and_zero_episodes_are_refused() {
    let out = berth(&["eval", "--scenario", "tiny", "--policy", "magic"]);
    assert!(
        !out.status.success() && stderr(&out).contains("--policy: unknown policy `magic`"),
        "{}",
        stderr(&out)
    );
    let out = berth(&["eval", "--scenario", "tiny", "--policy", "descheduler:0"]);
    let says =
        "--policy: `descheduler:0`: the descheduler's interval `0` must be whole seconds from 1 to 86400";
    assert!(!out.status.success() && stderr(&out).contains(says), "{}", stderr(&out));
    let out = berth(&["eval", "--scenario", "tiny", "--policy", "lookahead:289"]);
    let says = "--policy: `lookahead:289`: the lookahead's horizon `289` must be whole ticks from 1 to 288";
    assert!(!out.status.success() && stderr(&out).contains(says), "{}", stderr(&out));
    let out = berth(&["eval", "--scenario", "tiny", "--episodes", "0"]);
    assert!(!out.status.success() && stderr(&out).contains("--episodes"), "{}", stderr(&out));
    for margin in ["-1", "101", "NaN"] {
        let flag = format!("--shield-margin={margin}");
        let out = berth(&["eval", "--scenario", "tiny", "--policy", "shield:random", &flag]);
        let says = format!("--shield-margin: {margin} is not a percentage from 0 to 100");
        assert!(!out.status.success() && stderr(&out).contains(&says), "{margin}: {}", stderr(&out));
    }
    for forecasts in ["0", "17"] {
        let flag = format!("--shield-forecasts={forecasts}");
        let out = berth(&["eval", "--scenario", "tiny", "--policy", "shield:random", &flag]);
        let says = format!("--shield-forecasts: {forecasts} is not from 1 to 16");
        assert!(!out.status.success() && stderr(&out).contains(&says), "{forecasts}: {}", stderr(&out));
    }
    let out = berth(&["eval", "--scenario", "tiny", "--policy", "shield:random", "--shield-vote=most"]);
    let says = "--shield-vote: `most` is not one of sum, every";
    assert!(!out.status.success() && stderr(&out).contains(says), "{}", stderr(&out));
    let out = berth(&["eval", "--scenario", "tiny", "--policy", "shield:random", "--shield-apart=yes"]);
    let says = "--shield-apart: `yes` is neither `on` nor `off`";
    assert!(!out.status.success() && stderr(&out).contains(says), "{}", stderr(&out));
    for budget in ["-1", "101", "NaN", "none"] {
        let flag = format!("--shield-budget={budget}");
        let out = berth(&["eval", "--scenario", "tiny", "--policy", "shield:random", &flag]);
        let says = format!("--shield-budget: `{budget}` is neither `off` nor a percentage from 0 to 100");
        assert!(!out.status.success() && stderr(&out).contains(&says), "{budget}: {}", stderr(&out));
    }
}

#[test]
fn bench_env_json_reports_single_and_vectorized_rates() {
    let out = berth(&[
        "bench",
        "env",
        "--json",
        "--seconds",
        "0.05",
        "--copies",
        "2",
        "--scenario",
        "tiny,gpu-small",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for row in rows {
        assert!(row["steps_per_sec"].as_f64().unwrap() > 1000.0, "{row}");
        assert!(row["vectorized"].is_boolean() && row["scenario"].is_string());
    }
    assert_eq!(rows[1]["vectorized"], true);
    assert_eq!(rows[2]["scenario"], "gpu-small");
}

#[test]
fn bench_agents_reports_the_entity_network_on_two_sizes_alike() {
    let out = berth(&[
        "bench",
        "agents",
        "--json",
        "--steps",
        "64",
        "--env-seconds",
        "0.05",
        "--scenario",
        "tiny,gpu-small",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        assert!(row["train_steps_per_sec"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["build_ms"].as_f64().unwrap() >= 0.0 && row["env_steps_per_sec"].as_f64().unwrap() > 0.0);
    }
    // tiny knows one service, gpu-small three: the widths differ, the node count does not matter.
    assert!(rows[0]["parameters"].as_u64().unwrap() < rows[1]["parameters"].as_u64().unwrap());
    let bad = berth(&["bench", "agents", "--steps", "0", "--scenario", "tiny"]);
    assert!(!bad.status.success() && stderr(&bad).contains("--steps"), "{}", stderr(&bad));
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("berth-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn train_writes_the_run_and_eval_puts_the_model_beside_the_baselines() {
    let dir = temp_dir("train");
    let out = dir.join("run");
    let o = berth(&[
        "train",
        "--agent",
        "qlearning",
        "--scenario",
        "tiny",
        "--steps",
        "3000",
        "--seed",
        "2",
        "--episodes",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8(o.stdout).unwrap();
    assert!(table.lines().any(|l| l.starts_with("qlearning")), "{table}");
    for file in ["model.bin", "log.csv", "hyperparameters.json", "learning_curve.png"] {
        assert!(out.join(file).exists(), "{file} missing");
    }
    let csv = std::fs::read_to_string(out.join("log.csv")).unwrap();
    assert!(csv.starts_with("global_step,episodic_return"), "{csv}");
    let model = out.join("model.bin");
    let o = berth(&[
        "eval",
        "--scenario",
        "tiny",
        "--policy",
        &format!("spread,{}", model.display()),
        "--episodes",
        "1",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows[1]["policy"], "qlearning");
    // Two models side by side: each row named by its file.
    let copy = dir.join("again.bin");
    std::fs::copy(&model, &copy).unwrap();
    let both = format!("{},{}", model.display(), copy.display());
    let o = berth(&["eval", "--scenario", "tiny", "--policy", &both, "--episodes", "1", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows[0]["policy"], format!("qlearning:{}", model.display()));
    assert_eq!(rows[1]["policy"], format!("qlearning:{}", copy.display()));
    // The same model on a scenario of other sizes is refused with both sizes named.
    let o = berth(&["eval", "--scenario", "gpu-small", "--policy", model.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("36 observation values and 7 actions"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn train_refuses_a_bad_hyperparameter_naming_it() {
    let dir = temp_dir("config");
    let config = dir.join("hyper.toml");
    std::fs::write(&config, "gamma = 0.9\nlearnin_rate = 0.5\n").unwrap();
    let o = berth(&[
        "train",
        "--agent",
        "qlearning",
        "--scenario",
        "tiny",
        "--steps",
        "100",
        "--config",
        config.to_str().unwrap(),
        "--out",
        dir.join("run").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("learnin_rate"), "{}", stderr(&o));
    std::fs::write(&config, "gamma = 2.0\n").unwrap();
    let o = berth(&[
        "train",
        "--agent",
        "qlearning",
        "--scenario",
        "tiny",
        "--steps",
        "100",
        "--config",
        config.to_str().unwrap(),
        "--out",
        dir.join("run").to_str().unwrap(),
    ]);
    assert!(!o.status.success() && stderr(&o).contains("`gamma`"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_that_is_not_a_model_is_refused() {
    let dir = temp_dir("notmodel");
    let path = dir.join("model.bin");
    std::fs::write(&path, "hello").unwrap();
    let o = berth(&["eval", "--scenario", "tiny", "--policy", path.to_str().unwrap()]);
    assert!(!o.status.success() && stderr(&o).contains("not a berth model"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn emulate_refuses_bad_clock_settings_before_touching_a_cluster() {
    for (flag, value) in [("--clock-speed", "-1"), ("--speed", "0"), ("--start-hour", "24")] {
        let setting = format!("{flag}={value}");
        let out = berth(&["emulate", "--scenario", "tiny", "--kubeconfig", "/nonexistent", &setting]);
        assert!(!out.status.success(), "{flag} {value} was accepted");
        assert!(stderr(&out).contains(flag), "{flag}: {}", stderr(&out));
    }
}

#[test]
fn scenario_trace_writes_a_csv_series_into_a_scenario_and_refuses_a_bad_line_writing_nothing() {
    let dir = temp_dir("scenario-trace");
    let (csv, into, loads) = (dir.join("rates.csv"), dir.join("s.yaml"), dir.join("loads.csv"));
    std::fs::write(&loads, "t,ms\n1,30\n2,10\n3,20\n").unwrap();
    let shipped = include_str!("../../scenarios/gentd26.yaml");
    std::fs::write(&into, shipped).unwrap();
    std::fs::write(&csv, "ts,rps\n0,1\n60,3\n180,2\n").unwrap();
    let args = |csv: &std::path::Path| {
        let (csv, into) = (csv.to_str().unwrap().to_string(), into.to_str().unwrap().to_string());
        [
            "scenario",
            "trace",
            "--csv",
            &csv,
            "--time-column",
            "ts",
            "--value-column",
            "rps",
            "--where",
            "none",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(
            ["--step", "60", "--into", &into, "--cold-start-column", "ms", "--quantiles", "3"]
                .map(String::from),
        )
        .chain(["--cold-starts".to_string(), loads.to_str().unwrap().to_string()])
        .collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| berth(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let out = run(args(&csv));
    assert!(out.status.success(), "{}", stderr(&out));
    let written = std::fs::read_to_string(&into).unwrap();
    assert!(written.contains("values: [1, 3, 2.5, 2]\n"), "{}", &written[written.len() - 300..]);
    assert!(written.ends_with("quantiles: [0.5, 1, 1.5]\n"), "{}", &written[written.len() - 300..]);
    let scenario = berth_core::Scenario::from_yaml(&written).unwrap();
    assert_eq!(
        scenario.user_groups[0].rate.trace.as_deref(),
        Some(&[1.0 / 3.0, 1.0, 2.5 / 3.0, 2.0 / 3.0][..])
    );

    std::fs::write(&csv, "ts,rps\n0,1\n60,fast\n").unwrap();
    let out = run(args(&csv));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("rates.csv:3:4: rps must be a finite number"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&into).unwrap(), written, "nothing written on an error");

    std::fs::write(&csv, "ts,rps\n0,1\n60,3\n").unwrap();
    std::fs::write(&loads, "t,ms\n1,30\n2,-4\n").unwrap();
    let out = run(args(&csv));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("loads.csv:3:3: ms must be a finite number of at least 0"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&into).unwrap(), written, "nothing written on an error");
    let _ = std::fs::remove_dir_all(dir);
}
