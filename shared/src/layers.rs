//! The layer rules, checked against the source: each top-level module of this crate may import
//! (`crate::...`) only modules of lower layers, or of its own layer where the README says the
//! layer is one piece (`api` and `pages`). Test modules (`#[cfg(test)] mod tests`) are not
//! counted: a test may use `testing` or build a whole app.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

/// Lowest first; the README's "Architecture" section states the same table.
const LAYERS: &[(u8, &[&str])] = &[
    (0, &["model"]),
    (1, &["sign", "seal", "wechat", "qr", "telemetry"]),
    (2, &["store", "queue", "channel", "outbound"]),
    (3, &["service"]),
    (4, &["api", "pages"]),
    (5, &["config", "aws"]),
    (6, &["runtime", "testing"]),
];

/// Layers whose modules may import each other.
const ONE_PIECE: &[u8] = &[4];

fn layer_of(module: &str) -> Option<u8> {
    LAYERS
        .iter()
        .find(|(_, modules)| modules.contains(&module))
        .map(|(layer, _)| *layer)
}

/// The source of a file without its trailing test module.
fn non_test_source(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod tests")
        .map_or(text, |at| &text[..at])
}

/// The top-level modules a source names as `crate::x` or inside `crate::{x, y::z}`.
fn imported_modules(source: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = source;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group, up to its matching brace.
            let (mut depth, mut name, mut top_level) = (0usize, String::new(), true);
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.insert(std::mem::take(&mut name));
                        top_level = true;
                        continue;
                    }
                    ':' if depth == 0 => top_level = false,
                    _ => {}
                }
                if depth == 0 && top_level && (c.is_alphanumeric() || c == '_') {
                    name.push(c);
                }
            }
            found.insert(name);
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.insert(name);
        }
    }
    found.retain(|name| !name.is_empty());
    found
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every import edge between top-level modules: (importer, imported) -> files.
fn edges() -> BTreeMap<(String, String), BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let module = relative
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        let text = fs::read_to_string(&file).unwrap();
        for imported in imported_modules(non_test_source(&text)) {
            if imported != module {
                edges
                    .entry((module.clone(), imported))
                    .or_default()
                    .insert(relative.clone());
            }
        }
    }
    edges
}

#[test]
fn every_module_has_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for entry in fs::read_dir(src).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let module = name.trim_end_matches(".rs");
        // A file module or a folder module; the templates and config files are neither.
        let is_module = name.ends_with(".rs") || !name.contains('.');
        if !is_module || module == "lib" || module == "layers" {
            continue;
        }
        assert!(layer_of(module).is_some(), "module {module} has no layer");
    }
}

#[test]
fn nothing_imports_upward() {
    let mut broken = Vec::new();
    for ((from, to), files) in edges() {
        let (Some(from_layer), Some(to_layer)) = (layer_of(&from), layer_of(&to)) else {
            continue; // crate-root items (lib.rs) and this module
        };
        let allowed =
            to_layer < from_layer || (to_layer == from_layer && ONE_PIECE.contains(&from_layer));
        if !allowed {
            broken.push(format!(
                "{from} (layer {from_layer}) imports {to} (layer {to_layer}) in {files:?}"
            ));
        }
    }
    assert!(broken.is_empty(), "layering breaks:\n{}", broken.join("\n"));
}

#[test]
fn the_service_layer_knows_no_http() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/service");
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        for word in [
            "crate::api",
            "StatusCode",
            "http::",
            "hyper",
            "User-Agent",
            "MicroMessenger",
        ] {
            assert!(
                !non_test_source(&text).contains(word),
                "{} mentions {word}",
                file.display()
            );
        }
    }
}

#[test]
fn the_import_scanner_reads_groups_and_paths() {
    let source = "use crate::{model::{Fen, OrderNo}, store::Store};\nlet x = crate::qr::png(y);";
    let found: Vec<String> = imported_modules(source).into_iter().collect();
    assert_eq!(found, ["model", "qr", "store"]);
}
