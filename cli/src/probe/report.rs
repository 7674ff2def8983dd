//! The report of `xmppfed probe`: steps, the overall outcome, the exit code, and the human
//! and JSON forms.

use serde::Serialize;
use std::fmt::Write as _;
use std::time::Instant;

/// How a step ended.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    Skip,
}

impl Status {
    pub(super) fn mark(self) -> &'static str {
        match self {
            Status::Ok => "[ ok ]",
            Status::Warn => "[warn]",
            Status::Fail => "[FAIL]",
            Status::Skip => "[skip]",
        }
    }
}

/// One step of the diagnosis.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// A stable identifier (see the module documentation).
    pub name: String,
    /// What the step was about: a DNS name, an address, a domain.
    pub target: Option<String>,
    pub status: Status,
    pub duration_ms: u64,
    /// What was found.
    pub detail: String,
    /// For failures and warnings: why, in plain words.
    pub cause: Option<String>,
    /// For failures and warnings: what to do about it.
    pub fix: Option<String>,
}

impl Step {
    pub(super) fn new(
        name: &str,
        target: Option<String>,
        started: Instant,
        status: Status,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            name: name.to_string(),
            target,
            status,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            detail: detail.into(),
            cause: None,
            fix: None,
        }
    }

    pub(super) fn because(mut self, advice: Advice) -> Self {
        self.cause = Some(advice.cause);
        self.fix = Some(advice.fix);
        self
    }
}

/// The overall verdict.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Warn,
    Fail,
}

/// Everything `xmppfed probe` found.
#[derive(Serialize, Debug, Clone)]
pub struct Report {
    pub domain: String,
    pub from: Option<String>,
    pub steps: Vec<Step>,
    pub outcome: Outcome,
}

impl Report {
    pub fn new(domain: String, from: Option<String>, steps: Vec<Step>) -> Self {
        let outcome = if steps.iter().any(|s| s.status == Status::Fail) {
            Outcome::Fail
        } else if steps.iter().any(|s| s.status == Status::Warn) {
            Outcome::Warn
        } else {
            Outcome::Ok
        };
        Self {
            domain,
            from,
            steps,
            outcome,
        }
    }

    /// 0 when nothing failed (warnings allowed), 1 when a step failed.
    pub fn exit_code(&self) -> u8 {
        match self.outcome {
            Outcome::Fail => 1,
            Outcome::Ok | Outcome::Warn => 0,
        }
    }

    /// One line per step; cause and fix indented under failures and warnings.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = match &self.from {
            Some(from) => writeln!(out, "xmppfed probe {} as {from}", self.domain),
            None => writeln!(
                out,
                "xmppfed probe {} (no --from: no authentication, no ping)",
                self.domain
            ),
        };
        let name_width = self.steps.iter().map(|s| s.name.len()).max().unwrap_or(0);
        let target_width = self
            .steps
            .iter()
            .filter_map(|s| s.target.as_ref().map(String::len))
            .max()
            .unwrap_or(0)
            .min(48);
        for s in &self.steps {
            let _ = writeln!(
                out,
                "{} {:<name_width$}  {:<target_width$}  {:>6}  {}",
                s.status.mark(),
                s.name,
                s.target.as_deref().unwrap_or(""),
                format!("{} ms", s.duration_ms),
                s.detail
            );
            if let Some(cause) = &s.cause {
                let _ = writeln!(out, "       cause: {cause}");
            }
            if let Some(fix) = &s.fix {
                let _ = writeln!(out, "       fix:   {fix}");
            }
        }
        let count = |st: Status| self.steps.iter().filter(|s| s.status == st).count();
        let _ = writeln!(
            out,
            "{}: {} ok, {} warning(s), {} failed, {} skipped",
            match self.outcome {
                Outcome::Ok => "federation looks healthy",
                Outcome::Warn => "federation works, with warnings",
                Outcome::Fail => "federation fails",
            },
            count(Status::Ok),
            count(Status::Warn),
            count(Status::Fail),
            count(Status::Skip)
        );
        out
    }
}

/// Why something failed and what to do, in plain words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advice {
    pub cause: String,
    pub fix: String,
}

pub(super) fn advice(cause: impl Into<String>, fix: impl Into<String>) -> Advice {
    Advice {
        cause: cause.into(),
        fix: fix.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, status: Status) -> Step {
        Step::new(name, Some("t".into()), Instant::now(), status, "d")
    }

    #[test]
    fn outcome_and_exit_code_follow_the_worst_step() {
        let ok = Report::new(
            "a.example".into(),
            None,
            vec![step("srv", Status::Ok), step("ping", Status::Skip)],
        );
        assert_eq!((ok.outcome, ok.exit_code()), (Outcome::Ok, 0));
        let warn = Report::new("a.example".into(), None, vec![step("srv", Status::Warn)]);
        assert_eq!((warn.outcome, warn.exit_code()), (Outcome::Warn, 0));
        let fail = Report::new(
            "a.example".into(),
            None,
            vec![step("srv", Status::Warn), step("connect", Status::Fail)],
        );
        assert_eq!((fail.outcome, fail.exit_code()), (Outcome::Fail, 1));
    }

    #[test]
    fn text_puts_cause_and_fix_under_the_failed_step() {
        let failed = step("connect", Status::Fail).because(advice("nothing listens", "start it"));
        let report = Report::new(
            "a.example".into(),
            Some("b.example".into()),
            vec![step("srv", Status::Ok), failed],
        );
        let text = report.to_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "xmppfed probe a.example as b.example");
        assert!(lines[1].starts_with("[ ok ] srv"), "{text}");
        assert!(lines[2].starts_with("[FAIL] connect"), "{text}");
        assert_eq!(lines[3], "       cause: nothing listens");
        assert_eq!(lines[4], "       fix:   start it");
        assert!(
            lines[5].starts_with("federation fails: 1 ok, 0 warning(s), 1 failed"),
            "{text}"
        );
    }

    #[test]
    fn json_has_every_field_with_lowercase_statuses() {
        let report = Report::new("a.example".into(), None, vec![step("srv", Status::Warn)]);
        let v: serde_json::Value = serde_json::to_value(&report).unwrap();
        assert_eq!(v["outcome"], "warn");
        assert_eq!(v["from"], serde_json::Value::Null);
        let s = &v["steps"][0];
        for field in [
            "name",
            "target",
            "status",
            "duration_ms",
            "detail",
            "cause",
            "fix",
        ] {
            assert!(s.get(field).is_some(), "{field} missing in {s}");
        }
        assert_eq!(s["status"], "warn");
    }
}
