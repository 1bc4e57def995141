//! The layout's two walls, checked on the source itself: no import circles (no module reaches,
//! through `crate::`/`super::` paths, a module that reaches it back) in evoctl, the lab and the
//! protocol crate, and nothing prints outside the printer (`src/output.rs` and `src/output/`).
//! A module's use of its own submodules is not an edge (it declared them); everything else is,
//! a submodule's use of its parent included, so a circle through a `mod.rs` counts. Test modules
//! are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

/// Every `.rs` file under `root` by its module path (`exec/link.rs` is `exec::link`, a `mod.rs`
/// is its folder, `lib.rs`/`main.rs` the crate root), binaries under `bin/` left out.
fn modules(root: &Path) -> BTreeMap<Module, PathBuf> {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, files);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(root, &mut files);
    let mut modules = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(root).unwrap().with_extension("");
        let mut parts: Module = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        if parts.first().is_some_and(|p| p == "bin") {
            continue;
        }
        if parts.last().is_some_and(|p| ["mod", "lib", "main"].contains(&p.as_str())) {
            parts.pop();
        }
        modules.insert(parts, file);
    }
    modules
}

/// The file's code without its test module and comments.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut kept = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]")
            && lines.peek().is_some_and(|next| next.trim_start().starts_with("mod ") || next.contains(" mod "))
        {
            break;
        }
        let line = match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        };
        kept.push_str(line);
        kept.push('\n');
    }
    kept
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head = tree[..open].trim_end_matches("::");
        let inner = &tree[open + 1..tree.rfind('}').unwrap()];
        let prefix = [prefix, head].iter().filter(|p| !p.is_empty()).cloned().collect::<Vec<_>>().join("::");
        let (mut depth, mut start) = (0, 0);
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&prefix, &inner[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&prefix, &inner[start..], out);
    } else if !tree.is_empty() {
        out.push(if prefix.is_empty() { tree.to_owned() } else { format!("{prefix}::{tree}") });
    }
}

/// Every path the code names through `crate::`, `super::` or `self::`.
fn paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + 4..];
        if before.is_some_and(is_ident) {
            continue;
        }
        let Some(end) = rest.find(';') else { break };
        let tree: String = rest[..end].split_whitespace().collect();
        if ["crate::", "super::", "self::"].iter().any(|p| tree.starts_with(p)) {
            expand("", &tree, &mut out);
        }
    }
    for root in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(found) = code[from..].find(root) {
            let at = from + found;
            from = at + root.len();
            if code[..at].chars().next_back().is_some_and(|c| is_ident(c) || c == ':') {
                continue;
            }
            let end = code[at..].find(|c: char| !(is_ident(c) || c == ':')).map_or(code.len(), |e| at + e);
            out.push(code[at..end].trim_end_matches(':').to_owned());
        }
    }
    out
}

/// The module a path from `from` lands in: the longest prefix that is a module.
fn resolve(from: &Module, path: &str, known: &BTreeMap<Module, PathBuf>) -> Option<Module> {
    let mut parts = path.split("::").filter(|p| !p.is_empty() && *p != "*" && *p != "self").peekable();
    let mut base = from.clone();
    if parts.peek() == Some(&"crate") {
        parts.next();
        base.clear();
    }
    while parts.peek() == Some(&"super") {
        parts.next();
        base.pop();
    }
    base.extend(parts.map(str::to_owned));
    (0..=base.len()).rev().map(|k| base[..k].to_vec()).find(|m| known.contains_key(m))
}

/// Whether `b` is `a` or inside it: a module's use of its own submodules is its own business.
fn within(a: &Module, b: &Module) -> bool {
    b.starts_with(a)
}

/// The import graph of the crate whose sources are at `root`.
fn graph(root: &Path) -> BTreeMap<Module, BTreeSet<Module>> {
    let known = modules(root);
    known
        .iter()
        .map(|(module, file)| {
            let targets = paths(&code(file))
                .iter()
                .filter_map(|path| resolve(module, path, &known))
                .filter(|target| !within(module, target))
                .collect();
            (module.clone(), targets)
        })
        .collect()
}

/// A way from `from` to `to` in the graph, if there is one.
fn way(graph: &BTreeMap<Module, BTreeSet<Module>>, from: &Module, to: &Module) -> Option<Vec<Module>> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![vec![from.clone()]];
    while let Some(trail) = stack.pop() {
        let last = trail.last().unwrap();
        if last == to {
            return Some(trail);
        }
        if !seen.insert(last.clone()) {
            continue;
        }
        for next in graph.get(last).into_iter().flatten() {
            let mut longer = trail.clone();
            longer.push(next.clone());
            stack.push(longer);
        }
    }
    None
}

fn circles(root: &Path) -> Vec<String> {
    let graph = graph(root);
    let mut found = Vec::new();
    for (module, targets) in &graph {
        for target in targets {
            if let Some(back) = way(&graph, target, module) {
                let names: Vec<String> = std::iter::once(module)
                    .chain(&back)
                    .map(|m| if m.is_empty() { "crate".into() } else { m.join("::") })
                    .collect();
                found.push(names.join(" -> "));
            }
        }
    }
    found
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    for root in ["src", "crates/evoctl-lab/src", "crates/evoctl-ssm/src"] {
        let circles = circles(&manifest_dir().join(root));
        assert!(circles.is_empty(), "import circles in {root}:\n{}", circles.join("\n"));
    }
}

#[test]
fn the_circle_check_sees_a_circle() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n");
    write("a.rs", "use crate::b::{self, Thing};\n");
    write("b/mod.rs", "pub mod inner;\nuse super::c::Other; // crate::a is only named in a comment\n");
    write("b/inner.rs", "use super::Thing;\n");
    write("c.rs", "pub fn f() { let _ = crate::a::g(); }\n#[cfg(test)]\nmod tests {\n    use crate::b::inner;\n}\n");
    assert_eq!(circles(dir.path()), ["a -> b -> c -> a", "b -> c -> a -> b", "c -> a -> b -> c"]);
    write("c.rs", "pub fn f() {}\n");
    assert_eq!(circles(dir.path()), Vec::<String>::new());
    // Through a parent: b uses c, c a submodule of b, which uses its parent.
    write("c.rs", "use crate::b::inner::f;\n");
    assert_eq!(
        circles(dir.path()),
        ["b -> c -> b::inner -> b", "b::inner -> b -> c -> b::inner", "c -> b::inner -> b -> c"]
    );
}

#[test]
fn nothing_prints_outside_the_printer() {
    let root = manifest_dir().join("src");
    let printing = [
        "println!",
        "print!",
        "eprintln!",
        "eprint!",
        "dbg!",
        "std::io::stdout",
        "std::io::stderr",
        "io::stdout()",
        "io::stderr()",
    ];
    let mut found = Vec::new();
    for (module, file) in modules(&root) {
        if module.first().is_some_and(|m| m == "output") {
            continue;
        }
        for (number, line) in code(&file).lines().enumerate() {
            for word in printing {
                if let Some(at) = line.find(word)
                    && !line[..at].chars().next_back().is_some_and(|c| is_ident(c) || c == ':')
                {
                    found.push(format!(
                        "{}:{}: {}",
                        file.strip_prefix(manifest_dir()).unwrap().display(),
                        number + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(found.is_empty(), "printing outside src/output.rs:\n{}", found.join("\n"));
}
