//! The repository explains itself: every relative link in README.md, CHANGELOG.md and `docs/`
//! reaches a file (inside the repository) and a heading that exist, every doc section a code
//! comment names (`docs/…md#section`) exists, and no tracked file points at a document outside
//! the repository (docs/design.md#development). And the house keeps its rooms small: no source
//! file holds more than 600 lines before its tests, and no function is longer than 80 lines.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The markdown pages whose links are checked, relative to `root`.
fn pages(root: &Path) -> Vec<PathBuf> {
    let mut pages = vec![PathBuf::from("README.md"), PathBuf::from("CHANGELOG.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| p.strip_prefix(root).unwrap().to_path_buf())
        .collect();
    docs.sort();
    assert!(docs.len() >= 7, "docs/ holds its pages: {docs:?}");
    pages.extend(docs);
    pages
}

/// Tracked files, relative to `root`: `git ls-files`, or, where there is no git (a source
/// archive), every file under the repository's own folders and at its top.
fn tracked(root: &Path) -> Vec<PathBuf> {
    let git = std::process::Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output();
    if let Some(out) = git
        .ok()
        .filter(|o| o.status.success() && !o.stdout.is_empty())
    {
        return out
            .stdout
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
            .collect();
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name == "target" || name == ".git" {
            continue;
        }
        walk(&path, &mut files);
    }
    files
        .into_iter()
        .map(|p| p.strip_prefix(root).unwrap().to_path_buf())
        .collect()
}

fn walk(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            walk(&entry.unwrap().path(), out);
        }
    } else {
        out.push(path.to_path_buf());
    }
}

/// GitHub's anchor for a heading: link targets dropped, lower case, letters, digits, `-` and
/// `_` kept, spaces as `-`, everything else left out.
fn slug(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading.trim();
    while let Some(i) = rest.find("](") {
        text.push_str(&rest[..i]);
        rest = rest[i + 2..].split_once(')').map_or("", |(_, after)| after);
    }
    text.push_str(rest);
    text.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The lines of a markdown text outside fenced code blocks, numbered from 1.
fn prose(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            fenced = !fenced;
        } else if !fenced {
            out.push((n + 1, line));
        }
    }
    out
}

/// The anchors a markdown text's headings get, a repeated one numbered as GitHub does.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = BTreeSet::new();
    for (_, line) in prose(text) {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let s = slug(line[hashes..].trim().trim_end_matches('#'));
        let n = seen.entry(s.clone()).or_insert(0);
        out.insert(if *n == 0 {
            s.clone()
        } else {
            format!("{s}-{n}")
        });
        *n += 1;
    }
    out
}

/// The link targets of a markdown text, with their line numbers; inline code left out.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in prose(text) {
        let plain: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, s)| s)
            .collect();
        let mut rest = plain.as_str();
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            let end = rest.find(')').unwrap_or(rest.len());
            out.push((n, rest[..end].trim().to_string()));
            rest = &rest[end..];
        }
    }
    out
}

/// What is wrong with the relative links of `page` (relative to `root`): each as
/// `PAGE:LINE: why`.
fn broken_links(root: &Path, page: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(root.join(page)).unwrap();
    let inside = root.canonicalize().unwrap();
    let mut problems = Vec::new();
    for (n, target) in links(&text) {
        let external = target.split_once(':').is_some_and(|(scheme, _)| {
            !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphabetic())
        });
        if external || target.is_empty() {
            continue;
        }
        let (file, anchor) = target.split_once('#').unwrap_or((&target, ""));
        let path = match file {
            "" => root.join(page),
            f => root.join(page.parent().unwrap()).join(f),
        };
        let at = format!("{}:{n}: `{target}`", page.display());
        match path.canonicalize() {
            Err(_) => problems.push(format!("{at}: no such file")),
            Ok(p) if !p.starts_with(&inside) => {
                problems.push(format!("{at}: outside the repository"))
            }
            Ok(p) if !anchor.is_empty() && p.extension().is_some_and(|e| e == "md") => {
                if !anchors(&std::fs::read_to_string(&p).unwrap()).contains(anchor) {
                    problems.push(format!("{at}: no such heading"));
                }
            }
            Ok(_) => {}
        }
    }
    problems
}

