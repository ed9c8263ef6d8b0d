//! Runs checks and reports them. A check is a named function returning
//! `Result<(), String>`; the runner selects checks by name (`--only`,
//! `--skip`), runs each inside `catch_unwind` with its own [`Session`] (so a
//! panic or an unexpected answer fails that one check and its resources are
//! still deleted), and formats the `PASS`/`FAIL` lines and the summary.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::session::{Ctx, Session};

/// What a check returns: `Err` carries the failure reason.
pub type CheckResult = Result<(), String>;

/// A check's body.
pub type CheckFn = fn(&Session) -> CheckResult;

/// One entry in the check table.
#[derive(Clone, Copy)]
pub struct Check {
    /// `area/what_is_checked`; what `--only`/`--skip` match against.
    pub name: &'static str,
    /// The check itself.
    pub run: CheckFn,
}

impl Check {
    /// Pairs a name with its function (usable in `const` tables).
    pub const fn new(name: &'static str, run: CheckFn) -> Self {
        Self { name, run }
    }
}

/// How one check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every assertion held and clean-up succeeded.
    Pass,
    /// The reason, on one line.
    Fail(String),
}

/// A finished check.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The check's name.
    pub name: String,
    /// Pass or fail.
    pub outcome: Outcome,
    /// Wall-clock time including clean-up.
    pub duration: Duration,
}

impl CaseResult {
    /// The report line: `PASS name` or `FAIL name: reason`.
    pub fn line(&self) -> String {
        match &self.outcome {
            Outcome::Pass => format!("PASS {}", self.name),
            Outcome::Fail(reason) => format!("FAIL {}: {reason}", self.name),
        }
    }
}

/// Counts `(passed, failed)`.
pub fn count(results: &[CaseResult]) -> (usize, usize) {
    let passed = results
        .iter()
        .filter(|r| r.outcome == Outcome::Pass)
        .count();
    (passed, results.len() - passed)
}

/// The closing line: `N passed, M failed`.
pub fn summary_line(results: &[CaseResult]) -> String {
    let (passed, failed) = count(results);
    format!("{passed} passed, {failed} failed")
}

/// Checks whose name contains any `only` substring (all when `only` is
/// empty) and none of the `skip` substrings, in table order.
pub fn select(checks: &[Check], only: &[String], skip: &[String]) -> Vec<Check> {
    checks
        .iter()
        .filter(|c| only.is_empty() || only.iter().any(|o| c.name.contains(o.as_str())))
        .filter(|c| !skip.iter().any(|s| c.name.contains(s.as_str())))
        .copied()
        .collect()
}

/// Where the panic hook leaves the message and location of the last panic.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Replaces the default panic hook (which prints to stderr in the middle of
/// the report) with one that keeps the message for the FAIL line.
pub fn capture_panics() {
    panic::set_hook(Box::new(|info| {
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(info.to_string());
        }
    }));
}

/// Runs one check with a fresh session and always cleans up after it.
pub fn run_check(ctx: &Ctx, check: &Check) -> CaseResult {
    let started = Instant::now();
    let outcome = guarded(|| {
        let session = Session::new(ctx);
        let result = (check.run)(&session);
        match (result, session.cleanup()) {
            (Ok(()), Ok(())) => Ok(()),
            (Ok(()), Err(c)) => Err(format!("clean-up failed: {c}")),
            (Err(e), Ok(())) => Err(e),
            (Err(e), Err(c)) => Err(format!("{e} (clean-up also failed: {c})")),
        }
    });
    CaseResult {
        name: check.name.to_owned(),
        outcome,
        duration: started.elapsed(),
    }
}

/// Runs `f`, turning an `Err` or a panic into a one-line failure.
pub fn guarded(f: impl FnOnce() -> CheckResult) -> Outcome {
    if let Ok(mut last) = LAST_PANIC.lock() {
        *last = None;
    }
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => Outcome::Pass,
        Ok(Err(reason)) => Outcome::Fail(one_line(&reason)),
        Err(payload) => {
            // The hook's text ("panicked at file:line: msg") has the location.
            let message = match LAST_PANIC.lock().ok().and_then(|mut l| l.take()) {
                Some(hooked) => format!("check {hooked}"),
                None => format!("check panicked: {}", payload_message(payload.as_ref())),
            };
            Outcome::Fail(one_line(&message))
        }
    }
}

fn payload_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}

/// Folds line breaks so each result stays on its own line.
pub fn one_line(s: &str) -> String {
    s.split(['\r', '\n'])
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(_: &Session) -> CheckResult {
        Ok(())
    }

    fn result(name: &str, outcome: Outcome) -> CaseResult {
        CaseResult {
            name: name.into(),
            outcome,
            duration: Duration::ZERO,
        }
    }

    #[test]
    fn lines_and_summary() {
        let results = [
            result("users/a", Outcome::Pass),
            result("users/b", Outcome::Fail("expected 201, got 500".into())),
            result("groups/c", Outcome::Pass),
        ];
        assert_eq!(results[0].line(), "PASS users/a");
        assert_eq!(results[1].line(), "FAIL users/b: expected 201, got 500");
        assert_eq!(count(&results), (2, 1));
        assert_eq!(summary_line(&results), "2 passed, 1 failed");
        assert_eq!(summary_line(&[]), "0 passed, 0 failed");
    }

    #[test]
    fn select_applies_only_then_skip() {
        let table = [
            Check::new("users/create", ok),
            Check::new("users/delete", ok),
            Check::new("groups/create", ok),
        ];
        let names = |only: &[&str], skip: &[&str]| -> Vec<&str> {
            let only: Vec<String> = only.iter().map(|s| s.to_string()).collect();
            let skip: Vec<String> = skip.iter().map(|s| s.to_string()).collect();
            select(&table, &only, &skip)
                .iter()
                .map(|c| c.name)
                .collect()
        };
        assert_eq!(names(&[], &[]).len(), 3);
        assert_eq!(names(&["create"], &[]), ["users/create", "groups/create"]);
        assert_eq!(names(&["users/", "groups/"], &["delete"]).len(), 2);
        assert_eq!(names(&[], &["users"]), ["groups/create"]);
    }

    #[test]
    fn guarded_turns_errors_and_panics_into_failures() {
        assert_eq!(guarded(|| Ok(())), Outcome::Pass);
        assert_eq!(
            guarded(|| Err("bad\nthing".into())),
            Outcome::Fail("bad | thing".into())
        );
        let Outcome::Fail(reason) = guarded(|| panic!("boom")) else {
            panic!("a panic must fail the check");
        };
        assert!(reason.starts_with("check panicked") && reason.contains("boom"));
    }
}
