//! Every example topology compiles with no errors and no warnings: they are
//! what people copy, so they must be clean.

use std::path::PathBuf;

#[test]
fn every_example_topology_is_clean() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("examples/topologies");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "topo"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .topo file in {}", dir.display());

    let mut failures = Vec::new();
    for path in &files {
        let name = path
            .strip_prefix(&root)
            .unwrap_or(path)
            .display()
            .to_string();
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {name}: {e}"));
        let compiled = statflow_dsl::compile(&text, path.parent());
        if !compiled.diagnostics.is_empty() {
            let rendered: String = compiled
                .diagnostics
                .iter()
                .map(|d| d.render(&name, &text, false))
                .collect();
            failures.push(rendered);
        } else if compiled.plan.is_none() {
            failures.push(format!("{name}: no diagnostics, yet no plan"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} examples are not clean:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
