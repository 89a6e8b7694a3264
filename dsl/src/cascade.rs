//! Drops checker diagnostics that only follow from a syntax mistake already
//! reported, so that one mistake gives one message.
//!
//! The checker runs even when the parser found mistakes, to report as much
//! as it can in one run. But a declaration the parser could not read is
//! missing from the syntax tree, and a clause it could not read is missing
//! from its declaration; the checker would then report the absence
//! ("metric `m` has no window") or a placeholder value ("retention 1ms is
//! shorter than ...") on top of the real mistake.

use std::collections::HashSet;

use crate::ast::{Item, Topology};
use crate::diagnostic::{Diagnostic, Problem};
use crate::lexer::{Tok, Token};
use crate::span::Span;

/// What the text says, read from the tokens, whether or not it parsed.
#[derive(Debug, Default)]
pub(crate) struct Written {
    /// Names written after `source`.
    declared_sources: HashSet<String>,
    /// Names written in a metric's header, after its own name.
    read_sources: HashSet<String>,
}

impl Written {
    /// Reads source names from the tokens: the parser may drop a whole
    /// declaration, but its name is still in the text.
    pub(crate) fn from_tokens(tokens: &[Token]) -> Self {
        let mut written = Written::default();
        let word = |i: usize| match tokens.get(i).map(|t| &t.tok) {
            Some(Tok::Ident(w)) => Some(w.as_str()),
            _ => None,
        };
        for i in 0..tokens.len() {
            match word(i) {
                Some("source") => {
                    if let Some(name) = word(i + 1) {
                        written.declared_sources.insert(name.to_string());
                    }
                }
                Some("metric") => {
                    // Every name between the metric's own name and its `{`,
                    // so that `metric m events {` (no `from`) counts too.
                    for token in tokens[i..].iter().skip(2) {
                        match &token.tok {
                            Tok::Ident(w) if w == "source" || w == "metric" => break,
                            Tok::Ident(w) if w != "from" => {
                                written.read_sources.insert(w.clone());
                            }
                            Tok::LBrace | Tok::Eof => break,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        written
    }
}

/// Keeps the checker's diagnostics in `checked` that do not follow from a
/// mistake in `syntax` (the lexer's and the parser's diagnostics).
pub(crate) fn drop_cascades(
    syntax: &[Diagnostic],
    checked: Vec<Diagnostic>,
    topology: &Topology,
    written: &Written,
) -> Vec<Diagnostic> {
    let syntax_spans: Vec<Span> = syntax
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.span)
        .collect();
    let broken = |span: Span| syntax_spans.iter().any(|s| contains(span, *s));
    // Declarations with a syntax mistake inside: some of their parts are missing.
    let broken_items: Vec<Span> = topology
        .items
        .iter()
        .map(|item| match item {
            Item::Source(s) => s.span,
            Item::Metric(m) => m.span,
        })
        .filter(|span| broken(*span))
        .collect();
    let broken_sources: HashSet<&str> = topology
        .items
        .iter()
        .filter_map(|item| match item {
            Item::Source(s) if broken(s.span) => Some(s.name.text.as_str()),
            _ => None,
        })
        .collect();
    // A misspelt `from` already says which source was meant.
    let suggested: HashSet<String> = checked
        .iter()
        .filter_map(|d| match &d.problem {
            Problem::UnknownSource {
                suggestion: Some(s),
                ..
            } => Some(s.clone()),
            _ => None,
        })
        .collect();

    checked
        .into_iter()
        .filter(|d| {
            if syntax_spans.iter().any(|s| overlaps(*s, d.span)) {
                // A checker message about a placeholder the lexer put in place
                // of a bad number or duration.
                return false;
            }
            let in_broken_item = broken_items.iter().any(|item| contains(*item, d.span));
            match &d.problem {
                Problem::MissingWindow { .. }
                | Problem::EmptyMetric { .. }
                | Problem::MissingTime { .. }
                | Problem::KafkaNeedsTopics => !in_broken_item,
                Problem::UnknownField { source, .. } => {
                    !source.split(", ").any(|s| broken_sources.contains(s))
                }
                Problem::UnknownSource { found, .. } => !written.declared_sources.contains(found),
                Problem::UnusedSource { name } => {
                    !written.read_sources.contains(name) && !suggested.contains(name)
                }
                _ => true,
            }
        })
        .collect()
}

/// True when `outer` covers `inner` (an empty `inner` at `outer`'s end counts).
fn contains(outer: Span, inner: Span) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

/// True when the spans share a byte, or an empty span sits inside the other.
fn overlaps(a: Span, b: Span) -> bool {
    if a.start == a.end || b.start == b.end {
        return contains(a, b) || contains(b, a);
    }
    a.start < b.end && b.start < a.end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_and_containment() {
        assert!(overlaps(Span::new(0, 5), Span::new(4, 9)));
        assert!(!overlaps(Span::new(0, 5), Span::new(5, 9)));
        assert!(overlaps(Span::new(3, 3), Span::new(0, 5)));
        assert!(contains(Span::new(0, 5), Span::new(5, 5)));
        assert!(!contains(Span::new(0, 5), Span::new(4, 6)));
    }

    #[test]
    fn reads_names_from_tokens() {
        let mut diags = Vec::new();
        let tokens = crate::lexer::lex(
            "source a generator() metric m from b, c { d } metric n e source",
            &mut diags,
        );
        let written = Written::from_tokens(&tokens);
        assert!(written.declared_sources.contains("a"));
        assert!(written.read_sources.contains("b"));
        assert!(written.read_sources.contains("c"));
        assert!(written.read_sources.contains("e"));
        assert!(!written.read_sources.contains("a"));
        assert!(!written.read_sources.contains("d"));
        assert!(!written.read_sources.contains("m"));
    }
}
