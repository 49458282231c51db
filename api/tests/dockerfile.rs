//! No container engine runs here, so the Dockerfile is kept honest by checking what can be
//! checked without one: the stages, that every file it copies exists and that everything the
//! build needs is copied, the locked release build, a non-root user and the entrypoint.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The instructions of the Dockerfile, continuation lines joined, comments dropped.
fn instructions() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("Dockerfile")).expect("a Dockerfile at the root");
    let mut out: Vec<String> = Vec::new();
    let mut continued = false;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if continued {
            out.last_mut()
                .expect("a line to continue")
                .push_str(&format!(" {}", line.trim_end_matches('\\')));
        } else {
            out.push(line.trim_end_matches('\\').trim().to_string());
        }
        continued = line.ends_with('\\');
    }
    out
}

#[test]
fn dockerfile_builds_locked_and_runs_berth_serve_as_non_root() {
    let all = instructions();
    let stages: Vec<usize> =
        all.iter().enumerate().filter(|(_, l)| l.starts_with("FROM ")).map(|(i, _)| i).collect();
    assert_eq!(stages.len(), 2, "a build stage and a run stage: {all:?}");
    let (build, run) = (&all[stages[0]..stages[1]], &all[stages[1]..]);
    assert!(build[0].ends_with(" AS build"), "{}", build[0]);
    assert!(run[0].contains("-slim"), "a slim run base: {}", run[0]);

    let copied: Vec<&str> = build
        .iter()
        .filter_map(|l| l.strip_prefix("COPY "))
        .flat_map(|args| {
            let parts: Vec<&str> = args.split_whitespace().collect();
            parts[..parts.len() - 1].to_vec()
        })
        .collect();
    for source in &copied {
        assert!(root().join(source).exists(), "COPY of a path that does not exist: {source}");
    }
    let manifest: toml::Value =
        toml::from_str(&std::fs::read_to_string(root().join("Cargo.toml")).unwrap()).unwrap();
    let members = manifest["workspace"]["members"].as_array().unwrap();
    for needed in members.iter().map(|m| m.as_str().unwrap()).chain(["Cargo.toml", "Cargo.lock", "scenarios"])
    {
        assert!(copied.contains(&needed), "the build needs `{needed}` but the Dockerfile does not copy it");
    }
    let cargo = build.iter().find(|l| l.starts_with("RUN cargo build")).expect("a cargo build");
    for flag in ["--locked", "--release", "--bin berth"] {
        assert!(cargo.contains(flag), "{cargo} lacks {flag}");
    }
    assert!(build[0].starts_with("FROM rust:"), "{}", build[0]);
    let declared =
        all.iter().find_map(|l| l.strip_prefix("ARG RUST_VERSION=")).expect("a pinned Rust version");
    let minimum = manifest["workspace"]["package"]["rust-version"].as_str().unwrap();
    let minor = |v: &str| v.split('.').nth(1).and_then(|m| m.parse::<u32>().ok()).unwrap();
    assert!(minor(declared) >= minor(minimum), "Rust {declared} is older than rust-version {minimum}");

    assert!(run.iter().any(|l| l.starts_with("COPY --from=build ") && l.contains("berth")), "{run:?}");
    let user = run.iter().rev().find_map(|l| l.strip_prefix("USER ")).expect("a USER in the run stage");
    let uid: u32 =
        user.split(':').next().unwrap().parse().expect("a numeric uid (Kubernetes runAsNonRoot checks it)");
    assert!(uid > 0, "root: {user}");
    assert_eq!(run.last().unwrap(), r#"ENTRYPOINT ["/usr/local/bin/berth", "serve"]"#);
    assert!(
        run.iter().any(|l| l == "ENV BERTH_LISTEN=0.0.0.0:8080") && run.iter().any(|l| l == "EXPOSE 8080")
    );

    let ignore = std::fs::read_to_string(root().join(".dockerignore")).expect("a .dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target"), "the build context must leave out target/");
}
