//! Developer tasks: `cargo xtask run`, `cargo xtask test`.
//!
//! Each task installs what it needs and then runs plain cargo, so a fresh
//! machine needs nothing but this repository and rustup.

use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "toptraffic developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build the release binary and run the daemon (embedded default config
    /// unless arguments say otherwise, e.g. `-- --config my.toml`).
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run every test of the workspace, end-to-end tests included.
    Test {
        /// Extra arguments for `cargo test`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn status(mut cmd: Command) -> Result<()> {
    eprintln!("+ {cmd:?}");
    let st = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed: {st}");
    }
    Ok(())
}

fn run(args: Vec<String>) -> Result<()> {
    let mut build = cargo();
    build.args(["build", "--release", "-p", "toptraffic"]);
    status(build)?;
    let mut run = Command::new(workspace_root().join("target/release/toptraffic"));
    run.arg("run").args(args);
    status(run)
}

fn test(args: Vec<String>) -> Result<()> {
    let mut t = cargo();
    t.args(["test", "--workspace", "--all-targets"]).args(&args);
    status(t)?;
    // Doc tests are not part of --all-targets.
    let mut d = cargo();
    d.args(["test", "--workspace", "--doc"]);
    status(d)
}

fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.task {
        Task::Run { args } => run(args),
        Task::Test { args } => test(args),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}
