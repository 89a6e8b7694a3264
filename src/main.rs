fn main() {
    let path = std::env::args().nth(1).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let c = statflow_dsl::compile(&text, None);
    for d in &c.diagnostics { print!("{}", d.render(&path, &text, false)); }
    if let Some(p) = c.plan { print!("{}", statflow_dsl::explain::explain(&p)); }
}
