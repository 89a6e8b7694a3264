//! The book's code blocks, checked against the real compiler.
//!
//! Every fenced block in `book/src/**/*.md` whose info string starts with
//! `topo` is a topology, and its info string says what it must do:
//!
//! | info string           | the block must                                           |
//! |-----------------------|----------------------------------------------------------|
//! | `topo`                | compile with no errors (warnings allowed)                |
//! | `topo,error=E0203`    | give diagnostic E0203, and no error with another code    |
//! | `topo,warning=W0002`  | compile with no errors and give warning W0002            |
//! | `topo,fragment`       | nothing: a piece of a topology, shown but not compiled   |
//!
//! Fragments are counted and must stay few (see [`MAX_FRAGMENT_SHARE`]).
//!
//! A block `text,output=check` or `text,output=explain` shows what a command
//! prints. Its first line is the command (`$ statflow check NAME`,
//! `$ statflow check NAME --format json` or `$ statflow explain NAME`); NAME
//! is read from the repository when such a file exists there, and is
//! otherwise the closest `topo` block above it on the same page. The rest of
//! the block must be what statflow prints, so the book never shows stale
//! output. The last line of human `check` output, the `1 file: ...` summary,
//! is printed by the command line rather than the language crate, so only
//! the counts it gives are checked.
//!
//! The diagnostics index must show every code of the catalog, and links
//! between pages must point at pages and headings that exist.
//!
//! Only `statflow_dsl` is used (with `serde_json` to print diagnostics as
//! `--format json` does): the blocks are compiled in-process, exactly as
//! `statflow check` compiles a file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use statflow_dsl::{Diagnostic, DiagnosticJson};

/// At most this share of the `topo` blocks may be fragments.
const MAX_FRAGMENT_SHARE: f64 = 0.1;

/// The languages a code block in the book may be written in. Anything else
/// is most likely a misspelt `topo`, which would silently go untested.
const LANGUAGES: [&str; 8] = [
    "topo", "text", "console", "sh", "json", "clojure", "toml", "rust",
];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One fenced code block.
#[derive(Debug, Clone, PartialEq)]
struct Block {
    /// The page, relative to the repository root.
    file: String,
    /// 1-based line of the opening fence.
    line: usize,
    /// The first word of the info string.
    language: String,
    /// The rest of the info string, split at commas and spaces.
    attributes: Vec<String>,
    /// The lines between the fences, with the fence's indentation removed.
    text: String,
}

/// What a `topo` block must do.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    Clean,
    Error(String),
    Warning(String),
    Fragment,
}