/// The doc pages and sections a text names (`docs/…md`, `docs/…md#section`), with their line
/// numbers.
fn doc_refs(text: &str) -> Vec<(usize, String, String)> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(i) = rest.find("docs/") {
            rest = &rest[i + "docs/".len()..];
            let name_len = rest.find(|c: char| !word(c)).unwrap_or(rest.len());
            let (name, after) = rest.split_at(name_len);
            let Some(after) = after.strip_prefix(".md") else {
                continue;
            };
            let anchor = after
                .strip_prefix('#')
                .map(|a| &a[..a.find(|c: char| !word(c)).unwrap_or(a.len())])
                .unwrap_or("");
            out.push((n + 1, format!("docs/{name}.md"), anchor.to_string()));
            rest = after;
        }
    }
    out
}

/// What is wrong with the doc sections a tracked file's text names.
fn broken_refs(root: &Path, file: &Path, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (n, doc, anchor) in doc_refs(text) {
        let at = format!("{}:{n}: `{doc}#{anchor}`", file.display());
        match std::fs::read_to_string(root.join(&doc)) {
            Err(_) => problems.push(format!("{at}: no such page")),
            Ok(page) if !anchor.is_empty() && !anchors(&page).contains(&anchor) => {
                problems.push(format!("{at}: no such heading"))
            }
            Ok(_) => {}
        }
    }
    problems
}

/// Mentions of documents outside the repository, as `FILE:LINE: what`. The words are put
/// together here so that this file does not name them itself.
fn outside_mentions(file: &Path, text: &str) -> Vec<String> {
    let words = [
        ["SPEC", " §"].concat(),
        ["SPEC", ".md"].concat(),
        ["..", "/shared"].concat(),
    ];
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for w in words.iter().filter(|w| line.contains(w.as_str())) {
            found.push(format!("{}:{}: `{w}`", file.display(), n + 1));
        }
    }
    found
}

