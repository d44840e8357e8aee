//! `berth-bench [--quick] [--wait-quiet] [--dir DIR] [ROW…]`: measures the
//! rows of BENCHMARKS.md and prints each figure beside its floor, then a Markdown
//! table. Run it through `cargo xtask bench`, which builds it in release
//! mode.

// A benchmark reports on its terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use berth_bench::machine::{BusyWatch, CpuTimes, Machine, wait_for_quiet};
use berth_bench::report::markdown_table;
use berth_bench::rows::stream::{CHILD_FLAG, throughput_child};
use berth_bench::{Bench, Figure, ROWS, Row, Sizes, find_row};

const USAGE: &str = "\
usage: berth-bench [--quick | --tiny] [--wait-quiet] [--dir DIR] [ROW…]
  --quick       smaller sizes, for a smoke run (well under a minute)
  --tiny        just enough to run every code path (the test suite)
  --wait-quiet  before each row, wait for 10 s without builds on the machine,
                and run a row again (up to 3 times) when a build disturbs it
  --dir DIR     where temp trees, archives and workspaces go (default: the temp dir)
  --list        the rows (by name or number; all of them by default)";

/// How many times `--wait-quiet` runs a row that a build disturbed.
const ATTEMPTS: usize = 3;

/// How long the machine must be quiet before a row under `--wait-quiet`.
const QUIET_FOR: Duration = Duration::from_secs(10);

/// How long `--wait-quiet` waits for that before measuring anyway.
const GIVE_UP: Duration = Duration::from_secs(600);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(CHILD_FLAG) {
        return match throughput_child(&args[1..]) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("berth-bench: {err}");
                ExitCode::FAILURE
            }
        };
    }
    let mut sizes = Sizes::full();
    let mut dir = std::env::temp_dir();
    let mut rows: Vec<&'static Row> = Vec::new();
    let mut wait_quiet = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => sizes = Sizes::quick(),
            "--tiny" => sizes = Sizes::tiny(),
            "--wait-quiet" => wait_quiet = true,
            "--dir" => match args.next() {
                Some(d) => dir = PathBuf::from(d),
                None => return usage_error("--dir needs a directory"),
            },
            "--list" => {
                for (i, row) in ROWS.iter().enumerate() {
                    println!("{} {:<18} {}", i + 1, row.name, row.about);
                }
                return ExitCode::SUCCESS;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            name => match find_row(name) {
                Some(row) => rows.push(row),
                None => return usage_error(&format!("unknown row `{name}`")),
            },
        }
    }
    if rows.is_empty() {
        rows = ROWS.iter().collect();
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(err) => return usage_error(&format!("cannot find my own executable: {err}")),
    };
    let bench = Bench { sizes, dir, exe };
    run(&bench, &rows, wait_quiet)
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("berth-bench: {message}\n{USAGE}");
    ExitCode::from(2)
}

fn run(bench: &Bench, rows: &[&Row], wait_quiet: bool) -> ExitCode {
    let machine = Machine::probe();
    println!(
        "berth-bench ({} sizes) on {} CPUs ({}), kernel {}, {}; temp trees in {}",
        bench.sizes.profile,
        machine.cpus,
        machine.cpu_model,
        machine.kernel,
        machine.date,
        bench.dir.display()
    );
    if !machine.busy.is_empty() && !wait_quiet {
        println!(
            "warning: other builds are running ({}); figures will be noisy",
            machine.busy.join(", ")
        );
    }
    let started = Instant::now();
    let mut figures = Vec::new();
    let mut failed = false;
    let mut disturbed = Vec::new();
    let watch = BusyWatch::start();
    for row in rows {
        println!("\n== {}: {}", row.name, row.about);
        let attempts = if wait_quiet { ATTEMPTS } else { 1 };
        for attempt in 1..=attempts {
            if wait_quiet && !wait_for_quiet(QUIET_FOR, GIVE_UP) {
                println!("    (the machine did not become quiet; measuring anyway)");
            }
            let outcome = run_row(row, bench, &watch);
            if outcome.busy > 0 && attempt < attempts {
                println!("    (a build started during this row; running it again)");
                continue;
            }
            match outcome.figures {
                Some(row_figures) => figures.extend(row_figures),
                None => failed = true,
            }
            if outcome.busy > 0 {
                disturbed.push(row.name);
            }
            break;
        }
    }
    if !disturbed.is_empty() {
        println!(
            "\nwarning: other builds ran during: {} (re-run those rows on a quiet machine)",
            disturbed.join(", ")
        );
    }
    println!(
        "\n{}\n({} rows in {:.1} s)",
        markdown_table(&figures),
        rows.len(),
        started.elapsed().as_secs_f64()
    );
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

struct RowOutcome {
    /// The row's figures; `None` when it failed.
    figures: Option<Vec<Figure>>,
    /// The most other compilers seen at once while it ran.
    busy: usize,
}

/// Runs one row, printing its figures and details, and notes whether other
/// work ran beside it.
fn run_row(row: &Row, bench: &Bench, watch: &BusyWatch) -> RowOutcome {
    let row_start = Instant::now();
    let cpu_start = CpuTimes::now();
    watch.take();
    let figures = match (row.run)(bench) {
        Ok(row_figures) => {
            for fig in &row_figures {
                println!(
                    "{}: {} (floor {}, {}; target {}) {}",
                    fig.row,
                    fig.berth,
                    fig.floor.map_or_else(|| "—".to_owned(), |f| f.to_string()),
                    fig.comparison(),
                    fig.target,
                    fig.verdict()
                );
                for line in &fig.details {
                    println!("    {line}");
                }
            }
            Some(row_figures)
        }
        Err(err) => {
            println!("{}: FAILED: {err}", row.name);
            None
        }
    };
    let busy = watch.take();
    let others = CpuTimes::now().others_since(&cpu_start);
    let mut line = format!(
        "    ({:.1} s; other work used {:.0}% of the CPUs",
        row_start.elapsed().as_secs_f64(),
        others * 100.0
    );
    if busy > 0 {
        line.push_str(&format!("; up to {busy} other rustc processes ran: noisy"));
    }
    println!("{line})");
    RowOutcome { figures, busy }
}
