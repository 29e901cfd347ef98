//! The module tree of one crate root, paths resolved to modules, the edges between module
//! files, the nodes of each level and the cycles among them (see the docs of `layers.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::source::{parse, Syntax};

pub(crate) type ModPath = Vec<String>;

pub(crate) struct Module {
    /// The file that holds it (an inline module's is its parent's).
    pub(crate) file: PathBuf,
    pub(crate) inline: bool,
    /// Mounted from outside the crate's `src` by `#[path]` (folio-shuttle mounts the library's
    /// files): not parsed here, those files belong to their own crate.
    pub(crate) foreign: bool,
    pub(crate) children: BTreeSet<String>,
}

pub(crate) struct Tree {
    pub(crate) name: String,
    pub(crate) modules: BTreeMap<ModPath, Module>,
    pub(crate) syntax: BTreeMap<PathBuf, Syntax>,
}

pub(crate) fn build_tree(name: String, src_dir: &Path, root: &Path) -> Tree {
    let mut tree = Tree {
        name,
        modules: BTreeMap::new(),
        syntax: BTreeMap::new(),
    };
    let mut todo = vec![(Vec::new(), root.to_path_buf(), true)];
    while let Some((path, file, owns_dir)) = todo.pop() {
        let foreign = !file.starts_with(src_dir);
        tree.modules.insert(
            path.clone(),
            Module {
                file: file.clone(),
                inline: false,
                foreign,
                children: BTreeSet::new(),
            },
        );
        if foreign {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file:?}: {e}"));
        let syn = parse(&text);
        let here = file.parent().unwrap().to_path_buf();
        let child_dir = if owns_dir {
            here.clone()
        } else {
            here.join(file.file_stem().unwrap())
        };
        for m in &syn.mods {
            let mut parent = path.clone();
            parent.extend(m.scope.iter().cloned());
            let mut full = parent.clone();
            full.push(m.name.clone());
            if let Some(p) = tree.modules.get_mut(&parent) {
                p.children.insert(m.name.clone());
            }
            if m.inline {
                tree.modules.insert(
                    full,
                    Module {
                        file: file.clone(),
                        inline: true,
                        foreign: false,
                        children: BTreeSet::new(),
                    },
                );
                continue;
            }
            let dir = m.scope.iter().fold(child_dir.clone(), |d, s| d.join(s));
            let (target, owns) = match &m.path_attr {
                Some(p) => {
                    let base = m.scope.iter().fold(here.clone(), |d, s| d.join(s));
                    // A file loaded through `#[path]` holds its children beside it, as `mod.rs`.
                    (normalize(&base.join(p)), true)
                }
                None if dir.join(format!("{}.rs", m.name)).exists() => {
                    (dir.join(format!("{}.rs", m.name)), false)
                }
                None => (dir.join(&m.name).join("mod.rs"), true),
            };
            assert!(
                target.exists(),
                "{file:?} declares `mod {}`: no {target:?}",
                m.name
            );
            todo.push((full, target, owns));
        }
        tree.syntax.insert(file, syn);
    }
    tree
}

pub(crate) fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

impl Tree {
    /// The module a path in `scope` names, following `use`s it names an item of (at most
    /// `hops` of them); `None` if it names nothing in this crate.
    pub(crate) fn resolve(
        &self,
        scope: &[String],
        segs: &[String],
        hops: usize,
    ) -> Option<ModPath> {
        let (mut cur, rest): (ModPath, &[String]) = match segs.first()?.as_str() {
            "crate" | "$crate" => (Vec::new(), &segs[1..]),
            "self" => (scope.to_vec(), &segs[1..]),
            "super" => {
                let ups = segs.iter().take_while(|s| *s == "super").count();
                let keep = scope.len().checked_sub(ups)?;
                (scope[..keep].to_vec(), &segs[ups..])
            }
            first if self.modules.get(scope)?.children.contains(first) => (scope.to_vec(), segs),
            _ => return None,
        };
        let mut rest = rest.iter();
        let leftover = loop {
            let Some(seg) = rest.next() else {
                break None;
            };
            if self.modules.get(&cur)?.children.contains(seg) {
                cur.push(seg.clone());
            } else {
                break Some(seg);
            }
        };
        // An item brought into `cur` by a `use`: the edge goes where that `use` leads.
        if let (Some(item), Some(h)) = (leftover, hops.checked_sub(1)) {
            let m = self.modules.get(&cur)?;
            if let Some(syn) = self.syntax.get(&m.file) {
                let local = &cur[self.file_module(&cur).len()..];
                let found = syn.paths.iter().find(|p| {
                    p.is_use && p.scope == local && p.binds.as_deref() == Some(item.as_str())
                });
                if let Some(u) = found {
                    if let Some(t) = self.resolve(&cur, &u.segs, h) {
                        return Some(t);
                    }
                }
            }
        }
        Some(cur)
    }