#[test]
fn markdown_links_reach_files_and_headings_that_exist() {
    let root = root();
    let problems: Vec<String> = pages(&root)
        .iter()
        .flat_map(|p| broken_links(&root, p))
        .collect();
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

#[test]
fn code_comments_name_doc_sections_that_exist() {
    let root = root();
    let mut problems = Vec::new();
    let mut named = 0;
    for file in tracked(&root) {
        let Ok(text) = std::fs::read_to_string(root.join(&file)) else {
            continue;
        };
        named += doc_refs(&text).len();
        problems.extend(broken_refs(&root, &file, &text));
    }
    assert!(
        named >= 50,
        "the code names its doc sections ({named} found)"
    );
    assert!(
        problems.is_empty(),
        "missing sections:\n{}",
        problems.join("\n")
    );
}

#[test]
fn no_tracked_file_points_outside_the_repository() {
    let root = root();
    let files = tracked(&root);
    assert!(files.len() > 50, "found the tracked files: {}", files.len());
    let found: Vec<String> = files
        .iter()
        .filter_map(|f| Some((f, std::fs::read_to_string(root.join(f)).ok()?)))
        .flat_map(|(f, text)| outside_mentions(f, &text))
        .collect();
    assert!(
        found.is_empty(),
        "outside documents named:\n{}",
        found.join("\n")
    );
}

/// The checks above find what they look for: a broken link, a missing heading, a link out of
/// the repository, a missing doc section and an outside document, in a made-up repository.
#[test]
fn the_checks_find_what_they_look_for() {
    assert_eq!(
        slug("Health, a full disk and the watchdog"),
        "health-a-full-disk-and-the-watchdog"
    );
    assert_eq!(
        slug("`source.cursor` and [pages](x.md#y)"),
        "sourcecursor-and-pages"
    );
    // Pages named through `d`, so that this file names no doc page that does not exist.
    let d = "docs";
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    std::fs::create_dir_all(root.join(d)).unwrap();
    std::fs::write(dir.path().join("outside.md"), "# Out\n").unwrap();
    let page = "# Top\n## Same\n## Same\n\
        [ok](#same-1) [ok](#top) [ok](a.md#same) [web](https://example.com/#x) `[no](#nope)`\n\
        ```\n[fenced](#nope)\n```\n\
        [bad](#same-2) [gone](b.md) [far](../../outside.md) [bad](a.md#nope)\n";
    std::fs::write(root.join(d).join("a.md"), page).unwrap();
    let problems = broken_links(&root, &Path::new(d).join("a.md"));
    let whys: Vec<&str> = problems
        .iter()
        .map(|p| p.rsplit(": ").next().unwrap())
        .collect();
    assert_eq!(
        whys,
        [
            "no such heading",
            "no such file",
            "outside the repository",
            "no such heading"
        ],
        "{problems:?}"
    );
    let code =
        format!("// ok ({d}/a.md#same-1), {d}/a.md and {d}/\n// gone: {d}/a.md#nope, {d}/c.md\n");
    let refs = broken_refs(&root, Path::new("src/x.rs"), &code);
    assert_eq!(refs.len(), 2, "{refs:?}");
    assert!(
        refs[0].starts_with(&format!("src/x.rs:2: `{d}/a.md#nope`")),
        "{refs:?}"
    );
    let mention = format!(
        "see {} §4 and {}\n",
        "SPEC",
        ["..", "/shared/notes.md"].concat()
    );
    assert_eq!(outside_mentions(Path::new("y.rs"), &mention).len(), 2);
}

/// Lines a source file may hold before its tests: a file past it holds more than one job.
const ROOM_LINES: usize = 600;
/// Lines a function may take, from its `fn` to its closing brace: past it, a step wants a name.
const FN_LINES: usize = 80;

/// The lines of a source file before its tests: up to the `#[cfg(test)]` that opens a test
/// module (one on a single item does not count), else all of them.
fn before_tests(text: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .windows(2)
        .position(|w| w[0] == "#[cfg(test)]" && w[1].starts_with("mod "))
        .unwrap_or(lines.len())
}

/// `text` with its comments, string literals and character literals blanked (line breaks
/// kept), so that a brace or `fn` in them is not taken for code.
fn code_only(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, part: &[char]| {
        out.extend(part.iter().map(|&ch| if ch == '\n' { '\n' } else { ' ' }))
    };
    let ident = |i: usize| i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_');
    let mut i = 0;
    while i < c.len() {
        let next = |at: usize| c.get(at).copied().unwrap_or('\0');
        let end = if c[i] == '/' && next(i + 1) == '/' {
            (i..c.len()).find(|&j| c[j] == '\n').unwrap_or(c.len())
        } else if c[i] == '/' && next(i + 1) == '*' {
            // Block comments nest.
            let (mut depth, mut j) = (0, i);
            while j < c.len() {
                match (c[j], next(j + 1)) {
                    ('/', '*') => (depth, j) = (depth + 1, j + 2),
                    ('*', '/') => (depth, j) = (depth - 1, j + 2),
                    _ => j += 1,
                }
                if depth == 0 {
                    break;
                }
            }
            j
        } else if c[i] == 'r' && !ident(i) || (c[i] == 'b' && next(i + 1) == 'r' && !ident(i)) {
            let start = if c[i] == 'b' { i + 2 } else { i + 1 };
            let hashes = (start..c.len()).take_while(|&j| c[j] == '#').count();
            if next(start + hashes) != '"' {
                out.push(c[i]);
                i += 1;
                continue;
            }
            let close: Vec<char> = std::iter::once('"')
                .chain("#".repeat(hashes).chars())
                .collect();
            let from = start + hashes + 1;
            (from..c.len())
                .find(|&j| c[j..].starts_with(&close))
                .map_or(c.len(), |j| j + close.len())
        } else if c[i] == '"' {
            let mut j = i + 1;
            while j < c.len() && c[j] != '"' {
                j += if c[j] == '\\' { 2 } else { 1 };
            }
            j + 1
        } else if c[i] == '\'' && next(i + 1) == '\\' {
            // An escape takes two characters at least (`'\\''`, `'\\u{7f}'`).
            (i + 3..c.len())
                .find(|&j| c[j] == '\'')
                .map_or(c.len(), |j| j + 1)
        } else if c[i] == '\'' && next(i + 2) == '\'' {
            i + 3
        } else {
            out.push(c[i]);
            i += 1;
            continue;
        };
        let end = end.min(c.len());
        blank(&mut out, &c[i..end]);
        i = end;
    }
    out
}

/// Every function in `code` (as [`code_only`] leaves it) longer than `max` lines: its name,
/// the line (from 1) of its `fn`, and its length.
fn long_fns(code: &str, max: usize) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    // Functions open, innermost last: name, first line, the depth of their body.
    let mut open: Vec<(String, usize, usize)> = Vec::new();
    let mut pending: Option<(String, usize)> = None;
    let (mut depth, mut parens) = (0usize, 0usize);
    for (n, line) in code.lines().enumerate() {
        let words: Vec<&str> = line
            .split(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
            .filter(|w| !w.is_empty())
            .collect();
        if let Some(i) = words.iter().position(|w| *w == "fn") {
            let follows = line
                .split("fn")
                .skip(1)
                .any(|rest| rest.starts_with(char::is_whitespace));
            if let (true, Some(name)) = (follows, words.get(i + 1)) {
                pending = Some((name.to_string(), n + 1));
            }
        }
        for ch in line.chars() {
            match ch {
                '(' | '[' => parens += 1,
                ')' | ']' => parens = parens.saturating_sub(1),
                ';' if parens == 0 => pending = None,
                '{' => {
                    depth += 1;
                    if let Some((name, first)) = pending.take() {
                        open.push((name, first, depth));
                    }
                }
                '}' => {
                    if open.last().is_some_and(|f| f.2 == depth) {
                        let (name, first, _) = open.pop().unwrap_or_default();
                        let len = n + 1 - first + 1;
                        if len > max {
                            out.push((name, first, len));
                        }
                    }
                    depth = depth.saturating_sub(1);
                }
                _ => {}
            }
        }
    }
    out
}

/// What is too big in the source files under `dir`: files past [`ROOM_LINES`] before their
/// tests, functions past [`FN_LINES`].
fn oversized(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    walk(dir, &mut files);
    files.retain(|p| p.extension().is_some_and(|e| e == "rs"));
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file
            .strip_prefix(dir.parent().unwrap_or(dir))
            .unwrap_or(&file);
        let lines = before_tests(&text);
        if lines > ROOM_LINES {
            out.push(format!(
                "{}: {lines} lines before its tests",
                name.display()
            ));
        }
        let head: Vec<&str> = text.lines().take(lines).collect();
        for (f, first, len) in long_fns(&code_only(&head.join("\n")), FN_LINES) {
            out.push(format!("{}:{first}: fn {f} is {len} lines", name.display()));
        }
    }
    out
}

