//! The layers of the `berth` crate stay as built: a module may import from its own layer and
//! the ones below it, never from one above (cli -> http -> service -> infra -> store), and
//! inside `service`, training and deploys never import each other.

use std::path::{Path, PathBuf};

/// The layers, lowest first.
const LAYERS: [&str; 5] = ["store", "infra", "service", "http", "cli"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The `crate::<a>::<b>` paths a file names, as (a, b).
fn crate_paths(text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let words: Vec<&str> = rest
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .next()
            .unwrap_or_default()
            .split("::")
            .collect();
        found.push((words[0].to_string(), words.get(1).unwrap_or(&"").to_string()));
    }
    found
}

/// Where a file is: its layer and, under `service`, its part.
fn place(src: &Path, file: &Path) -> Option<(usize, String)> {
    let relative = file.strip_prefix(src).unwrap();
    let mut parts = relative.iter().map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string());
    let top = parts.next()?;
    let layer = LAYERS.iter().position(|l| *l == top)?;
    Some((layer, parts.next().unwrap_or_default()))
}

fn upward_imports(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut problems = Vec::new();
    for file in &files {
        let Some((layer, part)) = place(src, file) else { continue };
        let text = std::fs::read_to_string(file).unwrap();
        for (top, second) in crate_paths(&text) {
            let Some(target) = LAYERS.iter().position(|l| *l == top) else {
                problems.push(format!("{}: `crate::{top}` is in no layer", file.display()));
                continue;
            };
            if target > layer {
                problems.push(format!(
                    "{}: imports `crate::{top}`, a layer above `{}`",
                    file.display(),
                    LAYERS[layer]
                ));
            }
            let apart =
                |a: &str, b: &str| LAYERS[layer] == "service" && part == a && top == "service" && second == b;
            if apart("training", "deploy") || apart("deploy", "training") {
                problems.push(format!("{}: training and deploys import each other", file.display()));
            }
        }
    }
    problems
}

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let problems = upward_imports(&src);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_check_finds_an_upward_import() {
    let dir = std::env::temp_dir().join(format!("berth-layers-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("store")).unwrap();
    std::fs::create_dir_all(dir.join("service/deploy")).unwrap();
    std::fs::write(dir.join("store/mod.rs"), "use crate::http::AppState;\n").unwrap();
    std::fs::write(dir.join("service/deploy/mod.rs"), "use crate::service::training::runner;\n").unwrap();
    let problems = upward_imports(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("a layer above") || problems[1].contains("a layer above"));
    assert!(problems.iter().any(|p| p.contains("training and deploys")));
}
