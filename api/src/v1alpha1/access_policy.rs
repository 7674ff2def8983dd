//! `ExternalAccessPolicy`: which local users may federate over XMPP.

use super::common::{Condition, DomainName};
use kube::{CustomResource, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Whether local users may communicate with users of allowed XMPP partners (Lync
/// `New-CsExternalAccessPolicy` + `Grant-CsExternalAccessPolicy`). A user's effective policy is
/// the `User` policy naming them, else the `Domain` policy of their domain, else the `Global`
/// policy; with none, the user is denied.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "xmppfed.io",
    version = "v1alpha1",
    kind = "ExternalAccessPolicy",
    derive = "PartialEq",
    doc = "Whether local users (all, per domain, or named) may communicate with users of allowed XMPP partners (Lync ExternalAccessPolicy).",
    plural = "externalaccesspolicies",
    namespaced,
    status = "ExternalAccessPolicyStatus",
    shortname = "xeap",
    category = "xmpp",
    cel,
    printcolumn(name = "Scope", type_ = "string", json_path = ".spec.scope"),
    printcolumn(
        name = "Federation",
        type_ = "boolean",
        json_path = ".spec.enableFederationAccess",
        description = "enableFederationAccess"
    ),
    printcolumn(
        name = "XMPP",
        type_ = "boolean",
        json_path = ".spec.enableXmppAccess",
        description = "enableXmppAccess"
    ),
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].reason",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.scope == 'User' || !has(self.users)").message("users is only allowed with scope: User").field_path(".users"))]
#[x_kube(validation = Rule::new("self.scope != 'User' || (has(self.users) && size(self.users) > 0)").message("scope: User needs at least one entry in users").field_path(".users"))]
#[x_kube(validation = Rule::new("self.scope == 'Domain' || !has(self.domains)").message("domains is only allowed with scope: Domain").field_path(".domains"))]
#[x_kube(validation = Rule::new("self.scope != 'Domain' || (has(self.domains) && size(self.domains) > 0)").message("scope: Domain needs at least one entry in domains").field_path(".domains"))]
pub struct ExternalAccessPolicySpec {
    /// Allow communication with users of federated organisations. Off by default, as in Lync's
    /// default global policy.
    #[serde(default)]
    pub enable_federation_access: bool,

    /// Allow communication with users of allowed XMPP partners. Only effective together with
    /// `enableFederationAccess`.
    #[serde(default)]
    pub enable_xmpp_access: bool,

    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,

    /// Who this policy applies to: `Global` (everybody, at most one per federation), `Domain`
    /// (users of the local domains in `domains`, Lync's site policies) or `User` (the users in
    /// `users`).
    pub scope: AccessScope,

    /// Local XMPP domains, for `scope: Domain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub domains: Option<Vec<DomainName>>,

    /// Bare JIDs (`alice@example.com`) or glob patterns (`*@example.com`, `dev-?@example.com`;
    /// `*` matches any run of characters, `?` one), for `scope: User`. An exact JID wins over a
    /// pattern, and a more specific pattern over a less specific one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 5000))]
    pub users: Option<Vec<UserRef>>,
}

/// Who an ExternalAccessPolicy applies to.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub enum AccessScope {
    Global,
    Domain,
    User,
}

impl AccessScope {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessScope::Global => "Global",
            AccessScope::Domain => "Domain",
            AccessScope::User => "User",
        }
    }
}

/// A bare JID or a glob pattern over bare JIDs, lower-case.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(transparent)]
pub struct UserRef(pub String);

impl UserRef {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for UserRef {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

impl JsonSchema for UserRef {
    fn schema_name() -> Cow<'static, str> {
        "UserRef".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "minLength": 3,
            "maxLength": 320,
            "x-kubernetes-validations": [
                {
                    "rule": r"self.matches('^[^@/\\s]+@[^@/\\s]+$')",
                    "message": "must be a bare JID local@domain (no resource), optionally with * and ? wildcards"
                },
                {
                    "rule": r"!self.matches('^[^@/\\s]+@[^@/\\s]+$') || self.lowerAscii() == self",
                    "message": "must be lower-case (JIDs compare case-insensitively; write them in lower case)"
                }
            ],
        })
    }
}

/// Observed state of an ExternalAccessPolicy.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ExternalAccessPolicyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted` (in a federation's policy; ties and unknown domains are reported here).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// XmppFederations whose policy includes this access policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub federations: Vec<String>,
}
