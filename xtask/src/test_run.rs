//! `cargo xtask test`: everything CI runs after fmt and clippy, each step
//! announced before it starts (`xtask: …`), in a temporary root of the
//! run's own.
//!
//! The steps: cargo-nextest, the test prerequisites (packages, a running
//! Docker Engine), the docker tests' image, the `berth` binary and a check
//! that namespaces can be made, `tidy`, the conformance suite of every
//! plugin in `plugins/`, the doctests, the Python module's tests (built
//! into a virtualenv under the target directory, see `python`), then
//! nextest over the workspace.
//! Every test process gets `TMPDIR` set to a fresh directory under the
//! target directory (`target/xtask-test/<pid>-<time>/tmp`), so the
//! leftover check afterwards counts only what this run left, whatever else
//! uses berth on the machine at the same time.
//!
//! An unusable Docker Engine or a failed image build fails the run in CI
//! (`CI=true`) and wherever an engine is installed; elsewhere the docker
//! tests report themselves skipped. Namespaces that cannot be made fail the
//! run. A test that skips itself passes in nextest's count: each says why
//! in a file the run names (`BERTH_TEST_SKIP_LOG`, see
//! `runtime_conformance::skip`), and the run lists those reasons and
//! `xtask: N passed, N failed, N skipped` counted from nextest's JUnit
//! report and pytest's, the skipped tests not among the passed; it then ends with
//! nextest's own summary, printed again as nextest printed it.
//!
//! A failure of any step fails the task once every step has run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};

use crate::{cargo, leftovers, plugin, prereq, python, tidy, workspace_root};

/// Says what the run does next.
fn step(what: &str) {
    println!("xtask: {what}");
}

/// The directories of one run: `tmp` (the tests' `TMPDIR`) and the skip
/// log beside it.
struct RunDir {
    dir: PathBuf,
}

