//! A diagnostic: one problem at one place, rendered for people (ariadne) or
//! for tools (JSON).

use ariadne::{Color, Config, Label, Report, ReportKind, Source};
use serde::Serialize;

pub use crate::catalog::{Problem, Severity};
use crate::span::{line_col, Span};

/// One problem found in a topology, with where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// What is wrong.
    pub problem: Problem,
    /// Where.
    pub span: Span,
}

/// A diagnostic in the form `statflow check --format json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct DiagnosticJson {
    /// The file it is in.
    pub file: String,
    /// The stable code, e.g. `E0203`.
    pub code: &'static str,
    /// `error` or `warning`.
    pub severity: Severity,
    /// The headline.
    pub message: String,
    /// What is at the span.
    pub label: String,
    /// What to write instead, if there is advice.
    pub help: Option<String>,
    /// 1-based line where the span starts.
    pub line: usize,
    /// 1-based column where the span starts.
    pub column: usize,
    /// 1-based line where the span ends.
    pub end_line: usize,
    /// 1-based column just after the span.
    pub end_column: usize,
}

impl Diagnostic {
    /// A diagnostic for `problem` at `span`.
    pub fn new(problem: Problem, span: Span) -> Self {
        Diagnostic { problem, span }
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.problem.code()
    }

    /// Error or warning.
    pub fn severity(&self) -> Severity {
        self.problem.severity()
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity() == Severity::Error
    }

    /// The machine-readable form.
    pub fn to_json(&self, file: &str, text: &str) -> DiagnosticJson {
        let start = line_col(text, self.span.start);
        let end = line_col(text, self.span.end);
        DiagnosticJson {
            file: file.to_string(),
            code: self.code(),
            severity: self.severity(),
            message: self.problem.message(),
            label: self.problem.label(),
            help: self.problem.help(),
            line: start.line,
            column: start.column,
            end_line: end.line,
            end_column: end.column,
        }
    }

    /// Renders the diagnostic with the source line, a labelled span and the
    /// help line. `color` is for terminals only.
    pub fn render(&self, file: &str, text: &str, color: bool) -> String {
        let kind = match self.severity() {
            Severity::Error => ReportKind::Error,
            Severity::Warning => ReportKind::Warning,
        };
        let accent = match self.severity() {
            Severity::Error => Color::Red,
            Severity::Warning => Color::Yellow,
        };
        let clamp = |span: Span| {
            let end = span.end.min(text.len());
            let start = span.start.min(end);
            // Point at something visible even for an empty span (the end of
            // the file): the whole next character, never half of one.
            match text.get(end..).and_then(|rest| rest.chars().next()) {
                Some(next) if start == end => start..end + next.len_utf8(),
                _ => start..end,
            }
        };
        let mut report = Report::build(kind, (file, clamp(self.span)))
            .with_config(
                Config::default()
                    .with_color(color)
                    .with_index_type(ariadne::IndexType::Byte),
            )
            .with_code(self.code())
            .with_message(self.problem.message());
        // Labels go in source order: ariadne starts a new snippet, with a
        // misleading line number, whenever a label is above the one before.
        let mut labels = vec![(self.span, self.problem.label(), accent)];
        for (span, label) in self.problem.secondary() {
            labels.push((span, label, Color::Blue));
        }
        labels.sort_by_key(|(span, _, _)| (span.start, span.end));
        for (span, label, color) in labels {
            report = report.with_label(
                Label::new((file, clamp(span)))
                    .with_message(label)
                    .with_color(color),
            );
        }
        if let Some(help) = self.problem.help() {
            report = report.with_help(help);
        }
        let mut out = Vec::new();
        // Writing to a Vec cannot fail; an error here would be a bug in the renderer.
        if report
            .finish()
            .write((file, Source::from(text)), &mut out)
            .is_err()
        {
            let at = line_col(text, self.span.start);
            return format!(
                "{}[{}]: {} at {file}:{}:{}\n",
                kind_word(self.severity()),
                self.code(),
                self.problem.message(),
                at.line,
                at.column
            );
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

fn kind_word(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_span_before_a_wide_character_renders() {
        let text = "é";
        let d = Diagnostic::new(Problem::EmptyList, Span::new(0, 0));
        let out = d.render("t.topo", text, false);
        assert!(out.contains("E0316"), "{out}");
        let json = d.to_json("t.topo", text);
        assert_eq!((json.line, json.column), (1, 1));
    }

    #[test]
    fn secondary_labels_above_the_primary_share_one_snippet() {
        let text = "a\nb\n";
        let d = Diagnostic::new(
            Problem::DuplicateSource {
                name: "x".into(),
                first: Span::new(0, 1),
            },
            Span::new(2, 3),
        );
        let out = d.render("t.topo", text, false);
        // One header for the file, pointing at the primary span (line 2).
        assert_eq!(out.matches("t.topo:").count(), 1, "{out}");
        assert!(out.contains("t.topo:2:1"), "{out}");
    }
}
