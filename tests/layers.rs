//! The daemon's modules form layers: no import cycle, and no production file
//! too long to read.
//!
//! Reads `toptraffic-userspace/src` with syn and builds the graph of module
//! dependencies from every `crate::…`, `super::…` and child-module path
//! outside `#[cfg(test)]` code. A module that names a child module depends
//! on it, and a child that names its parent's items depends on the parent,
//! so code in a `mod.rs` that its children use is a cycle too.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// Longest a production source file may be (tests excluded).
const MAX_LINES: usize = 1_500;

type ModPath = Vec<String>;

/// One source file: its module path and whether it is test-only code.
struct Module {
    path: ModPath,
    file: PathBuf,
}

fn src_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir` with its module path (`a/b/mod.rs` and
/// `a/b.rs` are both `a::b`; `lib.rs` and `main.rs` are the root).
fn modules(root: &Path, dir: &Path, out: &mut Vec<Module>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            modules(root, &p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p
                .strip_prefix(root)
                .expect("under the root")
                .with_extension("");
            let mut path: ModPath = rel
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            if matches!(
                path.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                path.pop();
            }
            out.push(Module { path, file: p });
        }
    }
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.meta
                .require_list()
                .is_ok_and(|l| l.tokens.to_string() == "test")
    })
}

/// Collects the paths a file names, outside `#[cfg(test)]` items.
#[derive(Default)]
struct Paths {
    /// Paths as written, e.g. `["crate", "config", "Rule"]`.
    found: Vec<Vec<String>>,
    /// Child modules the file declares without `#[cfg(test)]`.
    children: Vec<String>,
    /// Child modules declared only for tests.
    test_children: Vec<String>,
}

impl Paths {
    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => self.push_with(prefix, &n.ident.to_string()),
            syn::UseTree::Rename(r) => self.push_with(prefix, &r.ident.to_string()),
            syn::UseTree::Glob(_) => self.found.push(prefix.clone()),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }

    fn push_with(&mut self, prefix: &[String], last: &str) {
        let mut p = prefix.to_vec();
        if last != "self" {
            p.push(last.to_string());
        }
        self.found.push(p);
    }

    /// Paths inside macro calls (`info!`, `format!` …) are tokens to syn:
    /// find `a :: b :: c` runs in them.
    fn tokens(&mut self, tokens: TokenStream) {
        let mut run: Vec<String> = Vec::new();
        let mut colons = 0;
        for tt in tokens {
            match tt {
                TokenTree::Ident(i) if run.is_empty() || colons == 2 => {
                    run.push(i.to_string());
                    colons = 0;
                }
                TokenTree::Punct(p) if p.as_char() == ':' && !run.is_empty() => colons += 1,
                TokenTree::Group(g) => {
                    self.flush(&mut run);
                    self.tokens(g.stream());
                    colons = 0;
                }
                other => {
                    self.flush(&mut run);
                    colons = 0;
                    if let TokenTree::Ident(i) = other {
                        run.push(i.to_string());
                    }
                }
            }
        }
        self.flush(&mut run);
    }

    fn flush(&mut self, run: &mut Vec<String>) {
        if run.len() > 1 {
            self.found.push(std::mem::take(run));
        }
        run.clear();
    }
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_item(&mut self, i: &'ast syn::Item) {
        let attrs = match i {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Impl(m) => &m.attrs,
            syn::Item::Fn(m) => &m.attrs,
            syn::Item::Use(m) => &m.attrs,
            syn::Item::Struct(m) => &m.attrs,
            syn::Item::Enum(m) => &m.attrs,
            syn::Item::Const(m) => &m.attrs,
            syn::Item::Static(m) => &m.attrs,
            syn::Item::Trait(m) => &m.attrs,
            syn::Item::Type(m) => &m.attrs,
            syn::Item::Macro(m) => &m.attrs,
            _ => &Vec::new(),
        };
        let test = is_cfg_test(attrs);
        if let syn::Item::Mod(m) = i {
            if m.content.is_none() {
                let name = m.ident.to_string();
                if test {
                    self.test_children.push(name);
                } else {
                    self.children.push(name);
                }
            }
        }
        if !test {
            syn::visit::visit_item(self, i);
        }
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &u.tree);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        if p.segments.len() > 1 {
            self.found
                .push(p.segments.iter().map(|s| s.ident.to_string()).collect());
        }
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.tokens(m.tokens.clone());
    }
}

/// What each production module depends on, and each file's production lines.
struct Graph {
    edges: BTreeMap<ModPath, BTreeSet<ModPath>>,
    lines: Vec<(PathBuf, usize)>,
}

