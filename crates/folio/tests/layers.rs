//! Layers only point down: no import cycle between the modules of a crate, and no source file
//! longer than 600 lines without a stated reason. This test reads every `.rs` file under
//! `crates/*/src` of the workspace (the sources, not the compiled crates), prints the module
//! graph it found, and fails with a list of what breaks the rules. Run it on its own with
//! `cargo test -p folio --test layers -- --nocapture`.
//!
//! # The graph
//! Each crate root (`src/lib.rs`, `src/main.rs`, `src/bin/*.rs`) is followed through its `mod`
//! declarations (with `#[path]`; inline `mod x { .. }` blocks are modules of their file) to get
//! the module tree and the file of every module. An *edge* goes from a file to each module its
//! code names: `use` trees, and every other path that starts with `crate::`, `$crate::`,
//! `super::`, `self::` or the name of a child module. A path is resolved to the deepest module
//! that exists (`crate::backend::uring::BATCH_RINGS_MAX` names `backend::uring`); if the item it
//! names was brought into that module by a `use` (a re-export such as the crate root's
//! `pub use cache::PageCache`, or a private `use` that children reach through `super::`), the
//! edge goes to where that `use` leads. A glob (`use super::*`) names the module itself. Comments,
//! strings and doc links are not edges. Other crates (`folio::`, `std::`) are left out: Cargo
//! already forbids a cycle between crates.
//!
//! # What a node is, and what a cycle is
//! Cycles are looked for at each level of the tree, among the parts of one module:
//! - in a crate, each top-level module with everything under it is one node (`cache/` is one
//!   node, `index.rs` another), as is the crate root file;
//! - in a folder module below the top level (`backend/`, `backend/uring/`), the folder's own
//!   files (its `mod.rs` and the child files that have no children of their own) are one node,
//!   and each child folder is a node. So the files of one folder, which are parts of one thing
//!   split by concern and reach each other through `super::` (`engine/*.rs`), never form a cycle
//!   among themselves, while two folders, or a file and a folder, can.
//!
//! A cycle is a set of nodes at one level that reach each other along edges. The file that
//! declares a level's modules (the crate root for the crate, a folder's `mod.rs` for the
//! folder) is its face: its own uses of what it declares (`mod`, `pub use`, a constructor that
//! picks a child) are the tree, not a dependency, so they are not counted at that level. Every
//! other edge is: `index.rs` naming `crate::cache::x` while `cache/` names `crate::index` is a
//! cycle of the crate; so is `backend/file.rs` naming `super::uring` while `backend/uring/`
//! names `super::file`.
//!
//! # Exceptions
//! [`KNOWN_CYCLE_EDGES`] and [`KNOWN_LONG_FILES`] list what is known to break a rule today,
//! each with its reason and owner. The test fails on anything else, and also when a listed
//! exception no longer occurs, so that the list only ever shrinks. A file over 600 lines may
//! instead say why in its module docs, on a line of its own: `//! size: <the reason>`.
//!
//! The analysis is a small lexer and resolver written for this test (no `syn`: the rules need
//! paths, `use` trees and `mod` items only); `the_checker_finds_what_it_must` runs it on a
//! made-up workspace with every kind of cycle and size breach, so a checker that finds nothing
//! fails too.

#[path = "layers/graph.rs"]
mod graph;
#[path = "layers/source.rs"]
mod source;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use graph::{build_tree, cycles, levels, rel, workspace_root, Tree};

/// Lines a source file may have without a `//! size:` reason.
const LINES_MAX: usize = 600;

/// A known cycle edge: at level `level` of crate `krate` (`""` for the crate level, else the
/// folder module, as `backend::uring`), node `from` names node `to`. Cycles that need this edge
/// are reported as known rather than failing.
struct KnownEdge {
    krate: &'static str,
    level: &'static str,
    from: &'static str,
    to: &'static str,
    why: &'static str,
}

const KNOWN_CYCLE_EDGES: &[KnownEdge] = &[];

/// A file over [`LINES_MAX`] lines whose split is known to be pending, with its owner.
struct KnownLong {
    path: &'static str,
    why: &'static str,
}

const KNOWN_LONG_FILES: &[KnownLong] = &[];

/// What the check found in one workspace.
#[derive(Default)]
struct Findings {
    report: String,
    failures: Vec<String>,
    /// Known exceptions that matched something (indexes into the known lists).
    known_edges_used: BTreeSet<usize>,
    known_long_used: BTreeSet<usize>,
}

