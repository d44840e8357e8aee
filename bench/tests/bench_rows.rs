//! Every row runs end to end at tiny sizes, and the binary runs a quick row:
//! the harness keeps working as the code it measures changes. Figures are
//! checked for shape only; speed is never asserted here.

use std::path::PathBuf;
use std::process::Command;

use berth_bench::{Bench, Figure, ROWS, Sizes, Value, find_row};

fn tiny_bench(dir: &tempfile::TempDir) -> Bench {
    Bench {
        sizes: Sizes::tiny(),
        dir: dir.path().to_path_buf(),
        exe: PathBuf::from(env!("CARGO_BIN_EXE_berth-bench")),
    }
}

fn check(row: &str) -> Vec<Figure> {
    let dir = tempfile::tempdir().unwrap();
    let bench = tiny_bench(&dir);
    let figures = (find_row(row).unwrap().run)(&bench).unwrap_or_else(|err| panic!("{row}: {err}"));
    assert!(!figures.is_empty(), "{row} reported nothing");
    for fig in &figures {
        let measured = match fig.berth {
            Value::Time(d) => !d.is_zero(),
            Value::Rate(r) => r.is_finite() && r > 0.0,
            Value::Bytes(b) => b > 0,
            Value::PerSecond(r) => r.is_finite() && r > 0.0,
        };
        assert!(measured, "{row}: empty figure {fig:?}");
        assert!(
            fig.passed().is_some(),
            "{row}: no verdict possible for {fig:?}"
        );
    }
    // Everything a row makes is removed by the row.
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "{row} left files behind"
    );
    figures
}

#[test]
fn bench_exec_row() {
    let figures = check("exec");
    assert!(figures[0].floor.is_some());
}

#[test]
fn bench_stream_latency_row() {
    check("stream-latency");
}

#[test]
fn bench_stream_throughput_row_runs_children() {
    let figures = check("stream-throughput");
    assert_eq!(figures.len(), 6);
}

#[test]
fn bench_snapshot_row() {
    assert_eq!(check("snapshot").len(), 2);
}

#[test]
fn bench_extract_row() {
    assert_eq!(check("extract").len(), 3);
}

#[test]
fn bench_diff_row() {
    assert_eq!(check("diff").len(), 2);
}

#[test]
fn bench_session_row() {
    check("session");
}

#[test]
fn bench_rows_are_found_by_name_and_number() {
    for (i, row) in ROWS.iter().enumerate() {
        assert_eq!(find_row(row.name).unwrap().name, row.name);
        assert_eq!(find_row(&(i + 1).to_string()).unwrap().name, row.name);
    }
    assert!(find_row("0").is_none());
    assert!(find_row("nope").is_none());
}

#[test]
fn bench_binary_runs_a_quick_row() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_berth-bench"))
        .args(["--quick", "--dir"])
        .arg(dir.path())
        .arg("exec")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("| row | berth | floor | ratio | target | result |"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| local `execute(\"true\")` per call |"),
        "{stdout}"
    );
}

#[test]
fn bench_binary_refuses_an_unknown_row() {
    let out = Command::new(env!("CARGO_BIN_EXE_berth-bench"))
        .arg("no-such-row")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// The `python` row needs the module installed in a Python; `cargo xtask
/// test` names its virtualenv's (with the debug build of the module).
#[test]
fn bench_python_row() {
    if std::env::var_os(berth_bench::rows::python::PYTHON_ENV).is_none() {
        runtime_conformance::skipped!(
            "{} names no Python with berth installed (cargo xtask test sets it)",
            berth_bench::rows::python::PYTHON_ENV
        );
        return;
    }
    assert_eq!(check("python").len(), 4);
}
