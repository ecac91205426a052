//! The shape of `src/`: stages in the order a request travels, each importing only
//! from the stages before it, no import cycle between modules, and no file over
//! `MAX_CODE_LINES` lines of code (tests apart). `cargo test --test layering` checks it
//! on any machine; it reads the source, so it needs nothing but the toolchain.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules of the library, in order: a module may import from its own stage
/// and the ones before it, never from a later one.
const STAGES: &[&[&str]] = &[
    &["clock", "stats", "http"],
    &["config"],
    &["downstream"],
    &["routing"],
    &["upstream"],
    &["discovery"],
    &["proxy"],
    &["admin"],
    &["server"],
    &["cli"],
];

/// Longest a file may be, counting non-blank, non-comment lines before its tests.
const MAX_CODE_LINES: usize = 600;

/// A module of the library: its path (`http::error`) and its source without tests.
struct Module {
    path: Vec<String>,
    file: PathBuf,
    code: String,
}

fn modules() -> Vec<Module> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    walk(&src, &src, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<Module>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(root, &path, out);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let rel = path.strip_prefix(root).unwrap();
        let mut parts: Vec<String> = rel
            .with_extension("")
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        // The binary's entry point and test-only files are not part of the layering.
        if parts == ["main"] || parts.last().is_some_and(|p| p == "tests") {
            continue;
        }
        if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
            parts.pop();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let code = match text.find("#[cfg(test)]\nmod tests") {
            Some(i) => text[..i].to_string(),
            None => text,
        };
        out.push(Module {
            path: parts,
            file: path,
            code,
        });
    }
}

fn stage_of(top: &str) -> usize {
    STAGES
        .iter()
        .position(|s| s.contains(&top))
        .unwrap_or_else(|| panic!("module `{top}` is in no stage of tests/layering.rs"))
}

/// Every path a module names with `crate::` or `super::`, resolved to the longest
/// prefix that is a module of the library.
fn imports(m: &Module, known: &BTreeSet<Vec<String>>) -> BTreeSet<Vec<String>> {
    let mut found = BTreeSet::new();
    // `use a::{b, c::d}` groups are flattened first so each path is seen whole.
    for path in paths(&m.code) {
        let (base, rest): (Vec<String>, &[String]) = match path.first().map(String::as_str) {
            Some("crate") => (Vec::new(), &path[1..]),
            Some("super") => {
                let mut base = m.path.clone();
                let mut rest = &path[..];
                // A mod.rs's `super` is its parent; a file's `super` is its folder.
                while rest.first().is_some_and(|p| p == "super") {
                    base.pop();
                    rest = &rest[1..];
                }
                (base, rest)
            }
            _ => continue,
        };
        let mut full = base;
        let mut best: Option<Vec<String>> = None;
        if known.contains(&full) {
            best = Some(full.clone());
        }
        for part in rest {
            full.push(part.clone());
            if known.contains(&full) {
                best = Some(full.clone());
            }
        }
        if let Some(target) = best {
            if target != m.path && !target.is_empty() {
                found.insert(target);
            }
        }
    }
    found
}

/// The `crate::…` and `super::…` paths in `code`, with `use` groups expanded.
fn paths(code: &str) -> Vec<Vec<String>> {
    let code: String = code
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !code.is_char_boundary(i) {
            i += 1;
            continue;
        }
        let rest = &code[i..];
        let starts = (rest.starts_with("crate::") || rest.starts_with("super::"))
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'));
        if !starts {
            i += 1;
            continue;
        }
        let end = path_end(rest);
        expand(&rest[..end], &mut out);
        i += end.max(1);
    }
    out
}

/// Length of the path starting `s`, including a balanced `{…}` group.
fn path_end(s: &str) -> usize {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            c if depth == 0 && !(c.is_alphanumeric() || c == '_' || c == ':') => return i,
            _ => {}
        }
    }
    s.len()
}