fn check(crates_dir: &Path, known_edges: &[KnownEdge], known_long: &[KnownLong]) -> Findings {
    let mut f = Findings::default();
    let mut reached = BTreeSet::new();
    let mut all_files = BTreeSet::new();
    let mut crate_dirs: Vec<PathBuf> = std::fs::read_dir(crates_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("src").is_dir())
        .collect();
    crate_dirs.sort();
    for dir in &crate_dirs {
        let krate = dir.file_name().unwrap().to_string_lossy().to_string();
        let src = dir.join("src");
        collect_rs(&src, &mut all_files);
        let mut roots = vec![src.join("lib.rs"), src.join("main.rs")];
        if let Ok(bins) = std::fs::read_dir(src.join("bin")) {
            for b in bins.map(|e| e.unwrap().path()) {
                roots.push(if b.is_dir() { b.join("main.rs") } else { b });
            }
        }
        for root in roots.into_iter().filter(|r| r.exists()) {
            let tree = build_tree(format!("{krate} ({})", rel(&root)), &src, &root);
            reached.extend(tree.modules.values().map(|m| m.file.clone()));
            check_tree(&krate, &tree, known_edges, &mut f);
        }
    }
    for file in &all_files {
        if !reached.contains(file) {
            f.failures.push(format!(
                "{}: no crate root reaches this file through `mod`",
                rel(file)
            ));
        }
        check_size(file, known_long, &mut f);
    }
    for (i, k) in known_edges.iter().enumerate() {
        if !f.known_edges_used.contains(&i) {
            f.failures.push(format!(
                "known cycle edge {} -> {} (crate {}, level {}) no longer closes a cycle: \
                 remove it from KNOWN_CYCLE_EDGES",
                k.from,
                k.to,
                k.krate,
                if k.level.is_empty() { "crate" } else { k.level }
            ));
        }
    }
    for (i, k) in known_long.iter().enumerate() {
        if !f.known_long_used.contains(&i) {
            f.failures.push(format!(
                "{} is no longer over {LINES_MAX} lines without a reason: remove it from \
                 KNOWN_LONG_FILES",
                k.path
            ));
        }
    }
    f
}

fn check_tree(krate: &str, tree: &Tree, known: &[KnownEdge], f: &mut Findings) {
    let r = &mut f.report;
    let files = tree.modules.values().filter(|m| !m.inline).count();
    let _ = writeln!(r, "\n{}: {files} module files", tree.name);
    for level in levels(tree) {
        let mut by_node: BTreeMap<&String, Vec<&String>> = BTreeMap::new();
        for (a, b) in level.edges.keys() {
            by_node.entry(a).or_default().push(b);
        }
        let title = if level.name.is_empty() {
            "crate".to_string()
        } else {
            level.name.clone()
        };
        if !by_node.is_empty() {
            let _ = writeln!(r, "  level {title}:");
        }
        for (a, bs) in &by_node {
            let bs: Vec<&str> = bs.iter().map(|s| s.as_str()).collect();
            let _ = writeln!(r, "    {a} -> {}", bs.join(", "));
        }
        let all: BTreeSet<(String, String)> = level.edges.keys().cloned().collect();
        let is_known = |(a, b): &(String, String)| {
            known
                .iter()
                .position(|k| k.krate == krate && k.level == level.name && k.from == a && k.to == b)
        };
        let without_known: BTreeSet<(String, String)> = all
            .iter()
            .filter(|e| is_known(e).is_none())
            .cloned()
            .collect();
        let remaining = cycles(&without_known);
        for scc in cycles(&all) {
            let inside: Vec<&(String, String)> = all
                .iter()
                .filter(|(a, b)| scc.contains(a) && scc.contains(b))
                .collect();
            let broken = !remaining.iter().any(|s| s.is_subset(&scc));
            let names: Vec<&str> = scc.iter().map(|s| s.as_str()).collect();
            let verdict = if broken { "KNOWN" } else { "CYCLE" };
            let mut text = format!(
                "{verdict} in {} at level {title}: {}\n",
                tree.name,
                names.join(" <-> ")
            );
            for e in inside {
                let k = is_known(e);
                let _ = writeln!(
                    text,
                    "      {} -> {}{}: {}",
                    e.0,
                    e.1,
                    k.map_or(String::new(), |k| format!(" (known: {})", known[k].why)),
                    level.edges[e].join("; ")
                );
                if let Some(k) = k {
                    f.known_edges_used.insert(k);
                }
            }
            let _ = write!(r, "  {text}");
            if !broken {
                f.failures.push(text);
            }
        }
    }
}

fn collect_rs(dir: &Path, out: &mut BTreeSet<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect_rs(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.insert(p);
        }
    }
}

fn check_size(file: &Path, known: &[KnownLong], f: &mut Findings) {
    let text = std::fs::read_to_string(file).unwrap();
    let lines = text.lines().count();
    if lines <= LINES_MAX {
        return;
    }
    let reason = text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("//! size:"))
        .find(|r| r.split_whitespace().count() >= 3);
    let path = rel(file);
    let listed = known.iter().position(|k| path.ends_with(k.path));
    let _ = match (reason, listed) {
        (Some(why), _) => writeln!(f.report, "long file {path}: {lines} lines; size:{why}"),
        (None, Some(k)) => {
            f.known_long_used.insert(k);
            writeln!(
                f.report,
                "KNOWN long file {path}: {lines} lines; {}",
                known[k].why
            )
        }
        (None, None) => {
            f.failures.push(format!(
                "{path}: {lines} lines (more than {LINES_MAX}) and no `//! size: <reason>` line"
            ));
            Ok(())
        }
    };
}

