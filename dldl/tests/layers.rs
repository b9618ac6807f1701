//! The crate's modules read each other in one direction only (the layers `src/lib.rs` lists):
//! every `crate::…` path in a module's sources names the module itself, one above it, or what
//! all share (`error`, the items at the top of `lib.rs`). An import circle fails here with the
//! file, the line and the path.

use std::{
    fs,
    path::{Path, PathBuf},
};

#[path = "../../tests/support/mod.rs"]
mod support;

/// The layers, lowest first; each may read those before it.
const LAYERS: [&str; 5] = ["distribution", "onnx", "networks", "weights", "face"];
/// Shared by all: the error type and the crate root's own items.
const SHARED: [&str; 5] = ["DldlError", "error", "read_async", "AGE_BINS", "MAX_AGE"];

/// The module a source file belongs to: `src/<module>.rs` or `src/<module>/…`.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let first = file.strip_prefix(src).ok()?.components().next()?;
    let name = first.as_os_str().to_str()?;
    Some(name.trim_end_matches(".rs").to_string())
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The first segment of every path after `crate::` in `text`, with its byte offset; a
/// `crate::{a::b, c}` group (over several lines too) gives each member's first segment.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        let Some(group) = rest.strip_prefix('{') else {
            found.extend(first_segment(rest).map(|name| (at, name)));
            continue;
        };
        // The group's top-level members, up to its closing brace.
        let (mut depth, mut member, mut members) = (0, String::new(), Vec::new());
        for c in group.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    members.push(std::mem::take(&mut member));
                    continue;
                }
                _ => {}
            }
            member.push(c);
        }
        members.push(member);
        found.extend(
            members
                .iter()
                .filter_map(|m| first_segment(m))
                .map(|name| (at, name)),
        );
    }
    found
}

fn first_segment(path: &str) -> Option<String> {
    let name: String = path
        .trim()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

#[test]
fn each_module_reads_only_the_layers_below_it() {
    let src = support::repo::root().join("dldl/src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let mut wrong = Vec::new();
    let mut checked = 0;
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let Some(level) = LAYERS.iter().position(|l| *l == module) else {
            continue;
        };
        checked += 1;
        let text = fs::read_to_string(file).unwrap();
        for (at, name) in crate_paths(&text) {
            if !(SHARED.contains(&name.as_str()) || LAYERS[..=level].contains(&name.as_str())) {
                let line = text[..at].matches('\n').count() + 1;
                let shown = file.strip_prefix(&src).unwrap().display();
                wrong.push(format!("{shown}:{line}: `{module}` reads `crate::{name}`"));
            }
        }
    }
    assert!(
        checked >= 20,
        "only {checked} source files found under {}",
        src.display()
    );
    assert!(
        wrong.is_empty(),
        "a module reads one at or above its own layer ({LAYERS:?}, lowest first):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_path_reader_sees_groups_and_nested_paths() {
    let names = |text: &str| {
        crate_paths(text)
            .into_iter()
            .map(|(_, n)| n)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names("use crate::{DldlError, networks::vgg::{AgeNet, AgeNetConfig}, face};"),
        ["DldlError", "networks", "face"]
    );
    assert_eq!(
        names("let x = crate::weights::files::shipped(p);"),
        ["weights"]
    );
    assert_eq!(
        names("use crate::{\n    onnx::OnnxWeights,\n};\nuse crate::face;"),
        ["onnx", "face"]
    );
    assert!(names("no paths here").is_empty());
}
