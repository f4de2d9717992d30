//! The layers of `src/` (vendor-notes/ARCHITECTURE.md) kept honest: every
//! `crate::` path in a module's code (its tests aside) names a module of a
//! lower layer, or its own folder. So no module reaches up, and there are no
//! cycles between top-level modules.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Top-level modules by layer, lowest first. A module may use only those of
/// lower layers (and, within a folder, its siblings).
const LAYERS: &[&[&str]] = &[
    &["error", "secret", "units", "testing", "queue", "signals"],
    &["id", "bounded"],
    &["settings"],
    &["cli"],
    &["progress", "service"],
    &["fs"],
    &["codec"],
    &["config"],
    &["redis", "storage", "record"],
    &["status", "stored"],
    &["archive"],
    &["restore"],
    &["backup"],
    &["commands"],
    &["main"],
];

fn rank_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a file's code names with `crate::`.
fn uses(text: &str) -> Vec<String> {
    // Tests may use anything: they come last, under #[cfg(test)] mod tests.
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
    let mut found = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let name: String = code[i + "crate::".len()..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && !found.contains(&name) {
            found.push(name);
        }
    }
    found
}

#[test]
fn no_module_uses_one_of_a_higher_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut wrong: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let top = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        let own = rank_of(&top)
            .unwrap_or_else(|| panic!("{top} (src/{}) is in no layer", relative.display()));
        for used in uses(&fs::read_to_string(file).unwrap()) {
            if used == top {
                continue;
            }
            match rank_of(&used) {
                Some(rank) if rank < own => {}
                Some(_) => wrong
                    .entry(format!("src/{}", relative.display()))
                    .or_default()
                    .push(format!("{top} uses {used}")),
                None => panic!(
                    "src/{} uses crate::{used}, which is in no layer",
                    relative.display()
                ),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "modules using a layer at or above their own (see vendor-notes/ARCHITECTURE.md): {wrong:#?}"
    );
}

#[test]
fn the_checker_sees_what_it_must() {
    assert_eq!(
        uses("use crate::redis::conf;\nfn f() { crate::units::seconds(); }\n#[cfg(test)]\nmod tests { use crate::backup; }"),
        ["redis", "units"]
    );
    assert!(rank_of("codec") < rank_of("redis"));
    assert_eq!(rank_of("nothing"), None);
}