impl RunDir {
    fn create(target: &Path) -> Result<RunDir> {
        let stamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let dir = target
            .join("xtask-test")
            .join(format!("{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(dir.join("tmp"))
            .with_context(|| format!("creating {}", dir.display()))?;
        Ok(RunDir { dir })
    }

    fn tmp(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    fn skip_log(&self) -> PathBuf {
        self.dir.join("skipped.tsv")
    }

    /// Sets the run's environment on a command.
    fn apply<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        command
            .env("TMPDIR", self.tmp())
            .env(runtime_conformance::skip::SKIP_LOG_ENV, self.skip_log())
    }
}

/// The target directory, as cargo has it.
pub(crate) fn target_dir(root: &Path) -> Result<PathBuf> {
    let output = Command::new(cargo())
        .current_dir(root)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!("cargo metadata failed ({})", output.status);
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("reading cargo metadata")?;
    metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata names no target directory")
}

pub(crate) fn test(extra: &[String]) -> Result<ExitCode> {
    let root = workspace_root();
    step("checking for cargo-nextest");
    crate::ensure_nextest()?;
    step("checking the test prerequisites (busybox-static, bubblewrap, a running Docker Engine)");
    prereq::ensure_test_prerequisites()?;
    let started = SystemTime::now();
    let target = target_dir(&root)?;
    let run = RunDir::create(&target)?;
    step(&format!(
        "the tests' temporary root for this run is {}",
        run.tmp().display()
    ));
    let mut failures: Vec<String> = Vec::new();

    step(&format!(
        "building the docker tests' image ({})",
        runtime_docker::test_image::IMAGE
    ));
    if let Err(reason) = build_test_image() {
        match runtime_docker::test_image::engine_required() {
            Some(why) => failures.push(format!(
                "the docker tests' image: {reason} (the docker tests must run here: {why})"
            )),
            None => eprintln!(
                "xtask: warning: the docker tests' image: {reason}; the docker tests will report \
                 themselves skipped"
            ),
        }
    }

    step("building the berth binary (for the plugin suites and the namespaces check)");
    let berth = plugin::build_berth()?;
    step("checking that namespaces can be made (berth doctor)");
    if let Err(problem) = check_namespaces(&berth, &run) {
        failures.push(format!("namespaces: {problem}"));
    }

    step("checking the repository's invariants (tidy)");
    let untidy = tidy::check(&root)?;
    for violation in &untidy {
        println!("{violation}");
    }
    if !untidy.is_empty() {
        failures.push(format!(
            "tidy found {} problem{} (listed above)",
            untidy.len(),
            if untidy.len() == 1 { "" } else { "s" }
        ));
    }

    for dir in plugin::workspace_plugins(&root) {
        step(&format!(
            "building plugin {} and running the conformance suite against it",
            dir.display()
        ));
        let code = plugin::run_suite(&dir, &berth, |command| {
            run.apply(command);
        })?;
        if code != ExitCode::SUCCESS {
            failures.push(format!("plugin conformance failed for {}", dir.display()));
        }
    }

    step("running the doctests (cargo test --workspace --doc)");
    let doctests = run
        .apply(Command::new(cargo()).current_dir(&root).args([
            "test",
            "--workspace",
            "--doc",
            "--no-fail-fast",
        ]))
        .status()
        .context("running cargo test --doc")?;
    if !doctests.success() {
        failures.push(format!("doctests failed ({doctests})"));
    }

    step(
        "building the Python module into a virtualenv (maturin develop) and running its tests \
         (pytest python/tests)",
    );
    let python_started = std::time::Instant::now();
    let python_counts = match python_tests(&root, &target, &run, &berth) {
        Ok((status, counts)) => {
            if !status.success() {
                failures.push(format!("the Python tests failed (pytest: {status})"));
            }
            if counts.is_none() {
                failures.push("pytest wrote no JUnit report".to_owned());
            }
            counts
        }
        Err(err) => {
            failures.push(format!("the Python tests: {err:#}"));
            None
        }
    };
    step(&format!(
        "the Python step took {:.0} s",
        python_started.elapsed().as_secs_f64()
    ));

    step("running the workspace's tests (cargo nextest run --workspace)");
    // nextest keeps its reports under the workspace's own `target/nextest`,
    // whatever the target directory.
    let junit = root.join("target/nextest/default/junit.xml");
    let _ = std::fs::remove_file(&junit);
    let mut nextest = Command::new(cargo());
    nextest
        .current_dir(&root)
        .args(["nextest", "run", "--workspace", "--no-fail-fast"])
        .args(extra);
    // The bench harness's `python` row runs with the module just built.
    let venv_python = python::Venv::at(&target, PYTHON_VENV).python();
    if venv_python.is_file() {
        nextest.env("BERTH_BENCH_PYTHON", venv_python);
    }
    let (status, summary) = run_nextest(run.apply(&mut nextest))?;

    // Killed processes may take a moment to be reaped.
    let mut left = leftovers::find(started, &run.tmp());
    for _ in 0..20 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
        left = leftovers::find(started, &run.tmp());
    }
    if !left.is_empty() {
        eprintln!(
            "xtask: the test run left these behind (kept in {}):",
            run.dir.display()
        );
        for item in &left {
            eprintln!("  {item}");
        }
        failures.push(format!("{} leftovers", left.len()));
    }

    let skips = read_skips(&run.skip_log());
    for line in skip_report(&skips) {
        println!("{line}");
    }
    for failure in &failures {
        eprintln!("xtask: {failure}");
    }
    let counts = std::fs::read_to_string(&junit)
        .ok()
        .and_then(|xml| junit_counts(&xml));
    if left.is_empty() {
        let _ = std::fs::remove_dir_all(&run.dir);
    }
    // nextest's tests (those that skipped themselves apart) and pytest's.
    let nextest = counts.map(|(tests, failed)| {
        let skipped = skips.len().min(tests.saturating_sub(failed));
        (tests - failed - skipped, failed, skipped)
    });
    let pytest = python_counts
        .map(|(tests, failed, skipped)| (tests.saturating_sub(failed + skipped), failed, skipped));
    if nextest.is_some() || pytest.is_some() {
        let (passed, failed, skipped) = [nextest, pytest]
            .into_iter()
            .flatten()
            .fold((0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2));
        if let Some((p, f, s)) = pytest {
            println!("xtask: of which pytest: {p} passed, {f} failed, {s} skipped");
        }
        println!("xtask: {passed} passed, {failed} failed, {skipped} skipped");
    }
    // The run ends with nextest's own summary, as it printed it.
    for line in &summary {
        eprintln!("{line}");
    }
    if !failures.is_empty() {
        return Ok(ExitCode::FAILURE);
    }
    Ok(crate::exit_code(status))
}

/// The virtualenv of the Python tests, under the target directory.
const PYTHON_VENV: &str = "python-venv";

/// Builds the Python module into the run's virtualenv and runs pytest over
/// `python/tests`: the docker tests' image, the namespace plugin and the
/// `berth` binary named in its environment. Returns pytest's status and
/// its `(tests, failed, skipped)`.
fn python_tests(
    root: &Path,
    target: &Path,
    run: &RunDir,
    berth: &Path,
) -> Result<(std::process::ExitStatus, Option<python::Counts>)> {
    let venv = python::Venv::ensure(target, PYTHON_VENV)?;
    venv.develop(root, false)?;
    let namespace = plugin::build_cdylib(&root.join("plugins/runtime-namespace"))?;
    let junit = run.dir.join("pytest.xml");
    let status = python::pytest(&venv, root, &junit, |command| {
        run.apply(command)
            .env("BERTH_BIN", berth)
            .env("BERTH_TEST_NAMESPACE_PLUGIN", &namespace)
            .env("BERTH_TEST_DOCKER_IMAGE", runtime_docker::test_image::IMAGE);
    })?;
    let counts = std::fs::read_to_string(&junit)
        .ok()
        .and_then(|xml| python::junit_counts(&xml));
    Ok((status, counts))
}

/// Runs nextest, passing its stderr (its progress and summary) through as
/// it comes, and returns its exit status with the lines of its final
/// summary (from its last `────` rule on), which the run prints again last.
fn run_nextest(command: &mut Command) -> Result<(std::process::ExitStatus, Vec<String>)> {
    use std::io::{BufRead, IsTerminal, Write};
    if std::io::stderr().is_terminal() {
        command.args(["--color", "always"]);
    }
    let mut child = command
        .stderr(Stdio::piped())
        .spawn()
        .context("running cargo nextest")?;
    let mut summary = Vec::new();
    if let Some(stderr) = child.stderr.take() {
        let mut out = std::io::stderr().lock();
        for line in std::io::BufReader::new(stderr).split(b'\n') {
            let line =
                String::from_utf8_lossy(&line.context("reading nextest's output")?).into_owned();
            let _ = writeln!(out, "{line}");
            if line.trim_start().starts_with("────") {
                summary.clear();
            }
            summary.push(line);
        }
    }
    let status = child.wait().context("waiting for cargo nextest")?;
    if !summary
        .first()
        .is_some_and(|line| line.trim_start().starts_with("────"))
    {
        summary.clear();
    }
    Ok((status, summary))
}

/// Reaches the engine and builds the image the docker tests use, as they
/// would (`runtime_docker::test_image`).
fn build_test_image() -> std::result::Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| err.to_string())?;
    runtime.block_on(async {
        let docker = runtime_docker::test_image::connect().await?;
        runtime_docker::test_image::ensure(&docker).await
    })
}

