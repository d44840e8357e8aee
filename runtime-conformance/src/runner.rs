//! Running the cases and reporting.

use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::{CONTRACT, Case, CaseContext, Target, all_cases, case_named};

/// How long one case may take before it counts as hung.
const CASE_TIMEOUT: Duration = Duration::from_secs(90);

/// Cases run at once (each spawns its own processes or containers).
const PARALLEL_CASES: usize = 4;

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseOutcome {
    /// It held.
    Passed,
    /// It did not; the string says how.
    Failed(String),
    /// The backend does not claim what it needs.
    Skipped(&'static str),
}

/// The suite's results, one per case in suite order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The target's label.
    pub target: String,
    /// Each case's name, outcome and duration.
    pub cases: Vec<(&'static str, CaseOutcome, Duration)>,
}

impl Report {
    fn count(&self, pick: fn(&CaseOutcome) -> bool) -> usize {
        self.cases.iter().filter(|(_, o, _)| pick(o)).count()
    }

    /// Cases that held.
    pub fn passed(&self) -> usize {
        self.count(|o| matches!(o, CaseOutcome::Passed))
    }

    /// Cases that failed.
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, CaseOutcome::Failed(_)))
    }

    /// Cases skipped for missing capabilities.
    pub fn skipped(&self) -> usize {
        self.count(|o| matches!(o, CaseOutcome::Skipped(_)))
    }

    /// `N passed, N failed, N skipped`.
    pub fn summary(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped",
            self.passed(),
            self.failed(),
            self.skipped()
        )
    }

    /// One line per case, then the summary line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, outcome, took) in &self.cases {
            out.push_str(&case_line(&self.target, name, outcome, *took));
            out.push('\n');
        }
        out.push_str(&self.summary());
        out.push('\n');
        out
    }
}

/// A case's line in a report: `conformance[TARGET] ok NAME [RULE] (0.02s)`,
/// or `FAILED`/`skipped` with the reason. A failure names its rule and
/// where the rule is stated.
fn case_line(target: &str, name: &str, outcome: &CaseOutcome, took: Duration) -> String {
    let rule = case_named(name).map_or("?", |case| case.rule);
    let line = match outcome {
        CaseOutcome::Passed => format!("ok      {name} [{rule}] ({:.2}s)", took.as_secs_f64()),
        CaseOutcome::Failed(why) => {
            format!("FAILED  {name} [{rule}, stated in {CONTRACT}]: {why}")
        }
        CaseOutcome::Skipped(why) => format!("skipped {name} [{rule}]: {why}"),
    };
    format!("conformance[{target}] {line}")
}

/// The start of the id of every session case `case` makes:
/// `conformance-PID-CASE-`. Backends label what they make with a session's
/// id, so a check for leftovers finds what one case left behind, even
/// while other cases run in the same process.
pub fn case_session_prefix(case: &str) -> String {
    format!("conformance-{}-{case}-", std::process::id())
}

/// Runs every case the target supports and returns the report.
pub async fn run_suite(target: Target) -> Report {
    let capabilities = match target.registry.get(&target.spec.backend_type) {
        Ok(backend) => backend.info().capabilities,
        Err(err) => {
            return Report {
                target: target.label.clone(),
                cases: vec![(
                    "registry",
                    CaseOutcome::Failed(err.to_string()),
                    Duration::ZERO,
                )],
            };
        }
    };
    let filter = std::env::var("BERTH_CONFORMANCE_FILTER").unwrap_or_default();
    let selected: Vec<(usize, Case)> = all_cases()
        .into_iter()
        .filter(|c| target.only.is_empty() || target.only.iter().any(|o| o == c.name))
        .filter(|c| filter.is_empty() || c.name.contains(&filter))
        .enumerate()
        .collect();

    let mut results: Vec<Option<(&'static str, CaseOutcome, Duration)>> =
        vec![None; selected.len()];
    let mut pending = selected.into_iter();
    let mut running = JoinSet::new();
    loop {
        while running.len() < PARALLEL_CASES {
            let Some((index, case)) = pending.next() else {
                break;
            };
            if let Err(reason) = (case.requires)(&capabilities) {
                results[index] = Some((case.name, CaseOutcome::Skipped(reason), Duration::ZERO));
                continue;
            }
            let target = target.clone();
            let capabilities = capabilities.clone();
            running.spawn(async move {
                let started = Instant::now();
                let outcome = run_case(case, target, capabilities).await;
                (index, case.name, outcome, started.elapsed())
            });
        }
        match running.join_next().await {
            Some(Ok((index, name, outcome, took))) => results[index] = Some((name, outcome, took)),
            Some(Err(err)) => {
                // run_case catches a case's panic, so this is the runner's own.
                panic!("conformance runner task failed: {err}");
            }
            None => break,
        }
    }
    let cases = results
        .into_iter()
        .map(|r| {
            r.unwrap_or((
                "(case panicked)",
                CaseOutcome::Failed("panicked".into()),
                Duration::ZERO,
            ))
        })
        .collect();
    Report {
        target: target.label,
        cases,
    }
}

async fn run_case(
    case: Case,
    target: Target,
    capabilities: session_core::runtime::Capabilities,
) -> CaseOutcome {
    let temp = match tempfile::Builder::new()
        .prefix("berth-conformance-")
        .tempdir()
    {
        Ok(temp) => temp,
        Err(err) => return CaseOutcome::Failed(format!("creating a temp dir: {err}")),
    };
    let ctx = CaseContext {
        case: case.name,
        target,
        capabilities,
        temp,
        sessions: std::sync::atomic::AtomicU32::new(0),
    };
    // The case runs in a task of its own so a panic becomes a failure.
    let task = tokio::spawn(async move {
        let verdict = tokio::time::timeout(CASE_TIMEOUT, (case.run)(&ctx)).await;
        (verdict, ctx)
    });
    let (verdict, ctx) = match task.await {
        Ok(done) => done,
        Err(err) => return CaseOutcome::Failed(format!("panicked: {err}")),
    };
    let outcome = match verdict {
        Ok(Ok(())) => CaseOutcome::Passed,
        Ok(Err(why)) => CaseOutcome::Failed(why),
        Err(_) => CaseOutcome::Failed(format!("did not finish within {CASE_TIMEOUT:?}")),
    };
    // Whatever the verdict, the case's sessions must be gone by now.
    let leftovers = ctx.leftover_sessions();
    match outcome {
        CaseOutcome::Passed if !leftovers.is_empty() => {
            CaseOutcome::Failed(format!("left session directories behind: {leftovers:?}"))
        }
        other => other,
    }
}

/// A tokio runtime for a blocking entry point.
fn blocking_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building a tokio runtime")
}

