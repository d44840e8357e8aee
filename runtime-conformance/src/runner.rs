//! Running the cases and reporting.

use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::{Case, CaseContext, Target, all_cases};

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
            let line = match outcome {
                CaseOutcome::Passed => format!("ok      {name} ({:.2}s)", took.as_secs_f64()),
                CaseOutcome::Failed(why) => format!("FAILED  {name}: {why}"),
                CaseOutcome::Skipped(why) => format!("skipped {name}: {why}"),
            };
            out.push_str(&format!("conformance[{}] {line}\n", self.target));
        }
        out.push_str(&self.summary());
        out.push('\n');
        out
    }
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
        target,
        capabilities,
        temp,
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

/// Runs the suite on a fresh multi-threaded runtime, prints the report and
/// panics when a case failed. Meant for a `#[test]`.
#[allow(clippy::print_stdout, reason = "the report is this function's output")]
pub fn run_blocking(target: Target) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building a tokio runtime");
    let report = runtime.block_on(run_suite(target));
    print!("{}", report.render());
    assert_eq!(
        report.failed(),
        0,
        "conformance failures:\n{}",
        report.render()
    );
}
