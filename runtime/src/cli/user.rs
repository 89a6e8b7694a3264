//! `statflow user add|list|remove|rotate`: the users of a state store.
//!
//! These work on the store file directly, so they need no running server
//! (and work while one runs: SQLite serializes the writes). A token is
//! printed once, on standard output, and never again: the store keeps only
//! its digest.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use crate::store::{Role, Store};

/// The `user` subcommands.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user and print its token (shown only this once).
    Add {
        /// The user's name: letters, digits, `.`, `_`, `-` or `@`.
        name: String,
        /// What the user may do.
        #[arg(long, value_enum, default_value_t = RoleArg::Viewer)]
        role: RoleArg,
        /// The state folder holding `statflow.db`.
        #[arg(long, default_value = ".statflow")]
        state_dir: PathBuf,
    },
    /// List the users and their roles.
    List {
        /// The state folder holding `statflow.db`.
        #[arg(long, default_value = ".statflow")]
        state_dir: PathBuf,
    },
    /// Remove a user, their sessions and the dashboards they own.
    Remove {
        /// The user's name.
        name: String,
        /// The state folder holding `statflow.db`.
        #[arg(long, default_value = ".statflow")]
        state_dir: PathBuf,
    },
    /// Give a user a new token (printed once); the old one stops working.
    Rotate {
        /// The user's name.
        name: String,
        /// The state folder holding `statflow.db`.
        #[arg(long, default_value = ".statflow")]
        state_dir: PathBuf,
    },
}

/// A role on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RoleArg {
    /// Query, and view dashboards shared with them.
    Viewer,
    /// Also make and share dashboards.
    Editor,
    /// Also manage users, and see every dashboard.
    Admin,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Viewer => Role::Viewer,
            RoleArg::Editor => Role::Editor,
            RoleArg::Admin => Role::Admin,
        }
    }
}

fn open(state_dir: &std::path::Path) -> anyhow::Result<Store> {
    Store::open_dir(state_dir)
        .with_context(|| format!("cannot open the state store in {}", state_dir.display()))
}

/// Runs one `user` subcommand.
pub fn user(command: UserCommand) -> anyhow::Result<ExitCode> {
    match command {
        UserCommand::Add {
            name,
            role,
            state_dir,
        } => {
            let (user, token) = open(&state_dir)?.add_user(&name, role.into())?;
            eprintln!(
                "added {} ({}); the token below is shown only this once:",
                user.name, user.role
            );
            println!("{token}");
        }
        UserCommand::List { state_dir } => {
            let users = open(&state_dir)?.users()?;
            if users.is_empty() {
                eprintln!("no users yet: `statflow run` adds an admin when it first starts, or use `statflow user add`");
            }
            let width = users.iter().map(|u| u.name.len()).max().unwrap_or(4).max(4);
            println!("{:width$}  ROLE    ADDED", "NAME");
            for u in users {
                let added = jiff::Timestamp::from_millisecond(u.created_ms)
                    .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
                    .unwrap_or_default();
                println!("{:width$}  {:6}  {added}", u.name, u.role.as_str());
            }
        }
        UserCommand::Remove { name, state_dir } => {
            open(&state_dir)?.remove_user(&name)?;
            eprintln!("removed {name}, their sessions and the dashboards they owned");
        }
        UserCommand::Rotate { name, state_dir } => {
            let token = open(&state_dir)?.rotate_token(&name)?;
            eprintln!("{name} has a new token, shown only this once; the old one and their browser sessions no longer work:");
            println!("{token}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