#[test]
fn source_files_hold_one_room_each_and_functions_stay_short() {
    let problems = oversized(&root().join("src"));
    assert!(
        problems.is_empty(),
        "at most {ROOM_LINES} lines before the tests and {FN_LINES} a function:\n{}",
        problems.join("\n")
    );
}

/// The size checks count what they should: braces and `fn` in strings, characters and
/// comments are not code, a test module's lines are not counted, one line too many is seen.
#[test]
fn the_size_checks_count_what_they_should() {
    let body = |n: usize| "    x();\n".repeat(n);
    let text = format!(
        "/// fn doc {{\nfn short() {{\n{}}}\n\nfn long(a: [u8; 2]) -> u8 {{\n    let s = \"}} fn x {{\";\n    let c = ('{{', '\\'', '\\u{{7d}}');\n    let r = r#\"}}\"#; // }} {{\n    /* {{ /* }} */ {{ */\n{}    {{ 1 }}\n}}\n#[cfg(test)]\nmod tests {{\n    fn in_tests() {{\n{}    }}\n}}\n",
        body(FN_LINES - 2),
        body(FN_LINES - 6),
        body(FN_LINES),
    );
    let code = code_only(&text);
    assert_eq!(
        code.lines().count(),
        text.lines().count(),
        "line breaks kept"
    );
    assert!(!code.contains("doc") && !code.contains("fn x"), "{code}");
    let lines = before_tests(&text);
    assert_eq!(text.lines().nth(lines), Some("#[cfg(test)]"));
    let head: Vec<&str> = text.lines().take(lines).collect();
    let long = long_fns(&code_only(&head.join("\n")), FN_LINES);
    assert_eq!(
        long,
        [("long".to_string(), FN_LINES + 3, FN_LINES + 1)],
        "{code}"
    );
    // The test module's function is as long, and counted only when the tests are.
    assert_eq!(long_fns(&code, FN_LINES).len(), 2);
    assert_eq!(before_tests("fn a() {}\n#[cfg(test)]\nfn b() {}\n"), 3);
    // A tree with one file too long and one function too long says both.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("a/big.rs"), "// x\n".repeat(ROOM_LINES + 1)).unwrap();
    std::fs::write(src.join("fine.rs"), "// x\n".repeat(ROOM_LINES)).unwrap();
    std::fs::write(src.join("f.rs"), &text).unwrap();
    let found = oversized(&src);
    assert_eq!(
        found,
        [
            format!("src/a/big.rs: {} lines before its tests", ROOM_LINES + 1),
            format!(
                "src/f.rs:{}: fn long is {} lines",
                FN_LINES + 3,
                FN_LINES + 1
            ),
        ],
        "{found:?}"
    );
}
