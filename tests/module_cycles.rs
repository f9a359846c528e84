//! No module refers to one that refers back to it, directly or round a
//! longer loop: between the crate's top-level modules (`project`, `model`,
//! `train`, `tui`, …), and between the workbench's parts (each file of
//! `tui/`, each pane folder of `tui/panes/`). Read from the sources: every
//! `crate::…` and `super::…` path, `use` groups included, and each `mod`
//! declaration (a module uses its children). A file's `tests` module is a
//! module of its own and is left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The module path of a source file: `src/tui/panes/dataset/mod.rs` → `tui::panes::dataset`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut path: Vec<String> = relative.iter().map(|s| s.to_string_lossy().into_owned()).collect();
    if matches!(path.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        path.pop();
    }
    path
}

fn is_module(src: &Path, path: &[String]) -> bool {
    let base = path.iter().fold(src.to_path_buf(), |dir, segment| dir.join(segment));
    base.with_extension("rs").is_file() || base.join("mod.rs").is_file()
}

/// The part a module path belongs to: a top-level module, a file of `tui/`, or a pane folder.
fn unit(src: &Path, path: &[String]) -> String {
    let depth = match path {
        [tui, panes, ..] if tui == "tui" && panes == "panes" => 3,
        [tui, ..] if tui == "tui" => 2,
        _ => 1,
    };
    let mut module = Vec::new();
    for segment in path.iter().take(depth) {
        module.push(segment.clone());
        if !is_module(src, &module) {
            module.pop();
            break;
        }
    }
    module.join("::")
}

/// Every path written after `crate::` or `super::`, with `use` groups expanded.
fn referenced_paths(text: &str, here: &[String]) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for (start, _) in text.match_indices("crate::").chain(text.match_indices("super::")) {
        let before = text[..start].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue; // `super::` inside `super::super::`, or a longer name
        }
        let base: Vec<String> = if text[start..].starts_with("crate::") { Vec::new() } else { here.to_vec() };
        let mut base = base;
        let mut rest = &text[start..];
        // Leading `super::`s climb one module each; `crate::` starts at the root.
        loop {
            if let Some(r) = rest.strip_prefix("super::") {
                base.pop();
                rest = r;
            } else if let Some(r) = rest.strip_prefix("crate::") {
                rest = r;
            } else {
                break;
            }
        }
        expand(rest, base, &mut paths);
    }
    paths
}

/// Reads `a::b::{c, d::e}` into the paths it names.
fn expand(text: &str, mut prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut rest = text;
    loop {
        let ident: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if ident.is_empty() {
            if let Some(group) = rest.strip_prefix('{') {
                let mut depth = 1;
                let end = group
                    .char_indices()
                    .find(|&(_, c)| {
                        depth += match c {
                            '{' => 1,
                            '}' => -1,
                            _ => 0,
                        };
                        depth == 0
                    })
                    .map_or(group.len(), |(i, _)| i);
                let mut depth = 0;
                let mut item_start = 0;
                for (i, c) in group[..end].char_indices().chain([(end, ',')]) {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            expand(group[item_start..i].trim(), prefix.clone(), out);
                            item_start = i + 1;
                        }
                        _ => {}
                    }
                }
            } else {
                out.push(prefix);
            }
            return;
        }
        rest = &rest[ident.len()..];
        if ident != "self" {
            prefix.push(ident);
        }
        match rest.strip_prefix("::") {
            Some(r) => rest = r,
            None => {
                out.push(prefix);
                return;
            }
        }
    }
}

/// A loop in `edges`, if there is one.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_refers_to_one_that_refers_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut crate_level: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut workbench: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let here = module_of(&src, file);
        let from = unit(&src, &here);
        let text = std::fs::read_to_string(file).unwrap();
        let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
        let children = text.lines().filter_map(|line| {
            let declared = line.trim().trim_start_matches("pub ").trim_start_matches("pub(crate) ");
            let name = declared.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(here.iter().cloned().chain([name.to_string()]).collect::<Vec<_>>())
        });
        for path in referenced_paths(text, &here).into_iter().chain(children) {
            let to = unit(&src, &path);
            let top = |unit: &str| unit.split("::").next().unwrap_or_default().to_string();
            if !to.is_empty() && top(&from) != top(&to) && !from.is_empty() {
                crate_level.entry(top(&from)).or_default().insert(top(&to));
            }
            let in_tui = |unit: &str| unit.starts_with("tui::");
            if in_tui(&from) && in_tui(&to) && from != to {
                workbench.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    assert!(crate_level.contains_key("tui") && workbench.contains_key("tui::app"), "the sources were not read");
    if let Some(cycle) = find_cycle(&crate_level) {
        panic!("top-level modules refer round a loop: {}", cycle.join(" → "));
    }
    if let Some(cycle) = find_cycle(&workbench) {
        panic!("workbench parts refer round a loop: {}", cycle.join(" → "));
    }
}
