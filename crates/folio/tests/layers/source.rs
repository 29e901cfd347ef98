//! Reading one source file: a lexer (identifiers, `::`, punctuation and string literals;
//! comments, chars, lifetimes and numbers dropped) and a parser of what the layering rules need:
//! `mod` items (with `#[path]`), `use` trees and other paths, each in its inline-module scope.

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    PathSep,
    Punct(char),
    Str(String),
}

pub(crate) fn lex(src: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = src.chars().collect();
    let (mut i, mut line, mut out) = (0, 1, Vec::new());
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += usize::from(c[i] == '\n');
                    i += 1;
                }
            }
        } else if ch == '"' {
            let (s, next, lines) = string(&c, i + 1, 0, false);
            out.push((Tok::Str(s), line));
            line += lines;
            i = next;
        } else if ch == '\'' {
            // A char literal ('a', '\n', '\u{1F600}') or a lifetime or label ('a).
            if at(i + 1) == '\\' {
                i += 3;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                i += 1;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
            }
        } else if ch.is_ascii_digit() {
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let hashes = c[i..].iter().take_while(|&&h| h == '#').count();
            let raw = matches!(word.as_str(), "r" | "br" | "cr");
            if raw && at(i + hashes) == '"' {
                let (s, next, lines) = string(&c, i + hashes + 1, hashes, true);
                out.push((Tok::Str(s), line));
                line += lines;
                i = next;
            } else if matches!(word.as_str(), "b" | "c") && at(i) == '"' {
                let (s, next, lines) = string(&c, i + 1, 0, false);
                out.push((Tok::Str(s), line));
                line += lines;
                i = next;
            } else if word == "b" && at(i) == '\'' {
                i += if at(i + 1) == '\\' { 4 } else { 3 };
                while i < c.len() && c[i - 1] != '\'' {
                    i += 1;
                }
            } else if word == "r" && hashes == 1 {
                // A raw identifier: r#type.
                let start = i + 1;
                i = start;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
                out.push((Tok::Ident(c[start..i].iter().collect()), line));
            } else {
                out.push((Tok::Ident(word), line));
            }
        } else if ch == ':' && at(i + 1) == ':' {
            out.push((Tok::PathSep, line));
            i += 2;
        } else {
            out.push((Tok::Punct(ch), line));
            i += 1;
        }
    }
    out
}

/// The string starting at `i` (after its opening quote), closed by `"` and `hashes` `#`s, with
/// escapes unless `raw`: its text, the index after it, and the newlines in it.
pub(crate) fn string(c: &[char], mut i: usize, hashes: usize, raw: bool) -> (String, usize, usize) {
    let (mut s, mut lines) = (String::new(), 0);
    while i < c.len() {
        let ch = c[i];
        if ch == '"'
            && c[i + 1..]
                .iter()
                .take(hashes)
                .filter(|&&h| h == '#')
                .count()
                == hashes
        {
            return (s, i + 1 + hashes, lines);
        }
        if ch == '\\' && !raw {
            i += 1;
        }
        lines += usize::from(c.get(i) == Some(&'\n'));
        if let Some(&ch) = c.get(i) {
            s.push(ch);
        }
        i += 1;
    }
    (s, i, lines)
}

#[derive(Debug)]
pub(crate) struct ModItem {
    pub(crate) scope: Vec<String>,
    pub(crate) name: String,
    pub(crate) inline: bool,
    pub(crate) path_attr: Option<String>,
}

