//! The architecture `src/lib.rs` describes, checked on the sources: no import cycle between
//! files, the layers that must not reach up, and one place where sessions start.
//!
//! Every path a file names is resolved to the file that defines it: `use` trees and inline
//! paths starting with `crate::`, `super::` or `self::`, and the child modules a file declares
//! (`mod driver;` then `driver::…`). Comments and string literals are ignored. The rule is
//! Rust's module tree: a directory module's `mod.rs` and its own children may use each other
//! (the parent declares them, they see its items), but at every level the sibling modules
//! — files or directories — must not form a cycle, and at the top the modules are layers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A module path: `["engine", "driver"]` for src/engine/driver.rs, `[]` for src/lib.rs.
type ModPath = Vec<String>;

/// Which top-level modules each layer must not use: the pure app and views are tested
/// without a network or a terminal, the engine knows nothing of audit, policy or UI, and the
/// leaves are leaves. `"*"` forbids every crate module, `"*error"` every one but `error`.
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "app",
        &[
            "engine", "launch", "tui", "cli", "sandbox", "bench", "report", "signals",
        ],
    ),
    (
        "ui",
        &[
            "engine", "launch", "tui", "cli", "sandbox", "bench", "report", "signals",
        ],
    ),
    (
        "engine",
        &[
            "app", "ui", "tui", "cli", "launch", "access", "audit", "report", "sandbox",
        ],
    ),
    (
        "access",
        &["engine", "launch", "app", "ui", "tui", "cli", "report"],
    ),
    ("error", &["*"]),
    ("rules", &["*error"]),
    ("humanize", &["*"]),
    ("forwarding", &["*error"]),
    ("clock", &["*"]),
    ("secret", &["*"]),
];

// -------------------------------------------------------------------------------------------
// Reading the sources