#[test]
fn layers_point_down_and_files_stay_short() {
    let f = check(
        &workspace_root().join("crates"),
        KNOWN_CYCLE_EDGES,
        KNOWN_LONG_FILES,
    );
    println!("{}", f.report);
    assert!(
        f.failures.is_empty(),
        "{} layering failures:\n{}",
        f.failures.len(),
        f.failures.join("\n")
    );
}

/// Writes `files` (path, text) under `dir`.
fn write_tree(dir: &Path, files: &[(&str, String)]) {
    for (path, text) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

/// The checker on a made-up workspace with one of each thing it must find, and things it must
/// not mistake for them (a folder's face using its parts, paths in comments and strings).
#[test]
fn the_checker_finds_what_it_must() {
    let dir = tempfile::tempdir().unwrap();
    let crates = dir.path().join("crates");
    let long = |head: &str| format!("{head}\n{}", "// filler\n".repeat(LINES_MAX));
    write_tree(
        &crates,
        &[
            // Crate a: x <-> y through the root's re-export and `super::`.
            (
                "a/src/lib.rs",
                "pub mod x;\npub mod y;\nmod z;\npub mod f;\npub mod g;\npub use y::Thing;\n"
                    .into(),
            ),
            ("a/src/x.rs", "use crate::Thing;\npub struct X;\n".into()),
            (
                "a/src/y.rs",
                long("//! size: made long on purpose, with its reason\npub struct Thing;\nfn f() { let _ = super::x::X; }"),
            ),
            // Paths in comments, strings and char literals are not edges; too long, no reason.
            (
                "a/src/z.rs",
                long("// use crate::x::X;\n/* crate::y::Thing */\nconst S: &str = \"crate::x::X\";\nfn t() { let _c = '\\''; let _l: &'static str = r#\"crate::y\"#; }"),
            ),
            // Folder f: its own files (mod.rs, leaf.rs) <-> its child folder sub.
            ("a/src/f/mod.rs", "mod leaf;\npub mod sub;\npub use sub::S;\n".into()),
            ("a/src/f/leaf.rs", "use super::sub::S;\npub struct L;\n".into()),
            ("a/src/f/sub/mod.rs", "mod part;\npub struct S;\nuse super::leaf::L;\n".into()),
            ("a/src/f/sub/part.rs", "pub struct P;\n".into()),
            // Folder g: the face uses its part, the part uses the face: no cycle.
            ("a/src/g/mod.rs", "pub mod h;\npub use h::H;\npub struct G;\n".into()),
            ("a/src/g/h/mod.rs", "mod k;\nuse super::G;\npub struct H;\n".into()),
            ("a/src/g/h/k.rs", "pub struct K;\n".into()),
            ("a/src/orphan.rs", "pub struct O;\n".into()),
            // Crate b: p <-> q, known.
            ("b/src/main.rs", "mod p;\nmod q;\nfn main() {}\n".into()),
            ("b/src/p.rs", "use crate::q::Q;\npub struct P;\n".into()),
            ("b/src/q.rs", "pub struct Q;\nfn f(_: crate::p::P) {}\n".into()),
        ],
    );
    let known_edges = [
        KnownEdge {
            krate: "b",
            level: "",
            from: "q",
            to: "p",
            why: "planted",
        },
        KnownEdge {
            krate: "a",
            level: "",
            from: "g",
            to: "x",
            why: "stale",
        },
    ];
    let known_long = [KnownLong {
        path: "a/src/x.rs",
        why: "stale",
    }];
    let f = check(&crates, &known_edges, &known_long);
    println!("{}\n{}", f.report, f.failures.join("\n"));
    let failed = |what: &[&str]| {
        f.failures
            .iter()
            .filter(|x| what.iter().all(|w| x.contains(w)))
            .count()
    };
    assert_eq!(failed(&["CYCLE in a (", "level crate", "x <-> y"]), 1);
    assert_eq!(
        failed(&["CYCLE in a (", "level f:", "f (own files) <-> f::sub"]),
        1
    );
    assert_eq!(failed(&["z.rs", "no `//! size:"]), 1);
    assert_eq!(failed(&["orphan.rs", "no crate root reaches"]), 1);
    assert_eq!(failed(&["g -> x", "no longer closes a cycle"]), 1);
    assert_eq!(failed(&["a/src/x.rs", "KNOWN_LONG_FILES"]), 1);
    assert_eq!(f.failures.len(), 6, "exactly the planted failures");
    assert!(f.report.contains("KNOWN in b ("), "{}", f.report);
    assert!(f.report.contains("long file") && f.report.contains("made long on purpose"));
    assert!(
        !f.report.contains("    z ->"),
        "comments and strings are not edges"
    );
    assert!(
        f.report.contains("g::h -> g (own files)") && !f.report.contains("level g:\n    g (own")
    );
}
