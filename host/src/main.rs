//! The `berth` binary: glue over the berth libraries.
//!
//! Each command lives in its own module; this file parses the command line,
//! sets up logging, runs the command and turns its outcome into an exit
//! code and, for errors, one line plus its causes on stderr.

// A command-line program talks to its user on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod backends;
mod cli;
mod doctor;
mod failure;
mod gc;
mod logging;
mod manual;
mod output;
mod plugins;
mod quote;
mod run;
mod run_checkpoint;
mod run_env;
mod run_stdin;
mod serve;
mod term;
mod trees;

use std::path::PathBuf;

use crate::cli::{Cli, Command, GlobalArgs};

/// An exit status of berth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ExitCode(pub(crate) u8);

impl ExitCode {
    /// Everything worked (`diff`: the trees are equal).
    pub(crate) const SUCCESS: ExitCode = ExitCode(0);
    /// `diff`: the trees differ.
    pub(crate) const DIFFERENT: ExitCode = ExitCode(1);
    /// `run`: a wall or idle timeout killed the command.
    pub(crate) const TIMEOUT: ExitCode = ExitCode(124);
    /// berth itself failed: bad arguments, a bad spec, an unknown backend,
    /// a spawn or I/O failure.
    pub(crate) const BERTH_ERROR: ExitCode = ExitCode(125);
}

/// The temporary root in force: `--temp-root`, else the system's.
pub(crate) fn temp_root(global: &GlobalArgs) -> PathBuf {
    global.temp_root.clone().unwrap_or_else(std::env::temp_dir)
}

fn main() -> std::process::ExitCode {
    output::install_panic_net();
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(err) => {
            // Help and version go to stdout with status 0; usage errors use
            // berth's own error status, so they never pass for a command's.
            let _ = err.print();
            if !err.use_stderr() {
                return std::process::ExitCode::SUCCESS;
            }
            if failure::args_ask_for_json(std::env::args_os()) {
                failure::print_json_error(&failure::clap_message(&err), failure::ErrorKind::Usage);
            }
            return std::process::ExitCode::from(ExitCode::BERTH_ERROR.0);
        }
    };
    // The suite makes setups fail on purpose: `plugins test` shows only
    // errors unless RUST_LOG asks for more; its lines carry the verdicts.
    let quiet = matches!(
        &cli.command,
        Command::Plugins(cli::PluginsArgs {
            action: Some(cli::PluginsAction::Test(_)),
            ..
        })
    );
    logging::init(match &cli.command {
        _ if quiet => tracing::Level::ERROR,
        // A server's log is its record of the sessions it served.
        Command::Serve(_) => tracing::Level::INFO,
        _ => tracing::Level::WARN,
    });
    let code = match execute(&cli) {
        Ok(code) => code,
        // Nobody reads what berth would say.
        Err(err) if output::is_closed_output(&err) => output::CLOSED,
        Err(err) => {
            print_error(&err);
            if cli.json() {
                failure::print_json_error(&failure::one_line(&err), failure::kind_of(&err));
            }
            ExitCode::BERTH_ERROR
        }
    };
    std::process::ExitCode::from(code.0)
}

fn execute(cli: &Cli) -> anyhow::Result<ExitCode> {
    let global = &cli.global;
    match &cli.command {
        Command::Plugins(args) => backends::plugins(args, global),
        Command::Snapshot(args) => trees::snapshot(args, &temp_root(global)),
        Command::Diff(args) => trees::diff(args, &temp_root(global)),
        Command::Run(args) => {
            let runtime = one_thread_runtime()?;
            let code = runtime.block_on(run::run(args, global));
            // The session is closed by now; what may still run is a write
            // to an output nobody reads, which is not waited for.
            runtime.shutdown_background();
            code
        }
        Command::Doctor(args) => async_runtime()?.block_on(doctor::doctor(args, global)),
        Command::Gc(args) => async_runtime()?.block_on(gc::gc(args, global)),
        Command::Serve(args) => async_runtime()?.block_on(serve::serve(args, global)),
        Command::Completions(args) => manual::completions(args),
        Command::Man(args) => manual::man(args),
    }
}

/// `berth run`'s runtime: the session's tasks share the main thread, so a
/// one-command run starts no worker threads. Nothing on it may block:
/// output is written from the blocking pool (see `run::forward`).
fn one_thread_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn async_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// `berth: error: <what>` then one `  caused by: <why>` per cause, skipping
/// causes whose text the line above already contains.
fn print_error(err: &anyhow::Error) {
    let colour = term::stderr_colour();
    let mut previous = err.to_string();
    output::say(format_args!(
        "berth: {} {previous}",
        term::paint("error:", term::Colour::Red, colour)
    ));
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if previous.contains(&text) {
            continue;
        }
        output::say(format_args!("  caused by: {text}"));
        previous = text;
    }
}
