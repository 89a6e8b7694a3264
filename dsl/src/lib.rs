//! The statflow topology language: text in, a checked [`Plan`] out.
//!
//! This crate is pure: no threads, no I/O, no dataflow. It lexes, parses and
//! checks a `.topo` file, reporting every mistake at once as a
//! [`Diagnostic`] with a stable code, a span and advice.
//!
//! ```
//! let text = r#"
//! source rewards = generator(rate = 100)
//!
//! metric reward_stats from rewards {
//!   where      kind = "reward"
//!   dimensions game_id, reward_type
//!   window     tumbling 1m
//!   measures {
//!     rewards = count()
//!     amount  = sum(amount)
//!   }
//! }
//! "#;
//! let compiled = statflow_dsl::compile(text, None);
//! assert!(compiled.diagnostics.is_empty());
//! let plan = compiled.plan.unwrap();
//! assert_eq!(plan.metrics[0].measures.len(), 2);
//! ```
#![deny(missing_docs)]

pub mod ast;
mod cascade;
pub mod catalog;
pub mod check;
pub mod diagnostic;
pub mod duration;
pub mod explain;
pub mod lexer;
pub mod parser;
pub mod plan;
pub mod span;
mod suggest;

pub use diagnostic::{Diagnostic, DiagnosticJson, Problem, Severity};
pub use duration::Duration;
pub use plan::*;
pub use suggest::did_you_mean;

/// The result of compiling a topology: the plan when there were no errors,
/// and every diagnostic (errors and warnings) in source order.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The checked plan; `None` when any diagnostic is an error.
    pub plan: Option<Plan>,
    /// Every problem found, in the order they appear in the text.
    pub diagnostics: Vec<Diagnostic>,
}

impl Compiled {
    /// True when some diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Compiles topology text. `base_dir` is the folder of the topology file,
/// against which relative file-source paths are resolved (the path is joined,
/// not read). Never panics, whatever the text.
pub fn compile(text: &str, base_dir: Option<&std::path::Path>) -> Compiled {
    let mut diagnostics = Vec::new();
    let tokens = lexer::lex(text, &mut diagnostics);
    let written = cascade::Written::from_tokens(&tokens);
    let topology = parser::parse(tokens, &mut diagnostics);
    let syntax_ok = !diagnostics.iter().any(Diagnostic::is_error);
    let mut checked = Vec::new();
    let plan = check::check(&topology, base_dir, &mut checked);
    diagnostics.extend(cascade::drop_cascades(
        &diagnostics,
        checked,
        &topology,
        &written,
    ));
    diagnostics.sort_by_key(|d| (d.span.start, d.span.end));
    diagnostics.dedup();
    Compiled {
        plan: if syntax_ok { plan } else { None },
        diagnostics,
    }
}