/// Source text with comments and the contents of string and char literals blanked out (line
/// structure kept), so that only code is scanned.
fn code_only(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if b[i] == '\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !ident_char(i.checked_sub(1).and_then(|j| b.get(j)).copied())
        {
            // Raw string: r"…" or r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                match b.get(j) {
                    None => break,
                    Some('"') if (1..=hashes).all(|k| b.get(j + k) == Some(&'#')) => {
                        j += 1 + hashes;
                        break;
                    }
                    Some('\n') => out.push('\n'),
                    _ => {}
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    i += 1;
                }
                if b.get(i) == Some(&'\n') {
                    out.push('\n');
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{1F600}') or a lifetime ('a): only the former is
            // skipped.
            if next == Some('\\') {
                let mut j = i + 2;
                while j < b.len() && b[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
                out.push_str("' '");
            } else if b.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_char(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// The module path of a file under src/.
fn mod_path(rel: &Path) -> ModPath {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs").to_owned();
        if !matches!(stem.as_str(), "mod" | "lib") {
            parts.push(stem);
        }
    }
    parts
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into its paths.
fn expand_use(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else {
        return vec![tree];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| {
            expand_use(p)
                .into_iter()
                .map(move |e| format!("{prefix}{e}"))
        })
        .collect()
}

/// The module paths a file's code names, relative to the crate root, and the child modules it
/// declares and uses.
fn references(me: &ModPath, code: &str) -> BTreeSet<ModPath> {
    let mut found = BTreeSet::new();
    // Inline modules (`mod tests { … }`): `super::` inside one refers to this file's module.
    let inline = inline_modules(code);
    let depth_at = |pos: usize| inline.iter().filter(|(s, e)| *s < pos && pos < *e).count();
    let mut push = |segments: Vec<&str>, pos: usize| {
        let mut path: ModPath = Vec::new();
        let mut rest = segments.as_slice();
        match rest.first().copied() {
            Some("crate") => rest = &rest[1..],
            Some("super") => {
                let mut base = me.clone();
                let mut inline = depth_at(pos);
                while rest.first() == Some(&"super") {
                    if inline > 0 {
                        inline -= 1;
                    } else {
                        base.pop();
                    }
                    rest = &rest[1..];
                }
                path = base;
            }
            Some("self") => {
                path = me.clone();
                rest = &rest[1..];
            }
            _ => return,
        }
        path.extend(rest.iter().map(|s| (*s).to_owned()));
        found.insert(path);
    };
    // `use` trees.
    let mut search = 0;
    while let Some(at) = code[search..].find("use ") {
        let start = search + at;
        search = start + 4;
        if ident_char(code[..start].chars().last()) {
            continue;
        }
        let Some(end) = code[start..].find(';') else {
            break;
        };
        for path in expand_use(&code[start + 4..start + end]) {
            let path = path.split(" as ").next().unwrap_or_default().to_owned();
            let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
            push(segments, start);
        }
    }
    // Inline paths (byte positions: paths are ASCII, and so are the markers looked for).
    let bytes = code.as_bytes();
    let is_ident = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
    let mut i = 0;
    while i < bytes.len() {
        let after_separator = i >= 2 && &bytes[i - 2..i] == b"::";
        let starts_path =
            !(is_ident(i.checked_sub(1).and_then(|j| bytes.get(j))) || after_separator);
        if starts_path {
            let len = bytes[i..]
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_' || **b == b':')
                .count();
            let word = &code[i..i + len];
            if ["crate::", "super::", "self::"]
                .iter()
                .any(|p| word.starts_with(p))
            {
                let segments: Vec<&str> = word.split("::").filter(|s| !s.is_empty()).collect();
                push(segments, i);
                i += len;
                continue;
            }
        }
        i += 1;
    }
    // Declared child modules that the file's own code uses (`driver::spawn`).
    for child in declared_children(code) {
        let needle = format!("{child}::");
        let used = code
            .match_indices(&needle)
            .any(|(at, _)| !ident_char(code[..at].chars().last()) && !code[..at].ends_with("::"));
        if used {
            let mut path = me.clone();
            path.push(child);
            found.insert(path);
        }
    }
    found
}

/// `mod NAME;` declarations (with any attributes and visibility before them).
fn declared_children(code: &str) -> Vec<String> {
    code.match_indices("mod ")
        .filter(|(at, _)| !ident_char(code[..*at].chars().last()))
        .filter_map(|(at, _)| {
            let rest = &code[at + 4..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let after = rest[name.len()..].trim_start();
            (!name.is_empty() && after.starts_with(';')).then_some(name)
        })
        .collect()
}

/// The byte ranges of inline `mod NAME { … }` blocks.
fn inline_modules(code: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (start, _) in code.match_indices("mod ") {
        if ident_char(code[..start].chars().last()) {
            continue;
        }
        let rest = &code[start + 4..];
        let name_len = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .map(char::len_utf8)
            .sum::<usize>();
        let after = &rest[name_len..];
        if name_len == 0 || !after.trim_start().starts_with('{') {
            continue;
        }
        let open = start + 4 + name_len + (after.len() - after.trim_start().len());
        let mut depth = 0;
        for (k, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        out.push((open, open + k));
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// Resolves a module path to the deepest source file that defines it.
fn resolve(files: &BTreeSet<ModPath>, path: &ModPath) -> Option<ModPath> {
    let mut best: Option<ModPath> = files.contains(&Vec::new()).then(Vec::new);
    for n in 1..=path.len() {
        let prefix = path[..n].to_vec();
        if files.contains(&prefix) {
            best = Some(prefix);
        } else {
            break;
        }
    }
    best
}

/// The file graph: each file and the files its code uses.
fn graph(sources: &BTreeMap<ModPath, String>) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let files: BTreeSet<ModPath> = sources.keys().cloned().collect();
    sources
        .iter()
        .map(|(me, text)| {
            let deps = references(me, &code_only(text))
                .iter()
                .filter_map(|p| resolve(&files, p))
                .filter(|p| p != me)
                .collect();
            (me.clone(), deps)
        })
        .collect()
}

// -------------------------------------------------------------------------------------------
// The checks

/// Cycles among the siblings of every directory module, each as "a -> b (…), b -> a (…)"
/// with the files that make each step.
fn sibling_cycles(graph: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<String> {
    let parents: BTreeSet<ModPath> = graph
        .keys()
        .flat_map(|p| (0..p.len()).map(|n| p[..n].to_vec()))
        .collect();
    let mut problems = Vec::new();
    for parent in parents {
        let unit = |file: &ModPath| -> Option<String> {
            (file.len() > parent.len() && file[..parent.len()] == parent[..])
                .then(|| file[parent.len()].clone())
        };
        let mut edges: BTreeMap<String, BTreeMap<String, (ModPath, ModPath)>> = BTreeMap::new();
        for (from, deps) in graph {
            let Some(a) = unit(from) else { continue };
            edges.entry(a.clone()).or_default();
            for to in deps {
                if let Some(b) = unit(to).filter(|b| *b != a) {
                    edges
                        .entry(a.clone())
                        .or_default()
                        .entry(b)
                        .or_insert((from.clone(), to.clone()));
                }
            }
        }
        for cycle in find_cycles(&edges) {
            let steps: Vec<String> = cycle
                .windows(2)
                .map(|w| {
                    let (f, t) = &edges[&w[0]][&w[1]];
                    format!("{} -> {} ({} uses {})", w[0], w[1], show(f), show(t))
                })
                .collect();
            let at = if parent.is_empty() {
                "crate".to_owned()
            } else {
                parent.join("::")
            };
            problems.push(format!("in {at}: {}", steps.join(", ")));
        }
    }
    problems
}

fn show(p: &ModPath) -> String {
    if p.is_empty() {
        "lib.rs".to_owned()
    } else {
        p.join("/")
    }
}

/// One cycle (closed: first == last) through each node that lies on one, found by a
/// depth-first search from it back to itself.
fn find_cycles(edges: &BTreeMap<String, BTreeMap<String, (ModPath, ModPath)>>) -> Vec<Vec<String>> {
    let mut cycles = Vec::new();
    let mut reported: BTreeSet<String> = BTreeSet::new();
    for start in edges.keys() {
        if reported.contains(start) {
            continue;
        }
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        'search: while let Some((node, path)) = stack.pop() {
            for next in edges.get(&node).map(|m| m.keys()).into_iter().flatten() {
                if next == start {
                    let mut cycle = path.clone();
                    cycle.push(start.clone());
                    reported.extend(cycle.iter().cloned());
                    cycles.push(cycle);
                    break 'search;
                }
                if seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    cycles
}

/// Uses of top-level modules that [`FORBIDDEN`] rules out.
fn layer_violations(graph: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<String> {
    let mut problems = Vec::new();
    for (from, deps) in graph {
        let Some(layer) = from.first() else { continue };
        let Some((_, banned)) = FORBIDDEN.iter().find(|(l, _)| l == layer) else {
            continue;
        };
        for to in deps {
            let Some(target) = to.first() else { continue };
            if target == layer {
                continue;
            }
            let bad = banned.iter().any(|b| match *b {
                "*" => true,
                "*error" => target != "error",
                name => name == target,
            });
            if bad {
                problems.push(format!("{} uses {}", show(from), show(to)));
            }
        }
    }
    problems
}

fn sources() -> BTreeMap<ModPath, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(&src).unwrap().to_path_buf();
                // The binary is its own crate that uses the library by name.
                if rel == Path::new("main.rs") {
                    continue;
                }
                out.insert(mod_path(&rel), std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn no_import_cycle_between_the_files_of_the_crate() {
    let sources = sources();
    assert!(
        sources.len() > 80,
        "found only {} source files",
        sources.len()
    );
    let cycles = sibling_cycles(&graph(&sources));
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn layers_do_not_reach_up() {
    let problems = layer_violations(&graph(&sources()));
    assert!(problems.is_empty(), "layering:\n{}", problems.join("\n"));
}

#[test]
fn sessions_start_only_in_launch() {
    for (path, text) in sources() {
        // Unit tests may drive the fake API directly; the product may not.
        let product = text.split("#[cfg(test)]").next().unwrap_or_default();
        let code = code_only(product);
        let allowed = matches!(path.first().map(String::as_str), Some("aws" | "sandbox"))
            || path == ["launch"];
        if !allowed {
            assert!(
                !code.contains(".start_session("),
                "{} calls StartSession; sessions start in launch.rs only",
                show(&path)
            );
        }
    }
}

// -------------------------------------------------------------------------------------------
// The checker on made-up trees, so it is known to find what it looks for.

fn tree(files: &[(&str, &str)]) -> BTreeMap<ModPath, String> {
    files
        .iter()
        .map(|(p, t)| (mod_path(Path::new(p)), (*t).to_owned()))
        .collect()
}

#[test]
fn the_checker_finds_cycles_at_every_level_and_allows_parent_and_child() {
    let ok = tree(&[
        ("lib.rs", "pub mod a; pub mod b;"),
        (
            "a/mod.rs",
            "pub mod x; pub mod y; pub use x::X; fn f() { y::g(); }",
        ),
        ("a/x.rs", "use super::y::Y; use crate::b::B; pub struct X;"),
        (
            "a/y.rs",
            "use super::helper; // crate::a::x in a comment\nconst S: &str = \"crate::a::x\";",
        ),
        (
            "b.rs",
            "pub struct B; #[cfg(test)] mod tests { use super::*; use crate::b::B; }",
        ),
    ]);
    assert_eq!(sibling_cycles(&graph(&ok)), Vec::<String>::new());

    let top = tree(&[
        ("lib.rs", "pub mod a; pub mod b;"),
        ("a.rs", "use crate::b::{B, other::C};"),
        ("b.rs", "pub fn f() { crate::a::g() }"),
    ]);
    let found = sibling_cycles(&graph(&top));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("in crate: a -> b (a uses b), b -> a"),
        "{found:?}"
    );

    let siblings = tree(&[
        ("lib.rs", "pub mod m;"),
        ("m/mod.rs", "mod p; mod q;"),
        ("m/p.rs", "use super::q::Q;"),
        ("m/q.rs", "fn f() { super::super::m::p::P }"),
    ]);
    let found = sibling_cycles(&graph(&siblings));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("in m: p -> q"), "{found:?}");
}

#[test]
fn the_checker_sees_layering_through_any_path() {
    let g = graph(&tree(&[
        ("lib.rs", "pub mod app; pub mod engine; pub mod error;"),
        ("app/mod.rs", "pub mod forwards;"),
        ("app/forwards.rs", "fn f() -> crate::engine::X { todo() }"),
        ("engine.rs", "use crate::error::E;"),
        ("error.rs", "pub struct E;"),
    ]));
    assert_eq!(
        layer_violations(&g),
        vec!["app/forwards uses engine".to_owned()]
    );
}
