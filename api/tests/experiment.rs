//! `berth experiment run` end to end on the shipped smoke experiment: every output, exact
//! reproduction from the seeds (also across `--jobs`), resume after an interruption, and
//! field-named errors for bad files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SMOKE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../experiments/smoke.toml");

fn berth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth")).args(args).output().expect("berth runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("berth-exp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn run(out: &Path, jobs: &str, extra: &[&str]) -> Output {
    let mut args = vec!["experiment", "run", SMOKE, "--out", out.to_str().unwrap(), "--jobs", jobs];
    args.extend_from_slice(extra);
    let o = berth(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    o
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Panics with the first differing line when two result files differ.
fn assert_same(a: &Path, b: &Path) {
    let (x, y) = (read(a.to_path_buf()), read(b.to_path_buf()));
    if x != y {
        let (x, y) = (String::from_utf8_lossy(&x), String::from_utf8_lossy(&y));
        let first = x.lines().zip(y.lines()).position(|(l, r)| l != r);
        panic!("{} and {} differ at line {first:?}", a.display(), b.display());
    }
}

#[test]
fn smoke_experiment_writes_every_output_and_reproduces_exactly() {
    let (a, b) = (temp_dir("a"), temp_dir("b"));
    let first = run(&a, "2", &[]);
    let summary = String::from_utf8(first.stdout).unwrap();
    assert!(summary.contains("## tiny (3 nodes, 2 replicas), as trained"), "{summary}");
    assert!(summary.contains("condition `busy-with-a-failure`"), "{summary}");
    let baselines = berth_env::baselines::NAMES;
    let agents = ["qlearning", "dqn", "ppo", "shield:qlearning", "shield:dqn", "shield:ppo"];
    for policy in agents.into_iter().chain(["oracle"]).chain(baselines) {
        assert_eq!(summary.matches(&format!("| {policy} |")).count(), 2, "{policy} in {summary}");
    }
    let csv = String::from_utf8(read(a.join("runs.csv"))).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            "scenario,condition,policy,kind,seed,train_steps,eval_episodes,mean_latency_ms,\
             p95_latency_ms,slo_miss,moves,reward,gap_to_oracle,gpus_used"
        )
    );
    // (3 agents, each also shielded, + the baselines + the oracle) x 5 seeds x 2 conditions;
    // the oracle's own gap is 0, and it counts no GPUs; every other row does.
    assert_eq!(lines.clone().count(), (7 + baselines.len()) * 5 * 2, "{csv}");
    let (oracle, others): (Vec<&str>, Vec<&str>) = lines.clone().partition(|l| l.contains(",oracle,oracle,"));
    assert!(oracle.iter().all(|l| l.ends_with(",0.0,")), "{csv}");
    assert!(others.iter().all(|l| l.rsplit(',').next().is_some_and(|g| g.parse::<f64>().is_ok())), "{csv}");
    assert!(lines.all(|l| l.split(',').nth(12).is_some_and(|gap| !gap.is_empty())), "{csv}");
    for png in ["latency.png", "learning_curves_tiny.png", "day_tiny.png", "day_tiny_busy-with-a-failure.png"]
    {
        let bytes = read(a.join(png));
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{png}");
        assert!(bytes.len() > 5_000, "{png} is drawn: {} bytes", bytes.len());
    }
    let timings = String::from_utf8(read(a.join("timings.csv"))).unwrap();
    assert_eq!(timings.lines().count(), 1 + (7 + baselines.len()) * 5, "{timings}");
    assert!(read(a.join("summary.md")).starts_with(b"# Experiment `smoke`"));

    // The same seeds on one job give the same numbers and the same plots.
    run(&b, "1", &[]);
    assert_same(&a.join("runs.csv"), &b.join("runs.csv"));
    assert_same(&a.join("latency.png"), &b.join("latency.png"));

    // An interrupted experiment resumes: only the missing run is done again.
    let state = a.join("state");
    std::fs::remove_file(state.join("tiny__dqn__3.json")).unwrap();
    std::fs::remove_file(a.join("runs.csv")).unwrap();
    let resumed = run(&a, "2", &[]);
    let runs = (7 + baselines.len()) * 5;
    let (rest, was) = (format!("resuming: {} of {runs} runs", runs - 1), stderr(&resumed));
    assert!(was.contains(&rest), "{was}");
    assert!(was.contains(&format!("1 run(s) done now, {} resumed", runs - 1)), "{was}");
    assert_same(&a.join("runs.csv"), &b.join("runs.csv"));

    // --fresh runs everything again.
    let fresh = run(&a, "2", &["--fresh"]);
    assert!(stderr(&fresh).contains(&format!("{runs} run(s) done now, 0 resumed")), "{}", stderr(&fresh));
    assert_same(&a.join("runs.csv"), &b.join("runs.csv"));
    for d in [a, b] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn bad_experiment_files_are_refused_naming_the_field() {
    let dir = temp_dir("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let base = "description = \"x\"\nscenarios = [\"tiny\"]\nseeds = [1, 2]\n";
    let cases = [
        ("colour = 1\n", "colour"),
        ("baselines = [\"spred\"]\n", "baselines[0]: unknown baseline `spred`"),
        ("[[agents]]\nagent = \"ppo\"\nsteps = 0\n", "agents[0].steps: must be at least 1"),
        ("[[agents]]\nagent = \"sarsa\"\n", "agents[0].agent"),
        (
            "[[agents]]\nagent = \"dqn\"\nhyperparameters = { learning_rate = -1.0 }\n",
            "agents[0].hyperparameters.learning_rate",
        ),
        (
            "[[agents]]\nagent = \"dqn\"\nsteps_by_scenario = { gpu-small = 10 }\n",
            "steps_by_scenario.gpu-small",
        ),
        ("[[conditions]]\nname = \"x\"\nrate_scale = 0\n", "conditions[0].rate_scale"),
        (
            "[[conditions]]\nname = \"x\"\nfailures = [{ node = \"nope\", at_hours = 1 }]\n",
            "has no node `nope`",
        ),
        ("episodes = 0\n", "episodes: must be at least 1"),
        ("[[agents]]\nagent = \"ppo\"\nscenarios = [\"nope\"]\n", "agents[0].scenarios[0]: not one of"),
    ];
    for (i, (extra, expected)) in cases.iter().enumerate() {
        let file = dir.join(format!("bad{i}.toml"));
        std::fs::write(&file, format!("{base}{extra}")).unwrap();
        let out =
            berth(&["experiment", "run", file.to_str().unwrap(), "--out", dir.join("out").to_str().unwrap()]);
        assert!(!out.status.success(), "{extra}");
        assert!(stderr(&out).contains(expected), "{extra}: {}", stderr(&out));
    }
    let dupe = dir.join("dupe.toml");
    std::fs::write(&dupe, "description = \"x\"\nscenarios = [\"tiny\", \"tiny\"]\nseeds = [1]\n").unwrap();
    let out = berth(&["experiment", "run", dupe.to_str().unwrap()]);
    assert!(stderr(&out).contains("scenarios[1]: `tiny` is listed twice"), "{}", stderr(&out));
    let out = berth(&["experiment", "run", SMOKE, "--jobs", "0", "--out", dir.join("out").to_str().unwrap()]);
    assert!(stderr(&out).contains("--jobs: must be at least 1"), "{}", stderr(&out));
    assert!(!dir.join("out").join("runs.csv").exists(), "nothing is run for a refused file");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The committed `baselines` results still come out of today's code: its baseline and
/// oracle rows are recomputed (no training: seconds) and must match to the last digit.
#[test]
fn committed_baseline_rows_reproduce() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("experiments");
    let text = std::fs::read_to_string(root.join("baselines.toml")).unwrap();
    let without_agents = &text[..text.find("[[agents]]").expect("the file trains agents")];
    let dir = temp_dir("committed");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("baselines.toml");
    std::fs::write(&file, without_agents).unwrap();
    let out = dir.join("out");
    let o =
        berth(&["experiment", "run", file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--jobs", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let committed = String::from_utf8(read(root.join("results/baselines/runs.csv"))).unwrap();
    let fresh = String::from_utf8(read(out.join("runs.csv"))).unwrap();
    // Columns added since the results were committed (`gpus_used`) come last; the committed
    // ones must reproduce.
    let header = committed.lines().next().unwrap();
    assert!(fresh.starts_with(header), "{header}");
    let columns = header.split(',').count();
    let rows: Vec<String> =
        fresh.lines().skip(1).map(|l| l.split(',').take(columns).collect::<Vec<_>>().join(",")).collect();
    let policies = berth_env::baselines::NAMES.len() + 1;
    assert_eq!(
        rows.len(),
        3 * policies * 5 - 5,
        "3 scenarios x every baseline and the oracle x 5 seeds, no oracle on gpu-medium"
    );
    for row in &rows {
        assert!(committed.lines().any(|l| l == row), "not in the committed runs.csv: {row}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The planner is built for each condition's cluster (one built for the scenario as trained
/// would play `greedy` under a scripted failure), and a scenario its search refuses gets a
/// line saying why instead of rows.
#[test]
fn the_planner_plans_each_condition_and_says_where_it_cannot() {
    let dir = temp_dir("planner");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("planner.toml");
    std::fs::write(
        &file,
        "description = \"x\"\nscenarios = [\"tiny\", \"gpu-medium\"]\nseeds = [1]\nepisodes = 1\n\
         baselines = [\"greedy\", \"planner:12\"]\n\n[[conditions]]\nname = \"down\"\n\
         failures = [{ node = \"h100-a\", at_hours = 8, for_hours = 4 }]\n",
    )
    .unwrap();
    // A condition's failure names a node of every scenario it applies to: gpu-medium has no
    // `h100-a`, so this file is refused; the planner's name is not what is refused.
    let out = berth(&["experiment", "run", file.to_str().unwrap(), "--out", dir.join("x").to_str().unwrap()]);
    assert!(stderr(&out).contains("has no node `h100-a`"), "{}", stderr(&out));
    std::fs::write(
        &file,
        "description = \"x\"\nscenarios = [\"tiny\"]\nseeds = [1]\nepisodes = 1\n\
         baselines = [\"greedy\", \"planner:12\"]\n\n[[conditions]]\nname = \"down\"\n\
         failures = [{ node = \"h100-a\", at_hours = 8, for_hours = 4 }]\n",
    )
    .unwrap();
    let out = dir.join("tiny");
    let o = berth(&["experiment", "run", file.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = String::from_utf8(read(out.join("runs.csv"))).unwrap();
    let moves = |policy: &str| {
        let row = csv.lines().find(|l| l.starts_with(&format!("tiny,down,{policy},"))).expect(policy);
        row.split(',').nth(10).unwrap().to_string()
    };
    assert_ne!(moves("planner:12"), moves("greedy"), "{csv}");

    std::fs::write(
        &file,
        "description = \"x\"\nscenarios = [\"gpu-large\"]\nseeds = [1]\nbaselines = [\"planner\"]\n",
    )
    .unwrap();
    let out = dir.join("large");
    let o = berth(&["experiment", "run", file.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = String::from_utf8(o.stdout).unwrap();
    assert!(
        summary.contains("No planner on gpu-large: `gpu-large` has")
            && summary.contains("placement classes for service `"),
        "{summary}"
    );
    std::fs::write(
        &file,
        "description = \"x\"\nscenarios = [\"tiny\"]\nseeds = [1]\nbaselines = [\"planner:0\"]\n",
    )
    .unwrap();
    let o = berth(&["experiment", "run", file.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(stderr(&o).contains("baselines[0]: unknown baseline `planner:0`"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}
