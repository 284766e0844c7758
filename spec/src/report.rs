//! What a run found: one [`CaseResult`] per case, and the [`Report`] the
//! binary prints.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// The outcome of one manifest case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// The case's `name` (or `#index` when the manifest gives none).
    pub name: String,
    /// The case's `kind` (empty when missing).
    pub kind: String,
    /// What differed; empty when the case passed.
    pub failures: Vec<String>,
    /// Extra information for verbose output (e.g. error categories).
    pub notes: Vec<String>,
}

impl CaseResult {
    /// Whether the case passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The outcome of a whole run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// One result per manifest case, in manifest order.
    pub cases: Vec<CaseResult>,
    /// Set when the run could not start (missing or unreadable manifest).
    pub fatal: Option<String>,
    /// Whether `ok` lines and notes are included in [`Report::lines`].
    pub verbose: bool,
}

impl Report {
    /// Number of cases that passed.
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.passed()).count()
    }

    /// Number of cases that failed.
    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed()
    }

    /// Names of the failed cases, in manifest order.
    pub fn failed_names(&self) -> Vec<&str> {
        self.cases
            .iter()
            .filter(|c| !c.passed())
            .map(|c| c.name.as_str())
            .collect()
    }

    /// The per-case output lines: `FAIL <name>: <what>` for every failed
    /// case, and in verbose mode `ok <name>` lines (with notes).
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.cases {
            let notes = if self.verbose && !c.notes.is_empty() {
                format!(" [{}]", c.notes.join("; "))
            } else {
                String::new()
            };
            if c.passed() {
                if self.verbose {
                    out.push(format!("ok {}{notes}", c.name));
                }
            } else {
                out.push(format!("FAIL {}: {}{notes}", c.name, c.failures.join("; ")));
            }
        }
        out
    }

    /// The closing line: `N passed, N failed`.
    pub fn summary(&self) -> String {
        format!("{} passed, {} failed", self.passed(), self.failed())
    }

    /// Process exit code: 0 if every case passed, 1 if any failed, 2 if the
    /// run could not start.
    pub fn exit_code(&self) -> u8 {
        if self.fatal.is_some() {
            2
        } else if self.failed() > 0 {
            1
        } else {
            0
        }
    }
}

/// Collects what a case found.
#[derive(Debug, Default)]
pub(crate) struct Out {
    pub(crate) fails: Vec<String>,
    pub(crate) notes: Vec<String>,
}

impl Out {
    pub(crate) fn fail(&mut self, m: impl Into<String>) {
        self.fails.push(m.into());
    }
    pub(crate) fn fail_all(&mut self, prefix: &str, ms: Vec<String>) {
        for m in ms {
            self.fails.push(format!("{prefix}{m}"));
        }
    }
    pub(crate) fn note(&mut self, m: impl Into<String>) {
        self.notes.push(m.into());
    }
}

/// Runs one case's check, turning a panic into a failure naming the case.
pub(crate) fn guarded(name: &str, check: impl FnOnce(&mut Out)) -> Out {
    let mut out = Out::default();
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| check(&mut out))) {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".into());
        out.fail(format!("PANIC while checking {name}: {msg}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_a_failure_naming_the_case() {
        let out = guarded("some-case", |out| {
            out.fail("first");
            let v: Vec<u8> = Vec::new();
            let _ = v[usize::from(v.is_empty())]; // index out of bounds
        });
        assert_eq!(out.fails.len(), 2);
        assert_eq!(out.fails[0], "first");
        assert!(
            out.fails[1].starts_with("PANIC while checking some-case: index out of bounds"),
            "{}",
            out.fails[1]
        );
        let out = guarded("x", |_| std::panic::panic_any(7u8));
        assert_eq!(
            out.fails,
            ["PANIC while checking x: non-string panic payload"]
        );
    }
}