/// Runs the case called `name` against `target` on a fresh tokio runtime
/// and prints its line; returns its outcome. A case the target's
/// capabilities rule out, or that `Target::only` or
/// `BERTH_CONFORMANCE_FILTER` leave out, is skipped.
///
/// # Panics
///
/// When no case is called `name`.
#[allow(
    clippy::print_stdout,
    reason = "the case's line is this function's output"
)]
pub fn run_one_blocking(target: Target, name: &str) -> CaseOutcome {
    let case = case_named(name).unwrap_or_else(|| panic!("no conformance case is called {name}"));
    let label = target.label.clone();
    let filter = std::env::var("BERTH_CONFORMANCE_FILTER").unwrap_or_default();
    let (outcome, took) = if !target.only.is_empty() && !target.only.iter().any(|o| o == name) {
        (
            CaseOutcome::Skipped("left out by the target's list of cases"),
            Duration::ZERO,
        )
    } else if !filter.is_empty() && !name.contains(&filter) {
        (
            CaseOutcome::Skipped("left out by BERTH_CONFORMANCE_FILTER"),
            Duration::ZERO,
        )
    } else {
        match target.registry.get(&target.spec.backend_type) {
            Err(err) => (CaseOutcome::Failed(err.to_string()), Duration::ZERO),
            Ok(backend) => {
                let capabilities = backend.info().capabilities;
                match (case.requires)(&capabilities) {
                    Err(reason) => (CaseOutcome::Skipped(reason), Duration::ZERO),
                    Ok(()) => {
                        let started = Instant::now();
                        let outcome =
                            blocking_runtime().block_on(run_case(case, target, capabilities));
                        (outcome, started.elapsed())
                    }
                }
            }
        }
    };
    println!("{}", case_line(&label, name, &outcome, took));
    if let CaseOutcome::Skipped(why) = &outcome {
        crate::skip::record(&format!("{label} {name}: {why}"));
    }
    outcome
}

/// Runs one case like [`run_one_blocking`] and panics when it failed (see
/// [`assert_held`]). The body of each test
/// [`conformance_tests!`](crate::conformance_tests) makes.
pub fn run_case_blocking(target: Target, name: &str) {
    let label = target.label.clone();
    let outcome = run_one_blocking(target, name);
    assert_held(&label, name, &outcome);
}

/// Panics when `outcome` is a failure, with the case's line: its name, its
/// rule, the document that states the rule, and what went wrong.
pub fn assert_held(target: &str, name: &str, outcome: &CaseOutcome) {
    if let CaseOutcome::Failed(_) = outcome {
        panic!("{}", case_line(target, name, outcome, Duration::ZERO));
    }
}

/// Runs the suite on a fresh multi-threaded runtime, prints the report and
/// panics when a case failed. Meant for a `#[test]`.
#[allow(clippy::print_stdout, reason = "the report is this function's output")]
pub fn run_blocking(target: Target) {
    let report = blocking_runtime().block_on(run_suite(target));
    print!("{}", report.render());
    assert_eq!(
        report.failed(),
        0,
        "conformance failures:\n{}",
        report.render()
    );
}