fn graph() -> Graph {
    let root = src_root();
    let mut all = Vec::new();
    modules(&root, &root, &mut all);
    let known: BTreeSet<ModPath> = all.iter().map(|m| m.path.clone()).collect();
    let mut parsed = BTreeMap::new();
    for m in &all {
        let text = fs::read_to_string(&m.file).expect("read a source file");
        let file =
            syn::parse_file(&text).unwrap_or_else(|e| panic!("parse {}: {e}", m.file.display()));
        let mut p = Paths::default();
        p.visit_file(&file);
        parsed.insert(m.path.clone(), (p, text, m.file.clone()));
    }
    // Test-only modules, and everything under them, are not layers.
    let mut test_only: BTreeSet<ModPath> = BTreeSet::new();
    for (path, (p, _, _)) in &parsed {
        for c in &p.test_children {
            let mut child = path.clone();
            child.push(c.clone());
            test_only.insert(child);
        }
    }
    let is_test = |m: &ModPath| test_only.iter().any(|t| m.starts_with(t));
    let resolve = |segs: &[String]| -> Option<ModPath> {
        (1..=segs.len())
            .rev()
            .map(|n| segs[..n].to_vec())
            .find(|c| known.contains(c))
    };
    let mut edges = BTreeMap::new();
    let mut lines = Vec::new();
    for (path, (p, text, file)) in &parsed {
        if is_test(path) {
            continue;
        }
        let production = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
        lines.push((file.clone(), production.lines().count()));
        let mut deps = BTreeSet::new();
        for found in &p.found {
            let absolute: Option<Vec<String>> = match found[0].as_str() {
                "crate" => Some(found[1..].to_vec()),
                "super" => {
                    let ups = found.iter().take_while(|s| *s == "super").count();
                    // A file's own items are `self`; `super` is its parent.
                    (ups <= path.len()).then(|| {
                        let mut a = path[..path.len() - ups].to_vec();
                        a.extend(found[ups..].iter().cloned());
                        a
                    })
                }
                "self" => Some(path.iter().chain(&found[1..]).cloned().collect()),
                first if p.children.iter().any(|c| c == first) => {
                    Some(path.iter().chain(found.iter()).cloned().collect())
                }
                _ => None,
            };
            if let Some(target) = absolute.as_deref().and_then(resolve) {
                if &target != path && !is_test(&target) && !target.is_empty() {
                    deps.insert(target);
                }
            }
        }
        edges.insert(path.clone(), deps);
    }
    Graph { edges, lines }
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(edges: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<ModPath>> {
    struct Tarjan<'a> {
        edges: &'a BTreeMap<ModPath, BTreeSet<ModPath>>,
        index: BTreeMap<&'a ModPath, usize>,
        low: BTreeMap<&'a ModPath, usize>,
        stack: Vec<&'a ModPath>,
        on_stack: BTreeSet<&'a ModPath>,
        found: Vec<Vec<ModPath>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a ModPath) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.edges.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let l = self.low[v].min(self.low[w]);
                    self.low.insert(v, l);
                } else if self.on_stack.contains(w) {
                    let l = self.low[v].min(self.index[w]);
                    self.low.insert(v, l);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                loop {
                    let w = self.stack.pop().expect("v is on the stack");
                    self.on_stack.remove(w);
                    component.push(w.clone());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    t.found
}

fn name(m: &ModPath) -> String {
    m.join("::")
}

#[test]
fn modules_import_only_from_layers_below() {
    let g = graph();
    let found = cycles(&g.edges);
    let report: Vec<String> = found
        .iter()
        .map(|c| {
            let members: BTreeSet<&ModPath> = c.iter().collect();
            let inner: Vec<String> = c
                .iter()
                .flat_map(|m| {
                    g.edges[m]
                        .iter()
                        .filter(|d| members.contains(d))
                        .map(move |d| format!("{} -> {}", name(m), name(d)))
                })
                .collect();
            format!("cycle of {} modules:\n  {}", c.len(), inner.join("\n  "))
        })
        .collect();
    assert!(report.is_empty(), "{}", report.join("\n"));
}

#[test]
fn the_graph_sees_the_layers_it_checks() {
    // Guards the check itself: it must find the edges that do exist.
    let g = graph();
    let deps = |m: &str| {
        let key: ModPath = m.split("::").map(String::from).collect();
        g.edges.get(&key).cloned().unwrap_or_default()
    };
    let path = |m: &str| -> ModPath { m.split("::").map(String::from).collect() };
    assert!(
        deps("rules").contains(&path("lineproto")),
        "{:?}",
        deps("rules")
    );
    assert!(deps("api").contains(&path("control")), "{:?}", deps("api"));
    assert!(deps("sink::worker").contains(&path("sink::handle")));
    assert!(g.edges.len() > 40, "{} modules", g.edges.len());
    assert!(
        cycles(&BTreeMap::from([
            (path("a"), BTreeSet::from([path("b")])),
            (path("b"), BTreeSet::from([path("a")])),
        ]))
        .len()
            == 1
    );
}

#[test]
fn no_production_file_is_too_long_to_read() {
    let long: Vec<String> = graph()
        .lines
        .into_iter()
        .filter(|(_, n)| *n > MAX_LINES)
        .map(|(f, n)| format!("{}: {n} lines", f.display()))
        .collect();
    assert!(
        long.is_empty(),
        "over {MAX_LINES} lines:\n{}",
        long.join("\n")
    );
}