/// Asks `berth doctor --json` whether namespaces can be made here.
fn check_namespaces(berth: &Path, run: &RunDir) -> std::result::Result<(), String> {
    let output = run
        .apply(Command::new(berth).args(["doctor", "--json"]))
        .output()
        .map_err(|err| format!("running {}: {err}", berth.display()))?;
    let checks: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|err| format!("reading berth doctor's JSON: {err}"))?;
    let check = checks
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["check"] == "namespaces"))
        .ok_or("berth doctor has no namespaces check")?;
    if check["ok"] == true {
        Ok(())
    } else {
        Err(format!(
            "{} (the namespace plugin and its tests need them)",
            check["detail"].as_str().unwrap_or("not available")
        ))
    }
}

/// The skipped tests and why, from the skip log (`TEST<tab>WHY` lines): a
/// test skipped twice counts once.
fn read_skips(log: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .map(|(test, why)| (test.to_owned(), why.to_owned()))
        .collect()
}

/// The lines that report the skips: a count, then each reason with the
/// number of tests it skipped, most first.
fn skip_report(skips: &BTreeMap<String, String>) -> Vec<String> {
    if skips.is_empty() {
        return Vec::new();
    }
    let mut reasons: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (test, why) in skips {
        reasons.entry(why).or_default().insert(test);
    }
    let mut reasons: Vec<(&str, BTreeSet<&str>)> = reasons.into_iter().collect();
    reasons.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(b.0)));
    let mut lines = vec![format!(
        "xtask: {} test{} skipped themselves (nextest counts them as passed), why:",
        skips.len(),
        if skips.len() == 1 { "" } else { "s" }
    )];
    for (why, tests) in reasons {
        let example = tests.iter().next().copied().unwrap_or_default();
        lines.push(match tests.len() {
            1 => format!("  1  {why}  ({example})"),
            n => format!("  {n}  {why}  (e.g. {example})"),
        });
    }
    lines
}