impl Block {
    fn at(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    /// What a `topo` block is marked to do, or why its marking is wrong.
    fn expect(&self) -> Result<Expect, String> {
        let mut expect = Expect::Clean;
        for attribute in &self.attributes {
            let next = match attribute.split_once('=') {
                None if attribute == "fragment" => Expect::Fragment,
                Some(("error", code)) if is_code(code, 'E') => Expect::Error(code.to_string()),
                Some(("warning", code)) if is_code(code, 'W') => Expect::Warning(code.to_string()),
                _ => {
                    return Err(format!(
                        "unknown attribute `{attribute}`: write `topo`, `topo,error=E0000`, \
                         `topo,warning=W0000` or `topo,fragment`"
                    ))
                }
            };
            if expect != Expect::Clean {
                return Err(
                    "a topo block takes at most one of error=, warning= and fragment".into(),
                );
            }
            expect = next;
        }
        Ok(expect)
    }

    /// The value of `key=` among the attributes.
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find_map(|a| a.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
    }
}

fn is_code(code: &str, letter: char) -> bool {
    code.len() == 5 && code.starts_with(letter) && code[1..].bytes().all(|b| b.is_ascii_digit())
}

/// The fenced code blocks of one Markdown page, in order. `file` is only
/// used to say where a block is. An unclosed fence is an error, since it
/// swallows the rest of the page.
fn extract(file: &str, markdown: &str) -> Result<Vec<Block>, String> {
    struct Open {
        line: usize,
        indent: usize,
        fence_char: char,
        fence_len: usize,
        info: String,
        lines: Vec<String>,
    }
    let mut blocks = Vec::new();
    let mut open: Option<Open> = None;
    for (index, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start_matches(' ');
        let indent = line.len() - trimmed.len();
        let fence_char = trimmed.chars().next().filter(|c| *c == '`' || *c == '~');
        let fence_len = fence_char.map_or(0, |c| trimmed.chars().take_while(|x| *x == c).count());
        match &mut open {
            None => {
                if let (Some(c), true) = (fence_char, fence_len >= 3) {
                    open = Some(Open {
                        line: index + 1,
                        indent,
                        fence_char: c,
                        fence_len,
                        info: trimmed[fence_len..].trim().to_string(),
                        lines: Vec::new(),
                    });
                }
            }
            Some(block) => {
                let closes = fence_char == Some(block.fence_char)
                    && fence_len >= block.fence_len
                    && trimmed[fence_len..].trim().is_empty();
                if closes {
                    let block = open.take().expect("a block is open");
                    let mut words = block
                        .info
                        .split(|c: char| c == ',' || c.is_whitespace())
                        .filter(|w| !w.is_empty())
                        .map(str::to_string);
                    let language = words.next().unwrap_or_default();
                    let mut text = block.lines.join("\n");
                    text.push('\n');
                    blocks.push(Block {
                        file: file.to_string(),
                        line: block.line,
                        language,
                        attributes: words.collect(),
                        text,
                    });
                } else {
                    // Remove the opening fence's indentation, as CommonMark does.
                    let strip = line.len() - line.trim_start_matches(' ').len();
                    block
                        .lines
                        .push(line[strip.min(block.indent)..].to_string());
                }
            }
        }
    }
    match open {
        Some(block) => Err(format!(
            "{file}:{}: this code block is never closed",
            block.line
        )),
        None => Ok(blocks),
    }
}

/// Every `.md` file under `dir`, sorted, so failures come in a stable order.
fn pages(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Every code block of the book, by page.
fn book() -> Vec<(PathBuf, Vec<Block>)> {
    let root = repo_root();
    let mut out = Vec::new();
    let mut broken = Vec::new();
    for page in pages(&root.join("book/src")) {
        let name = page
            .strip_prefix(&root)
            .unwrap_or(&page)
            .display()
            .to_string();
        let markdown =
            std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("cannot read {name}: {e}"));
        match extract(&name, &markdown) {
            Ok(blocks) => out.push((page, blocks)),
            Err(e) => broken.push(e),
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
    out
}

/// The block's text preceded by as many empty lines as come before it on
/// its page, so that diagnostics give the page's own line numbers.
fn as_on_page(block: &Block) -> String {
    let mut text = "\n".repeat(block.line);
    text.push_str(&block.text);
    text
}

fn rendered(name: &str, text: &str, diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(|d| d.render(name, text, false))
        .collect()
}

/// Checks one `topo` block against its marking; `Err` says what went wrong.
fn check_topo(block: &Block, page: &Path) -> Result<(), String> {
    let expect = block.expect()?;
    if expect == Expect::Fragment {
        return Ok(());
    }
    let text = as_on_page(block);
    let compiled = statflow_dsl::compile(&text, page.parent());
    let codes: Vec<&str> = compiled.diagnostics.iter().map(Diagnostic::code).collect();
    let errors: Vec<&str> = compiled
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(Diagnostic::code)
        .collect();
    let problem = match &expect {
        Expect::Clean | Expect::Warning(_) if !errors.is_empty() => {
            Some(format!("expected no errors, got {errors:?}"))
        }
        Expect::Warning(code) if !codes.contains(&code.as_str()) => {
            Some(format!("expected warning {code}, got {codes:?}"))
        }
        Expect::Error(code) if !errors.contains(&code.as_str()) => {
            Some(format!("expected error {code}, got {codes:?}"))
        }
        Expect::Error(code) if errors.iter().any(|e| e != code) => Some(format!(
            "expected only error {code}, got {errors:?}: show one mistake per block"
        )),
        _ => None,
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(format!(
            "{problem}\n{}",
            rendered(&block.file, &text, &compiled.diagnostics)
        )),
    }
}

/// Checks one `output=` block against what the command prints.
fn check_output(block: &Block, previous_topo: Option<&Block>) -> Result<(), String> {
    let command = block.attribute("output").unwrap_or_default();
    let (first, shown) = block.text.split_once('\n').unwrap_or((&block.text, ""));
    let words: Vec<&str> = first.split_whitespace().collect();
    let (name, json) = match (command, words.as_slice()) {
        ("check", ["$", "statflow", "check", name]) => (*name, false),
        ("check", ["$", "statflow", "check", name, "--format", "json"]) => (*name, true),
        ("explain", ["$", "statflow", "explain", name]) => (*name, false),
        _ => {
            return Err(format!(
                "an output block starts with the command it shows, as `$ statflow {command} FILE`; found `{first}`"
            ))
        }
    };
    let in_repo = repo_root().join(name);
    let text = if in_repo.is_file() {
        std::fs::read_to_string(&in_repo).map_err(|e| format!("cannot read {name}: {e}"))?
    } else {
        let topo = previous_topo.ok_or_else(|| {
            format!("`{name}` is not in the repository and no topo block comes before")
        })?;
        topo.text.clone()
    };
    // As the command line does: file sources are resolved against the
    // folder of the path as typed, run from the repository root.
    let compiled = statflow_dsl::compile(&text, Path::new(name).parent());
    let shown = normalize(shown);
    let expected = match command {
        "explain" => {
            let plan = compiled
                .plan
                .ok_or_else(|| format!("`{name}` does not compile, so explain prints no plan"))?;
            normalize(&statflow_dsl::explain::explain(&plan))
        }
        _ if json => {
            let json: Vec<DiagnosticJson> = compiled
                .diagnostics
                .iter()
                .map(|d| d.to_json(name, &text))
                .collect();
            normalize(&serde_json::to_string_pretty(&json).expect("diagnostics serialize"))
        }
        _ => {
            // The summary line comes from the command line, not from this
            // crate: check the counts it gives, not its wording.
            let (body, summary) = shown.rsplit_once('\n').unwrap_or(("", shown.as_str()));
            let errors = compiled.diagnostics.iter().filter(|d| d.is_error()).count();
            let warnings = compiled.diagnostics.len() - errors;
            let counts = (
                format!("1 file: {errors} error"),
                format!(" {warnings} warning"),
            );
            if !summary.starts_with(&counts.0) || !summary.contains(&counts.1) {
                return Err(format!(
                    "the last line of `statflow check` output is its summary, with \
                     {errors} error(s) and {warnings} warning(s) here; found `{summary}`"
                ));
            }
            let expected = normalize(&rendered(name, &text, &compiled.diagnostics));
            return if normalize(body) == expected {
                Ok(())
            } else {
                Err(difference(&expected, &normalize(body)))
            };
        }
    };
    if shown == expected {
        Ok(())
    } else {
        Err(difference(&expected, &shown))
    }
}

/// Text compared line by line without trailing spaces or trailing blank lines,
/// which editors remove and which nobody sees.
fn normalize(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    lines.join("\n").trim_end().to_string()
}

fn difference(expected: &str, shown: &str) -> String {
    let mut out = String::from("the output shown is not what statflow prints\n");
    for (i, (e, s)) in expected.lines().zip(shown.lines()).enumerate() {
        if e != s {
            let _ = writeln!(out, "first difference at line {} of the output:", i + 2);
            let _ = writeln!(out, "  shown:    {s}");
            let _ = writeln!(out, "  printed:  {e}");
            break;
        }
    }
    let _ = write!(out, "--- what statflow prints ---\n{expected}\n---");
    out
}

#[test]
fn every_topo_block_compiles_as_marked() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for (page, blocks) in book() {
        let mut previous_topo = None;
        for block in &blocks {
            if !LANGUAGES.contains(&block.language.as_str()) {
                failures.push(format!(
                    "{}: code blocks are written in one of {LANGUAGES:?}, not `{}` (a misspelt `topo` goes untested)",
                    block.at(),
                    block.language
                ));
                continue;
            }
            let result = if block.language == "topo" {
                checked += 1;
                let result = check_topo(block, &page);
                previous_topo = Some(block);
                result
            } else if block.attribute("output").is_some() {
                check_output(block, previous_topo)
            } else {
                Ok(())
            };
            if let Err(why) = result {
                failures.push(format!("{}: {why}", block.at()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} topo blocks or their output are wrong:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn the_book_has_topo_blocks_and_few_fragments() {
    let blocks: Vec<Block> = book()
        .into_iter()
        .flat_map(|(_, blocks)| blocks)
        .filter(|b| b.language == "topo")
        .collect();
    // Zero blocks means extraction broke and every other test here passes vacuously.
    assert!(!blocks.is_empty(), "no ```topo block found under book/src");
    let fragments: Vec<String> = blocks
        .iter()
        .filter(|b| b.expect() == Ok(Expect::Fragment))
        .map(Block::at)
        .collect();
    let share = fragments.len() as f64 / blocks.len() as f64;
    assert!(
        share <= MAX_FRAGMENT_SHARE,
        "{} of {} topo blocks are fragments, which go untested; make some of them whole topologies:\n{}",
        fragments.len(),
        blocks.len(),
        fragments.join("\n")
    );
    println!(
        "{} topo blocks, {} fragments",
        blocks.len(),
        fragments.len()
    );
}

/// The diagnostics index shows every code the compiler can give, with an
/// example that gives it; a new code fails here until it is documented.
#[test]
fn the_diagnostics_index_shows_every_code() {
    let catalog = std::fs::read_to_string(repo_root().join("dsl/src/catalog.rs"))
        .expect("dsl/src/catalog.rs");
    // The codes are the string literals of `Problem::code`: `=> "E0203",`.
    let codes: Vec<&str> = catalog
        .split("=> \"")
        .skip(1)
        .filter_map(|rest| rest.get(..5))
        .filter(|code| is_code(code, 'E') || is_code(code, 'W'))
        .collect();
    assert!(
        codes.len() > 10,
        "found only {codes:?} in dsl/src/catalog.rs"
    );
    let page = repo_root().join("book/src/diagnostics.md");
    let markdown = std::fs::read_to_string(&page).expect("book/src/diagnostics.md");
    let blocks = extract("book/src/diagnostics.md", &markdown).expect("the page parses");
    let shown: Vec<String> = blocks
        .iter()
        .filter(|b| b.language == "topo")
        .filter_map(|b| match b.expect() {
            Ok(Expect::Error(code) | Expect::Warning(code)) => Some(code),
            _ => None,
        })
        .collect();
    let missing: Vec<&str> = codes
        .iter()
        .copied()
        .filter(|code| {
            !shown.iter().any(|s| s == code) || !markdown.contains(&format!("## {code}"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "book/src/diagnostics.md needs a `## CODE` section and a ```topo,error=CODE (or warning=CODE) example for {missing:?}"
    );
}

#[test]
fn extraction_follows_fences() {
    let markdown = "\
intro
```topo
source a = generator()
```
- a list item:

  ```topo,error=E0203
  metric m from b { window tumbling 1m measures { n = count() } }
  ```
````text,output=check
```topo
inner fence is content
```
````
~~~ topo warning=W0003
x
~~~
";
    let blocks = extract("page.md", markdown).unwrap();
    assert_eq!(blocks.len(), 4);
    assert_eq!((blocks[0].line, blocks[0].language.as_str()), (2, "topo"));
    assert_eq!(blocks[0].text, "source a = generator()\n");
    assert_eq!(blocks[1].line, 7);
    assert_eq!(blocks[1].expect(), Ok(Expect::Error("E0203".into())));
    assert!(
        blocks[1].text.starts_with("metric m"),
        "indentation removed"
    );
    assert_eq!(blocks[2].attribute("output"), Some("check"));
    assert_eq!(blocks[2].text.lines().count(), 3);
    assert_eq!(blocks[3].expect(), Ok(Expect::Warning("W0003".into())));

    assert!(extract("page.md", "```topo\nnever closed\n").is_err());
    let odd = extract("page.md", "```topo,eror=E0203\n```\n").unwrap();
    assert!(
        odd[0].expect().is_err(),
        "a misspelt attribute is an error, not a clean block"
    );
}

/// The lines of a page outside its code blocks, with their line numbers.
fn prose(markdown: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut fence: Option<(char, usize)> = None;
    for (index, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        let c = trimmed.chars().next().filter(|c| *c == '`' || *c == '~');
        let run = c.map_or(0, |c| trimmed.chars().take_while(|x| *x == c).count());
        match (fence, c) {
            (None, Some(c)) if run >= 3 => fence = Some((c, run)),
            (Some((f, n)), Some(c)) if c == f && run >= n && trimmed[run..].trim().is_empty() => {
                fence = None
            }
            (None, _) => out.push((index + 1, line)),
            _ => {}
        }
    }
    out
}

/// The anchors mdBook gives a page's headings: an explicit `{#id}`, or the
/// heading's text in lower case, spaces as `-`, punctuation dropped.
fn anchors(markdown: &str) -> Vec<String> {
    prose(markdown)
        .into_iter()
        .filter_map(|(_, line)| line.strip_prefix('#'))
        .map(|heading| heading.trim_start_matches('#').trim())
        .map(|heading| match heading.rsplit_once("{#") {
            Some((_, id)) => id.trim_end_matches('}').to_string(),
            None => heading
                .chars()
                .filter_map(|c| match c {
                    c if c.is_alphanumeric() || c == '_' || c == '-' => {
                        Some(c.to_ascii_lowercase())
                    }
                    c if c.is_whitespace() => Some('-'),
                    _ => None,
                })
                .collect(),
        })
        .collect()
}

/// Links between pages point at pages and headings that exist, so that
/// renaming a heading cannot silently break `diagnostics.md#e0203`.
#[test]
fn links_between_pages_resolve() {
    let src = repo_root().join("book/src");
    let mut broken = Vec::new();
    for page in pages(&src) {
        let markdown = std::fs::read_to_string(&page).expect("a page");
        let name = page
            .strip_prefix(repo_root())
            .unwrap_or(&page)
            .display()
            .to_string();
        for (line, text) in prose(&markdown) {
            for link in text.split("](").skip(1) {
                let Some(target) = link.split(')').next() else {
                    continue;
                };
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
                let file = if path.is_empty() {
                    page.clone()
                } else {
                    page.parent().expect("a folder").join(path)
                };
                // Pictures (the app's screenshots) need only exist.
                if [".png", ".svg", ".jpg"].iter().any(|e| path.ends_with(e)) {
                    if !file.is_file() {
                        broken.push(format!("{name}:{line}: no picture {path}"));
                    }
                    continue;
                }
                let Ok(linked) = std::fs::read_to_string(&file) else {
                    broken.push(format!("{name}:{line}: no page {path}"));
                    continue;
                };
                if !anchor.is_empty() && !anchors(&linked).iter().any(|a| a == anchor) {
                    broken.push(format!("{name}:{line}: no heading #{anchor} in {path}"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}
