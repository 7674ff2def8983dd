//! Problems that need several objects to see, as the operator reports them in conditions and
//! `xmppfed validate` prints them.

use std::fmt;

pub use xmppfed_policy::Severity;

/// The object a finding is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// One cross-object problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub object: ObjectRef,
    /// Field path inside the object, e.g. `spec.domain`.
    pub field: String,
    /// CamelCase reason, used as the condition reason.
    pub reason: &'static str,
    pub message: String,
}

impl Finding {
    pub fn error(
        object: ObjectRef,
        field: impl Into<String>,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Error,
            object,
            field: field.into(),
            reason,
            message: message.into(),
        }
    }
    pub fn warning(
        object: ObjectRef,
        field: impl Into<String>,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(object, field, reason, message)
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if self.field.is_empty() {
            write!(
                f,
                "{sev}: {}: {} ({})",
                self.object, self.message, self.reason
            )
        } else {
            write!(
                f,
                "{sev}: {}: {}: {} ({})",
                self.object, self.field, self.message, self.reason
            )
        }
    }
}
