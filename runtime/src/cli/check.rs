//! `statflow check` and `statflow explain`.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use super::{CheckArgs, CheckFormat, ColorChoice, ExplainArgs, ExplainFormat};

/// Reads and compiles one topology file.
pub fn load(path: &Path) -> Result<(String, statflow_dsl::Compiled), std::io::Error> {
    let text = std::fs::read_to_string(path)?;
    let compiled = statflow_dsl::compile(&text, path.parent());
    Ok((text, compiled))
}

/// Prints the diagnostics of every file; 0 when clean, 1 on errors, 2 when a file cannot be read.
pub fn check(args: &CheckArgs) -> ExitCode {
    let color = match args.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
        }
    };
    let mut errors = 0usize;
    let mut warnings = 0usize;
    let mut unreadable = false;
    let mut json = Vec::new();
    for path in &args.files {
        let name = path.display().to_string();
        let (text, compiled) = match load(path) {
            Ok(loaded) => loaded,
            Err(e) => {
                eprintln!("error: cannot read {name}: {e}");
                unreadable = true;
                continue;
            }
        };
        for d in &compiled.diagnostics {
            if d.is_error() {
                errors += 1;
            } else {
                warnings += 1;
            }
            match args.format {
                CheckFormat::Human => eprint!("{}", d.render(&name, &text, color)),
                CheckFormat::Json => json.push(d.to_json(&name, &text)),
            }
        }
    }
    match args.format {
        CheckFormat::Json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&json).unwrap_or_else(|_| "[]".into())
            );
        }
        CheckFormat::Human => {
            let files = args.files.len();
            let plural =
                |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
            eprintln!(
                "{}: {}, {}",
                plural(files, "file"),
                plural(errors, "error"),
                plural(warnings, "warning")
            );
        }
    }
    if unreadable {
        ExitCode::from(2)
    } else if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints the plan of a clean topology, or its diagnostics.
pub fn explain(args: &ExplainArgs) -> ExitCode {
    let name = args.file.display().to_string();
    let (text, compiled) = match load(&args.file) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: cannot read {name}: {e}");
            return ExitCode::from(2);
        }
    };
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    for d in &compiled.diagnostics {
        eprint!("{}", d.render(&name, &text, color));
    }
    let Some(plan) = compiled.plan else {
        return ExitCode::from(1);
    };
    match args.format {
        ExplainFormat::Text => print!("{}", statflow_dsl::explain::explain(&plan)),
        ExplainFormat::Json => match serde_json::to_string_pretty(&plan) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("error: cannot serialize the plan: {e}");
                return ExitCode::from(1);
            }
        },
    }
    ExitCode::SUCCESS
}
