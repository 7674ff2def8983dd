//! Field types shared by the three kinds.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

/// RE2 expression for a lower-case DNS name without trailing dot (labels of 1–63 letters,
/// digits and hyphens, not starting or ending with a hyphen).
pub const DOMAIN_REGEX: &str =
    r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$";

/// A lower-case DNS name without trailing dot, IDNA A-labels for international names
/// (`xn--bcher-kva.example`, not `bücher.example`), at most 253 characters.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(transparent)]
pub struct DomainName(pub String);

impl DomainName {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for DomainName {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

/// The CEL rules of a domain name. They are mutually exclusive so that a bad value gets the one
/// message that explains it.
fn domain_rules() -> serde_json::Value {
    serde_json::json!([
        {
            "rule": "!self.endsWith('.')",
            "message": "must not end with a dot: write example.com, not example.com."
        },
        {
            "rule": "self.endsWith('.') || self.lowerAscii() == self",
            "message": "must be lower-case (XMPP domains compare case-insensitively; write them in lower case)"
        },
        {
            "rule": format!("self.endsWith('.') || self.lowerAscii() != self || self.matches('{}')", DOMAIN_REGEX.replace('\\', "\\\\")),
            "message": "must be a DNS name: dot-separated labels of 1-63 letters, digits or '-' (not at either end of a label); write international names as IDNA A-labels (xn--...)"
        }
    ])
}

impl JsonSchema for DomainName {
    fn schema_name() -> Cow<'static, str> {
        "DomainName".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": 253,
            "x-kubernetes-validations": domain_rules(),
        })
    }
}

/// A duration written as Kubernetes writes them (`metav1.Duration`): `300s`, `10m`, `8h`, `1h30m`.
/// Must be at least one second.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(transparent)]
pub struct Duration(pub kube::core::Duration);

impl Duration {
    pub fn from_secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs).into())
    }
    /// Whole seconds (rounded down); 0 for negative durations, which admission rejects.
    pub fn as_secs(&self) -> u64 {
        if self.0.is_negative() {
            0
        } else {
            std::time::Duration::from(self.0).as_secs()
        }
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "maxLength": 64,
            "x-kubernetes-validations": [
                {
                    "rule": r"self.matches('^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$') && duration(self) >= duration('1s')",
                    "message": "must be a duration of at least 1s, written like 300s, 10m, 8h or 1h30m"
                }
            ],
        })
    }
}

/// A reference to a key in a Secret of the same namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret.
    #[serde(default = "default_secret_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// `#[serde(default = …)]` for flags that are on unless turned off.
pub(crate) fn default_true() -> bool {
    true
}

fn default_secret_key() -> String {
    "secret".to_string()
}

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// Condition types and reasons shared by the three kinds.
pub mod conditions {
    /// Summary condition: the object is fully reconciled and working.
    pub const READY: &str = "Ready";
    /// The operator is rolling out a change.
    pub const PROGRESSING: &str = "Progressing";
    /// Partly working.
    pub const DEGRADED: &str = "Degraded";
    /// The edge certificate is issued and current.
    pub const CERTIFICATE_READY: &str = "CertificateReady";
    /// The SRV and host records are published.
    pub const DNS_PUBLISHED: &str = "DNSPublished";
    /// Running proxies and gateways have loaded the current policy.
    pub const POLICY_APPLIED: &str = "PolicyApplied";
    /// A partner or access policy is part of a federation's compiled policy.
    pub const ACCEPTED: &str = "Accepted";
    /// Accepted, but with a risk worth knowing.
    pub const WARNING: &str = "Warning";
}
