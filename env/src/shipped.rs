//! The scenarios shipped in `scenarios/`, compiled into the binary so `--scenario gpu-small`
//! works from any directory, and the lookup that accepts a name or a file path.

use std::sync::Arc;

use berth_core::Scenario;

use crate::error::{Error, Result};

/// `(name, YAML)` of every shipped scenario, smallest first.
pub const SHIPPED: [(&str, &str); 8] = [
    ("tiny", include_str!("../../scenarios/tiny.yaml")),
    ("gpu-small", include_str!("../../scenarios/gpu-small.yaml")),
    ("gpu-mig", include_str!("../../scenarios/gpu-mig.yaml")),
    ("gentd26", include_str!("../../scenarios/gentd26.yaml")),
    ("gpu-medium", include_str!("../../scenarios/gpu-medium.yaml")),
    ("gpu-large", include_str!("../../scenarios/gpu-large.yaml")),
    ("openb", include_str!("../../scenarios/openb.yaml")),
    ("openb-shared", include_str!("../../scenarios/openb-shared.yaml")),
];

/// The shipped scenarios' names, smallest first.
pub fn names() -> impl Iterator<Item = &'static str> {
    SHIPPED.iter().map(|(n, _)| *n)
}

/// Why `name` names no shipped scenario, with the names that do.
pub fn not_shipped(name: &str) -> String {
    format!("`{name}` is not a shipped scenario ({})", names().collect::<Vec<_>>().join(", "))
}

/// A shipped scenario by name.
pub fn shipped(name: &str) -> Option<Arc<Scenario>> {
    SHIPPED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, yaml)| Arc::new(Scenario::from_yaml(yaml).expect("shipped scenarios are valid")))
}

/// A scenario from a file path, or a shipped one by name when no such file exists.
pub fn load(name_or_path: &str) -> Result<Arc<Scenario>> {
    let path = std::path::Path::new(name_or_path);
    if path.exists() {
        let text = std::fs::read_to_string(path)
            .map_err(|source| Error::Read { path: name_or_path.to_string(), source })?;
        return Ok(Arc::new(Scenario::from_yaml(&text)?));
    }
    shipped(name_or_path).ok_or_else(|| Error::Read {
        path: name_or_path.to_string(),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no such file, and not a shipped scenario ({})", names().collect::<Vec<_>>().join(", ")),
        ),
    })
}
