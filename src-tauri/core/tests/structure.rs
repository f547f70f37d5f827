//! The shape of the code, checked on its sources: no import circle between
//! files (of the backend and of the shell), the backend's parts in layers
//! where a lower one never names a higher one, no backend file over 600
//! lines, and a job's state set in one place only.
//!
//! A file "imports" another when it names it by path: `crate::a::b`,
//! `super::b`, `self::b` (in `use` or inline), or, in a `mod.rs` or
//! `lib.rs`, a child module `b::...`. Re-exports (`pub use`), comments and
//! `#[cfg(test)]` modules do not count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The backend's top-level parts, lowest first: each may name only parts
/// before it. (README, "Architecture", shows the same layers.)
const LAYERS: &[&str] = &[
    "model",
    "telemetry",
    "events",
    "paths",
    "privacy",
    "store",
    "secrets",
    "client",
    "health",
    "supervisor",
    "manager",
    "dispatch",
    "projects",
    "gateway",
    "pool",
    "settings",
    "engine",
];

const MAX_LINES: usize = 600;

fn core_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn shell_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.rs` file under `root` (not under `skip`), by its path from `root`.
fn rust_files(root: &Path, skip: &[&str]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if skip
                .iter()
                .any(|s| rel == *s || rel.starts_with(&format!("{s}/")))
            {
                continue;
            }
            if p.is_dir() {
                dirs.push(p);
            } else if rel.ends_with(".rs") {
                out.insert(rel, std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    out
}

/// The module path of a file: `dispatch/state/mod.rs` -> [dispatch, state].
fn module_of(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The code of a file without comments, string contents and test modules.
fn code_of(src: &str) -> String {
    // The test module, whatever its `cfg` line says.
    let src = match src.find("\nmod tests {") {
        Some(i) => &src[..src[..i].rfind("#[cfg(").unwrap_or(i)],
        None => src,
    };
    let mut out = String::with_capacity(src.len());
    // Inline modules (`mod x { .. }`): `super` there is the file's own module.
    let mut depth = 0usize;
    let mut inline_at: Vec<usize> = Vec::new();
    for line in src.lines() {
        let t = line.trim_start();
        if t.starts_with("//") || t.starts_with("pub use ") || t.starts_with("pub(crate) use ") {
            continue;
        }
        // Drop string literals (a path in a message is not an import).
        let mut code = String::new();
        let mut in_str = false;
        let mut prev = ' ';
        for c in line.chars() {
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            } else if !in_str {
                code.push(c);
            }
            prev = c;
        }
        let opens_mod = {
            let t = code
                .trim_start()
                .trim_start_matches("pub ")
                .trim_start_matches("pub(crate) ");
            t.starts_with("mod ") && t.trim_end().ends_with('{')
        };
        if opens_mod {
            inline_at.push(depth);
        }
        let inside = inline_at.len() - usize::from(opens_mod);
        let mut line_out = code.clone();
        for _ in 0..inside {
            line_out = line_out
                .replace("super::super::", "\u{1}")
                .replace("super::", "self::")
                .replace('\u{1}', "super::");
        }
        out.push_str(&line_out);
        out.push('\n');
        for c in code.chars() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    while inline_at.last().is_some_and(|&d| d >= depth) {
                        inline_at.pop();
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// Paths named in `code`: each as its segments (`crate::a::b` -> [crate, a, b]).
fn paths_in(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let boundary = i == 0
            || !(bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_' || bytes[i - 1] == ':');
        if boundary && (c.is_alphabetic() || c == '_') {
            let mut segs = Vec::new();
            let mut j = i;
            loop {
                let start = j;
                while j < bytes.len() && (bytes[j].is_alphanumeric() || bytes[j] == '_') {
                    j += 1;
                }
                segs.push(bytes[start..j].iter().collect::<String>());
                // `a::{b, c::d}`: each item of the group.
                if j + 2 < bytes.len()
                    && bytes[j] == ':'
                    && bytes[j + 1] == ':'
                    && bytes[j + 2] == '{'
                {
                    let close = (j + 3..bytes.len())
                        .find(|&k| bytes[k] == '}')
                        .unwrap_or(bytes.len());
                    let inner: String = bytes[j + 3..close].iter().collect();
                    for item in inner.split(',') {
                        let item: Vec<String> = item
                            .trim()
                            .split("::")
                            .map(|s| s.trim().trim_matches(|c| c == '{' || c == '}').to_string())
                            .filter(|s| !s.is_empty() && s != "self")
                            .collect();
                        if let Some(first) = item.first() {
                            let mut p = segs.clone();
                            p.push(first.clone());
                            out.push(p);
                        }
                    }
                    j = close;
                    break;
                }
                if j + 1 < bytes.len() && bytes[j] == ':' && bytes[j + 1] == ':' {
                    j += 2;
                    continue;
                }
                break;
            }
            if segs.len() > 1 {
                out.push(segs);
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// The file (module path) a path names, if it names one of `modules`: the
/// deepest module along it (`super::Item` names the parent's own file).
fn resolve(
    from: &[String],
    is_parent: bool,
    path: &[String],
    modules: &BTreeSet<Vec<String>>,
) -> Option<Vec<String>> {
    let (base, rest, bare): (Vec<String>, &[String], bool) = match path[0].as_str() {
        "crate" => (Vec::new(), &path[1..], false),
        "self" => (from.to_vec(), &path[1..], false),
        "super" => {
            let mut b = from.to_vec();
            let mut k = 0;
            while k < path.len() && path[k] == "super" {
                b.pop();
                k += 1;
            }
            (b, &path[k..], false)
        }
        _ if is_parent => (from.to_vec(), path, true),
        _ => return None,
    };
    let mut cur = base.clone();
    let mut found = None;
    for seg in rest {
        cur.push(seg.clone());
        if modules.contains(&cur) {
            found = Some(cur.clone());
        } else {
            break;
        }
    }
    match found {
        Some(f) => Some(f),
        None if bare => None,
        None => modules.contains(&base).then_some(base),
    }
}

/// The import graph of the files under `root`.
fn graph(files: &BTreeMap<String, String>) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let modules: BTreeSet<Vec<String>> = files.keys().map(|r| module_of(r)).collect();
    let mut edges = BTreeMap::new();
    for (rel, src) in files {
        let me = module_of(rel);
        let is_parent =
            rel.ends_with("mod.rs") || rel.ends_with("lib.rs") || rel.ends_with("main.rs");
        let mut to = BTreeSet::new();
        for p in paths_in(&code_of(src)) {
            if let Some(t) = resolve(&me, is_parent, &p, &modules) {
                if t != me {
                    to.insert(t);
                }
            }
        }
        edges.insert(me, to);
    }
    edges
}

/// The circles of a graph (strongly connected parts of two or more files).
fn circles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<String>> {
    // Reachability by depth-first search from each node: small graphs.
    let reach = |from: &Vec<String>| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(n) = stack.pop() {
            for m in edges.get(&n).into_iter().flatten() {
                if seen.insert(m.clone()) {
                    stack.push(m.clone());
                }
            }
        }
        seen
    };
    let all: BTreeMap<&Vec<String>, BTreeSet<Vec<String>>> =
        edges.keys().map(|k| (k, reach(k))).collect();
    let mut out: BTreeSet<Vec<String>> = BTreeSet::new();
    for (a, ra) in &all {
        if !ra.contains(*a) {
            continue;
        }
        let mut part: Vec<String> = ra
            .iter()
            .filter(|b| all.get(b).is_some_and(|rb| rb.contains(*a)))
            .map(|b| b.join("::"))
            .collect();
        part.sort();
        out.insert(part);
    }
    out.into_iter().collect()
}

#[test]
fn no_file_of_the_backend_or_the_shell_imports_another_in_a_circle() {
    let core = rust_files(&core_src(), &[]);
    let found = circles(&graph(&core));
    assert!(
        found.is_empty(),
        "import circles in src-tauri/core/src: {found:?}"
    );
    // main.rs and build.rs are crates of their own.
    let shell = rust_files(
        &shell_src(),
        &[
            "core",
            "comfyui-rules",
            "packaging",
            "target",
            "main.rs",
            "build.rs",
        ],
    );
    assert!(
        shell.keys().any(|k| k == "shell/mod.rs"),
        "the shell's files were found"
    );
    let found = circles(&graph(&shell));
    assert!(
        found.is_empty(),
        "import circles in src-tauri (the shell): {found:?}"
    );
}

#[test]
fn a_lower_part_never_names_a_higher_one() {
    let core = rust_files(&core_src(), &[]);
    let edges = graph(&core);
    let layer = |m: &Vec<String>| {
        m.first()
            .and_then(|top| LAYERS.iter().position(|l| l == top))
    };
    let mut wrong = Vec::new();
    for (from, tos) in &edges {
        let Some(lf) = layer(from) else { continue };
        for to in tos {
            if let Some(lt) = layer(to) {
                if lt > lf {
                    wrong.push(format!("{} -> {}", from.join("::"), to.join("::")));
                }
            }
        }
    }
    let tops: BTreeSet<&str> = edges
        .keys()
        .filter_map(|m| m.first())
        .map(String::as_str)
        .collect();
    for t in tops {
        assert!(
            LAYERS.contains(&t),
            "the part {t} is in no layer: add it to LAYERS and the README"
        );
    }
    assert!(wrong.is_empty(), "lower parts name higher ones: {wrong:#?}");
}

#[test]
fn no_file_of_the_backend_is_over_600_lines() {
    let long: Vec<String> = rust_files(&core_src(), &[])
        .iter()
        .filter(|(_, src)| src.lines().count() > MAX_LINES)
        .map(|(rel, src)| format!("{rel}: {} lines", src.lines().count()))
        .collect();
    assert!(long.is_empty(), "split these by concern: {long:?}");
}

#[test]
fn a_jobs_state_is_set_in_one_place() {
    let setters: Vec<String> = rust_files(&core_src(), &[])
        .iter()
        .filter(|(_, src)| {
            let code = code_of(src);
            code.contains(".state = JobState::")
                || code.contains("job.state = ")
                || code.contains(".job.state = ")
        })
        .map(|(rel, _)| rel.clone())
        .collect();
    assert_eq!(
        setters,
        ["dispatch/state/entry.rs"],
        "a job's state changes only through Entry::apply (its transition table)"
    );
}

#[test]
fn the_queues_state_is_changed_only_by_its_owner() {
    // Its fields are visible inside `dispatch::state` only: elsewhere the
    // state is read through getters and changed through the owner's methods.
    let src = std::fs::read_to_string(core_src().join("dispatch/state/entry.rs")).unwrap();
    let code = code_of(&src);
    for name in ["QueueState", "Entry", "Attempt"] {
        let start = code
            .find(&format!("struct {name} {{"))
            .unwrap_or_else(|| panic!("struct {name} is in dispatch/state/entry.rs"));
        let body = &code[start..start + code[start..].find("\n}").unwrap()];
        let open: Vec<&str> = body
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("pub ") || l.starts_with("pub(crate) "))
            .collect();
        assert!(
            open.is_empty(),
            "{name} has fields open outside the state: {open:?}"
        );
    }
}

#[test]
fn the_checker_sees_a_circle_and_a_layer_broken() {
    // The checks above would pass on nothing: this one shows they see.
    let files: BTreeMap<String, String> = [
        ("a/mod.rs", "mod b;\nmod c;\nuse b::X;\n"),
        ("a/b.rs", "use super::c::Y;\npub struct X;\n"),
        ("a/c.rs", "pub struct Y;\nfn f() { let _ = super::b::X; }\n"),
        (
            "d.rs",
            "use crate::a::{b::X, c};\n// crate::e::Z in a comment\n",
        ),
        (
            "e.rs",
            "fn g() { crate::d::h(); let s = \"crate::a::b\"; }\n",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let edges = graph(&files);
    let found = circles(&edges);
    assert_eq!(found, vec![vec!["a::b".to_string(), "a::c".to_string()]]);
    let d = edges.get(&vec!["d".to_string()]).unwrap();
    assert!(
        d.contains(&vec!["a".to_string(), "b".to_string()])
            && d.contains(&vec!["a".to_string(), "c".to_string()])
    );
    assert!(
        !d.contains(&vec!["e".to_string()]),
        "a comment is not an import"
    );
    let e = edges.get(&vec!["e".to_string()]).unwrap();
    assert_eq!(e.len(), 1, "a string is not an import: {e:?}");
}
