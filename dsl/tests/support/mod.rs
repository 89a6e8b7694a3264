//! Helpers shared by the test binaries: compile a topology and render every
//! diagnostic the way `statflow check` prints it, without colour.

#![allow(dead_code)] // Each test binary uses a different part of this module.

use statflow_dsl::{compile, Compiled};

/// The file name every rendered diagnostic shows.
pub const FILE: &str = "test.topo";

/// Compiles `source` and renders every diagnostic with `color = false`.
/// Also builds the JSON form of each, so a test that renders proves that
/// `to_json` does not panic either.
pub fn render_all(source: &str) -> (Compiled, String) {
    let compiled = compile(source, None);
    let mut rendered = String::new();
    for d in &compiled.diagnostics {
        let _json = d.to_json(FILE, source);
        rendered.push_str(&d.render(FILE, source, false));
    }
    (compiled, rendered)
}

/// The codes of every diagnostic, in the order they are reported.
pub fn codes(compiled: &Compiled) -> Vec<&'static str> {
    compiled.diagnostics.iter().map(|d| d.code()).collect()
}

/// The text a snapshot holds: the source, a rule, and the rendered diagnostics.
pub fn side_by_side(source: &str, rendered: &str) -> String {
    format!("{source}\n----\n{rendered}")
}