/// The tests run and those that failed, from a JUnit report's root
/// element (`<testsuites tests="N" failures="N" errors="N" …>`).
fn junit_counts(xml: &str) -> Option<(usize, usize)> {
    let start = xml.find("<testsuites")?;
    let element = &xml[start..start + xml[start..].find('>')?];
    let attribute = |name: &str| -> Option<usize> {
        let at = element.find(&format!(" {name}=\""))? + name.len() + 3;
        element[at..].split('"').next()?.parse().ok()
    };
    let tests = attribute("tests")?;
    let failed = attribute("failures").unwrap_or(0) + attribute("errors").unwrap_or(0);
    Some((tests, failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junit_counts_come_from_the_root_element() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="812" failures="2" errors="1" uuid="x" timestamp="t" time="9.5">
<testsuite name="a" tests="3" failures="0">"#;
        assert_eq!(junit_counts(xml), Some((812, 3)));
        assert_eq!(junit_counts("<testsuites tests=\"4\">"), Some((4, 0)));
        assert_eq!(junit_counts("not junit"), None);
    }

    #[test]
    fn skips_are_counted_once_per_test_and_grouped_by_reason() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("skipped.tsv");
        std::fs::write(
            &log,
            "docker::a\tthe Docker Engine is not usable here: no socket\n\
             docker::b\tthe Docker Engine is not usable here: no socket\n\
             docker::b\tthe Docker Engine is not usable here: no socket\n\
             cgroup::c\tc needs root\n\
             a line without a tab\n",
        )
        .unwrap();
        let skips = read_skips(&log);
        assert_eq!(skips.len(), 3);
        let report = skip_report(&skips);
        assert_eq!(
            report,
            [
                "xtask: 3 tests skipped themselves (nextest counts them as passed), why:",
                "  2  the Docker Engine is not usable here: no socket  (e.g. docker::a)",
                "  1  c needs root  (cgroup::c)",
            ]
        );
        assert!(skip_report(&read_skips(&dir.path().join("none"))).is_empty());
    }

    /// What a test run sees: a skip recorded through
    /// `runtime_conformance::skip` lands in the log the run names.
    #[test]
    fn the_skip_log_is_what_the_tests_write() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir {
            dir: dir.path().to_path_buf(),
        };
        let exe = std::env::current_exe().unwrap();
        let status = run
            .apply(Command::new(exe).args([
                "--exact",
                "test_run::tests::records_a_skip_when_asked",
                "--include-ignored",
            ]))
            .env("XTASK_RECORD_A_SKIP", "1")
            .output()
            .unwrap();
        assert!(status.status.success(), "{status:?}");
        let skips = read_skips(&run.skip_log());
        assert_eq!(
            skips
                .get("test_run::tests::records_a_skip_when_asked")
                .map(String::as_str),
            Some("nothing to do here"),
            "{skips:?}"
        );
    }

    /// A stand-in for `berth` whose `doctor --json` says `namespaces` is
    /// `ok` or not.
    fn fake_berth(dir: &Path, ok: bool) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.join(format!("berth-{ok}"));
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho '[{{\"check\": \"temporary directory\", \"ok\": true, \"detail\": \"\"}}, {{\"check\": \"namespaces\", \"ok\": {ok}, \"detail\": \"user: Operation not permitted\"}}]'\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn namespaces_that_cannot_be_made_fail_the_check_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir {
            dir: dir.path().to_path_buf(),
        };
        assert_eq!(
            check_namespaces(&fake_berth(dir.path(), true), &run),
            Ok(())
        );
        let err = check_namespaces(&fake_berth(dir.path(), false), &run).unwrap_err();
        assert!(err.contains("user: Operation not permitted"), "{err}");
        let err = check_namespaces(&dir.path().join("missing"), &run).unwrap_err();
        assert!(err.contains("missing"), "{err}");
    }

    /// Run by [`the_skip_log_is_what_the_tests_write`] in a process of its
    /// own.
    #[test]
    #[ignore = "run by the_skip_log_is_what_the_tests_write"]
    fn records_a_skip_when_asked() {
        if std::env::var_os("XTASK_RECORD_A_SKIP").is_some() {
            runtime_conformance::skipped!("nothing to do here");
        }
    }
}