    /// The module whose file holds `m` (itself, unless it is an inline module).
    pub(crate) fn file_module(&self, m: &[String]) -> ModPath {
        let mut m = m.to_vec();
        while self.modules.get(&m).is_some_and(|x| x.inline) {
            m.pop();
        }
        m
    }

    pub(crate) fn is_folder(&self, m: &[String]) -> bool {
        self.modules.get(m).is_some_and(|x| {
            x.children.iter().any(|c| {
                let mut p = m.to_vec();
                p.push(c.clone());
                !self.modules[&p].inline
            })
        })
    }

    /// Edges between file modules: (from, to) → where (file:line `path`), first few.
    pub(crate) fn edges(&self) -> BTreeMap<(ModPath, ModPath), Vec<String>> {
        let mut edges: BTreeMap<(ModPath, ModPath), Vec<String>> = BTreeMap::new();
        for (path, m) in &self.modules {
            if m.inline || m.foreign {
                continue;
            }
            for p in &self.syntax[&m.file].paths {
                let mut scope = path.clone();
                scope.extend(p.scope.iter().cloned());
                let Some(to) = self.resolve(&scope, &p.segs, 8) else {
                    continue;
                };
                let to = self.file_module(&to);
                if &to == path {
                    continue;
                }
                let seen = edges.entry((path.clone(), to)).or_default();
                let at = format!("{}:{}", rel(&m.file), p.line);
                if seen.len() < 3 && !seen.iter().any(|s| s.starts_with(&format!("{at} "))) {
                    seen.push(format!("{at} `{}`", p.segs.join("::")));
                }
            }
        }
        edges
    }
}

pub(crate) fn rel(p: &Path) -> String {
    let root = workspace_root();
    p.strip_prefix(&root).unwrap_or(p).display().to_string()
}

pub(crate) fn workspace_root() -> PathBuf {
    normalize(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

pub(crate) fn show(m: &[String]) -> String {
    if m.is_empty() {
        "crate root".into()
    } else {
        m.join("::")
    }
}

/// One level of one tree: its nodes' edges, with where each comes from.
pub(crate) struct Level {
    /// `""` for the crate level, else the folder module.
    pub(crate) name: String,
    pub(crate) edges: BTreeMap<(String, String), Vec<String>>,
}

/// The node of `m` at the level of folder `d` (`m` lies under `d`).
pub(crate) fn node_at(tree: &Tree, d: &[String], m: &[String]) -> String {
    if m.len() == d.len() && d.is_empty() {
        return show(d);
    }
    if m.len() == d.len() {
        return format!("{} (own files)", show(d));
    }
    let child = m[..d.len() + 1].to_vec();
    if d.is_empty() || tree.is_folder(&child) {
        show(&child)
    } else {
        format!("{} (own files)", show(d))
    }
}

pub(crate) fn levels(tree: &Tree) -> Vec<Level> {
    let edges = tree.edges();
    let folders: Vec<ModPath> = tree
        .modules
        .keys()
        .filter(|m| !tree.modules[*m].foreign && tree.is_folder(m))
        .cloned()
        .collect();
    let mut out = Vec::new();
    for d in folders {
        let mut level = Level {
            name: d.join("::"),
            edges: BTreeMap::new(),
        };
        for ((from, to), why) in &edges {
            // Only edges inside the folder, and not the face's own uses of its parts.
            if !from.starts_with(&d) || !to.starts_with(&d) || *from == d {
                continue;
            }
            let (a, b) = (node_at(tree, &d, from), node_at(tree, &d, to));
            if a != b {
                let seen = level.edges.entry((a, b)).or_default();
                seen.extend(why.iter().take(3 - seen.len().min(3)).cloned());
            }
        }
        out.push(level);
    }
    out
}

/// The strongly connected sets of more than one node (by mutual reachability: levels are small).
pub(crate) fn cycles(edges: &BTreeSet<(String, String)>) -> Vec<BTreeSet<String>> {
    let nodes: BTreeSet<&String> = edges.iter().flat_map(|(a, b)| [a, b]).collect();
    let reach = |from: &String| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(n) = todo.pop() {
            for (_, b) in edges.iter().filter(|(a, _)| *a == n) {
                if seen.insert(b.clone()) {
                    todo.push(b.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&String, BTreeSet<String>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut out: Vec<BTreeSet<String>> = Vec::new();
    for n in &nodes {
        if !reachable[n].contains(*n) || out.iter().any(|s| s.contains(*n)) {
            continue;
        }
        let scc = nodes
            .iter()
            .filter(|m| reachable[n].contains(**m) && reachable[**m].contains(*n))
            .map(|m| (*m).clone())
            .collect();
        out.push(scc);
    }
    out
}