/// `a::{b, c::d}` → `a::b`, `a::c::d` (and `a` itself for `self`).
fn expand(path: &str, out: &mut Vec<Vec<String>>) {
    let path: String = path.chars().filter(|c| !c.is_whitespace()).collect();
    match path.find('{') {
        None => out.push(
            path.split("::")
                .filter(|p| !p.is_empty() && *p != "self" && *p != "*")
                .map(str::to_string)
                .collect(),
        ),
        Some(open) => {
            let prefix = &path[..open];
            let inner = &path[open + 1..path.len().saturating_sub(1)];
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        expand(&format!("{prefix}{}", &inner[start..i]), out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            if start < inner.len() {
                expand(&format!("{prefix}{}", &inner[start..]), out);
            }
        }
    }
}

/// Which modules each module imports.
type Edges = BTreeMap<Vec<String>, BTreeSet<Vec<String>>>;

fn graph() -> (Vec<Module>, Edges) {
    let mods = modules();
    let known: BTreeSet<Vec<String>> = mods.iter().map(|m| m.path.clone()).collect();
    let edges = mods
        .iter()
        .map(|m| (m.path.clone(), imports(m, &known)))
        .collect();
    (mods, edges)
}

fn name(path: &[String]) -> String {
    if path.is_empty() {
        "crate".into()
    } else {
        path.join("::")
    }
}

#[test]
fn no_stage_imports_from_a_later_stage() {
    let (_, edges) = graph();
    let mut wrong = Vec::new();
    for (from, targets) in &edges {
        let Some(top) = from.first() else { continue };
        for to in targets {
            if stage_of(top) < stage_of(&to[0]) {
                wrong.push(format!("{} imports {}", name(from), name(to)));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports from later stages:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_import_cycle_between_modules() {
    let (_, edges) = graph();
    // Depth-first search; a grey node met again closes a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        White,
        Grey,
        Black,
    }
    let mut mark: BTreeMap<&Vec<String>, Mark> = edges.keys().map(|k| (k, Mark::White)).collect();
    fn visit<'a>(
        node: &'a Vec<String>,
        edges: &'a Edges,
        mark: &mut BTreeMap<&'a Vec<String>, Mark>,
        stack: &mut Vec<&'a Vec<String>>,
    ) -> Option<Vec<String>> {
        mark.insert(node, Mark::Grey);
        stack.push(node);
        for next in edges.get(node).into_iter().flatten() {
            match mark.get(next).copied() {
                Some(Mark::Grey) => {
                    let from = stack.iter().position(|n| *n == next).unwrap_or(0);
                    let mut cycle: Vec<String> = stack[from..].iter().map(|n| name(n)).collect();
                    cycle.push(name(next));
                    return Some(cycle);
                }
                Some(Mark::White) => {
                    if let Some(c) = visit(next, edges, mark, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        mark.insert(node, Mark::Black);
        None
    }
    let keys: Vec<&Vec<String>> = edges.keys().collect();
    for k in keys {
        if mark[k] == Mark::White {
            let mut stack = Vec::new();
            if let Some(cycle) = visit(k, &edges, &mut mark, &mut stack) {
                panic!("import cycle: {}", cycle.join(" -> "));
            }
        }
    }
}

#[test]
fn no_file_is_too_long() {
    let (mods, _) = graph();
    let mut long = Vec::new();
    for m in &mods {
        let code = m
            .code
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("//"))
            .count();
        if code > MAX_CODE_LINES {
            long.push(format!("{}: {code} lines of code", m.file.display()));
        }
    }
    assert!(
        long.is_empty(),
        "files over {MAX_CODE_LINES} lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_checker_sees_imports() {
    // A checker that finds nothing would pass every layout: it must see these.
    let (_, edges) = graph();
    let proxy_phases = vec!["proxy".to_string(), "phases".to_string()];
    let seen = &edges[&proxy_phases];
    for wanted in [
        &["http", "checks"][..],
        &["proxy", "retry"],
        &["proxy", "state"],
    ] {
        let wanted: Vec<String> = wanted.iter().map(|s| s.to_string()).collect();
        assert!(
            seen.contains(&wanted),
            "proxy::phases -> {wanted:?} not seen: {seen:?}"
        );
    }
    let mut found = Vec::new();
    expand("a::{b, c::{d, e}}", &mut found);
    assert_eq!(
        found,
        [vec!["a", "b"], vec!["a", "c", "d"], vec!["a", "c", "e"]]
    );
}
