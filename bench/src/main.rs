//! `berth-bench [--quick] [--dir DIR] [ROW…]`: measures SPEC §11's rows and
//! prints each figure beside its floor, then a Markdown table. Run it
//! through `cargo xtask bench`, which builds it in release mode.

// A benchmark reports on its terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use berth_bench::machine::{BusyWatch, CpuTimes, Machine};
use berth_bench::report::markdown_table;
use berth_bench::rows::stream::{CHILD_FLAG, throughput_child};
use berth_bench::{Bench, ROWS, Row, Sizes, find_row};

const USAGE: &str = "usage: berth-bench [--quick | --tiny] [--dir DIR] [ROW…]   (rows: --list; --tiny is for tests)";

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
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => sizes = Sizes::quick(),
            "--tiny" => sizes = Sizes::tiny(),
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
    run(&bench, &rows)
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("berth-bench: {message}\n{USAGE}");
    ExitCode::from(2)
}

fn run(bench: &Bench, rows: &[&Row]) -> ExitCode {
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
    if !machine.busy.is_empty() {
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
        let row_start = Instant::now();
        let cpu_start = CpuTimes::now();
        watch.take();
        match (row.run)(bench) {
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
                figures.extend(row_figures);
            }
            Err(err) => {
                println!("{}: FAILED: {err}", row.name);
                failed = true;
            }
        }
        let busy = watch.take();
        let others = CpuTimes::now().others_since(&cpu_start);
        let mut line = format!(
            "    ({:.1} s; other work used {:.0}% of the CPUs",
            row_start.elapsed().as_secs_f64(),
            others * 100.0
        );
        if busy > 0 {
            line.push_str(&format!("; up to {busy} other rustc processes ran: noisy"));
            disturbed.push(row.name);
        }
        println!("{line})");
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