#[derive(Debug)]
pub(crate) struct PathRef {
    pub(crate) scope: Vec<String>,
    pub(crate) segs: Vec<String>,
    /// For a `use`: the name it binds (`None` for a glob). `None` for other paths too.
    pub(crate) binds: Option<String>,
    pub(crate) is_use: bool,
    pub(crate) line: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Syntax {
    pub(crate) mods: Vec<ModItem>,
    pub(crate) paths: Vec<PathRef>,
}

pub(crate) fn parse(src: &str) -> Syntax {
    let toks = lex(src);
    let ident = |i: usize| match toks.get(i) {
        Some((Tok::Ident(s), _)) => Some(s.as_str()),
        _ => None,
    };
    let is = |i: usize, t: Tok| toks.get(i).map(|x| &x.0) == Some(&t);
    let mut syn = Syntax::default();
    let (mut depth, mut scopes) = (0usize, Vec::<(String, usize)>::new());
    let mut pending_inline: Option<String> = None;
    let mut path_attr: Option<String> = None;
    let mut i = 0;
    let scope = |scopes: &Vec<(String, usize)>| scopes.iter().map(|s| s.0.clone()).collect();
    while i < toks.len() {
        let line = toks[i].1;
        match &toks[i].0 {
            Tok::Punct('#') => {
                // An attribute: skipped, but `#[path = "..."]` is kept for the next `mod`.
                let mut j = i + 1 + usize::from(is(i + 1, Tok::Punct('!')));
                if is(j, Tok::Punct('[')) {
                    if ident(j + 1) == Some("path") && is(j + 2, Tok::Punct('=')) {
                        if let Some((Tok::Str(p), _)) = toks.get(j + 3) {
                            path_attr = Some(p.clone());
                        }
                    }
                    let mut nest = 0;
                    while j < toks.len() {
                        match toks[j].0 {
                            Tok::Punct('[') => nest += 1,
                            Tok::Punct(']') => nest -= 1,
                            _ => {}
                        }
                        j += 1;
                        if nest == 0 {
                            break;
                        }
                    }
                    i = j;
                    continue;
                }
            }
            Tok::Punct('{') => {
                depth += 1;
                if let Some(name) = pending_inline.take() {
                    scopes.push((name, depth));
                }
            }
            Tok::Punct('}') => {
                if scopes.last().is_some_and(|s| s.1 == depth) {
                    scopes.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Tok::Ident(w) if w == "mod" && !is(i.wrapping_sub(1), Tok::PathSep) => {
                if let Some(name) = ident(i + 1) {
                    let inline = is(i + 2, Tok::Punct('{'));
                    syn.mods.push(ModItem {
                        scope: scope(&scopes),
                        name: name.to_string(),
                        inline,
                        path_attr: path_attr.take(),
                    });
                    if inline {
                        pending_inline = Some(name.to_string());
                    }
                    i += 2;
                    continue;
                }
            }
            Tok::Ident(w) if w == "use" => {
                let mut j = i + 1;
                if !is(j, Tok::PathSep) {
                    let mut found = Vec::new();
                    use_tree(&toks, &mut j, Vec::new(), &mut found);
                    for (segs, binds) in found {
                        syn.paths.push(PathRef {
                            scope: scope(&scopes),
                            segs,
                            binds,
                            is_use: true,
                            line,
                        });
                    }
                }
                while j < toks.len() && !is(j, Tok::Punct(';')) {
                    j += 1;
                }
                i = j + 1;
                continue;
            }
            Tok::Ident(first)
                if is(i + 1, Tok::PathSep) && !is(i.wrapping_sub(1), Tok::PathSep) =>
            {
                let mut segs = vec![first.clone()];
                let mut j = i + 1;
                while is(j, Tok::PathSep) {
                    match ident(j + 1) {
                        Some(s) => segs.push(s.to_string()),
                        None => break,
                    }
                    j += 2;
                }
                syn.paths.push(PathRef {
                    scope: scope(&scopes),
                    segs,
                    binds: None,
                    is_use: false,
                    line,
                });
                i = j;
                continue;
            }
            Tok::Punct(';') => path_attr = None,
            _ => {}
        }
        i += 1;
    }
    syn
}

/// Expands the `use` tree at `*i` under `prefix` into (path, name bound or `None` for a glob).
pub(crate) fn use_tree(
    toks: &[(Tok, usize)],
    i: &mut usize,
    mut prefix: Vec<String>,
    out: &mut Vec<(Vec<String>, Option<String>)>,
) {
    // Bounded: each round consumes a token.
    while *i < toks.len() {
        match &toks[*i].0 {
            Tok::Ident(seg) => {
                *i += 1;
                if toks.get(*i).map(|t| &t.0) == Some(&Tok::PathSep) {
                    prefix.push(seg.clone());
                    *i += 1;
                    continue;
                }
                let (path, mut name) = if seg == "self" {
                    (prefix.clone(), prefix.last().cloned().unwrap_or_default())
                } else {
                    let mut p = prefix.clone();
                    p.push(seg.clone());
                    (p, seg.clone())
                };
                if let (Some((Tok::Ident(kw), _)), Some((Tok::Ident(alias), _))) =
                    (toks.get(*i), toks.get(*i + 1))
                {
                    if kw == "as" {
                        name = alias.clone();
                        *i += 2;
                    }
                }
                out.push((path, Some(name)));
                return;
            }
            Tok::Punct('*') => {
                *i += 1;
                out.push((prefix, None));
                return;
            }
            Tok::Punct('{') => {
                *i += 1;
                while *i < toks.len() && toks[*i].0 != Tok::Punct('}') {
                    let before = *i;
                    use_tree(toks, i, prefix.clone(), out);
                    if toks.get(*i).map(|t| &t.0) == Some(&Tok::Punct(',')) {
                        *i += 1;
                    }
                    if *i == before {
                        *i += 1;
                    }
                }
                *i += 1;
                return;
            }
            _ => return,
        }
    }
}
