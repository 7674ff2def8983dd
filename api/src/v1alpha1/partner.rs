//! `XmppAllowedPartner`: one partner organisation's XMPP domains and how to talk to them.

use super::common::{Condition, DomainName, default_true};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};
use xmppfed_policy::{Negotiation, PartnerType};

/// An XMPP network whose users may exchange messages and presence with local users (Lync
/// `New-CsXmppAllowedPartner`). Servers that are not allowed partners are refused.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "xmppfed.io",
    version = "v1alpha1",
    kind = "XmppAllowedPartner",
    derive = "PartialEq",
    doc = "A partner XMPP network allowed to federate, and the security its servers must use (Lync New-CsXmppAllowedPartner).",
    plural = "xmppallowedpartners",
    namespaced,
    status = "XmppAllowedPartnerStatus",
    shortname = "xpartner",
    shortname = "xap",
    category = "xmpp",
    cel,
    printcolumn(name = "Domain", type_ = "string", json_path = ".spec.domain"),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.partnerType"),
    printcolumn(name = "TLS", type_ = "string", json_path = ".spec.tlsNegotiation"),
    printcolumn(name = "SASL", type_ = "string", json_path = ".spec.saslNegotiation"),
    printcolumn(
        name = "Dialback",
        type_ = "boolean",
        json_path = ".spec.supportDialbackNegotiation"
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
        name = "Additional",
        type_ = "string",
        json_path = ".spec.additionalDomains",
        priority = 1,
        description = "Additional domains"
    ),
    printcolumn(
        name = "Streams",
        type_ = "integer",
        json_path = ".status.streams",
        priority = 1,
        description = "Open streams reported by the proxies"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.supportDialbackNegotiation || self.saslNegotiation != 'NotSupported'")
    .message("saslNegotiation: NotSupported with supportDialbackNegotiation: false leaves no way to authenticate the partner (Lync negotiation matrix rows 14, 16, 18): set supportDialbackNegotiation: true or allow SASL")
    .field_path(".supportDialbackNegotiation"))]
#[x_kube(validation = Rule::new("self.supportDialbackNegotiation || self.saslNegotiation == 'NotSupported' || self.tlsNegotiation != 'NotSupported'")
    .message("tlsNegotiation: NotSupported with supportDialbackNegotiation: false leaves no way to authenticate the partner (Lync negotiation matrix rows 6, 12): SASL EXTERNAL needs TLS and dialback is off; allow TLS or set supportDialbackNegotiation: true")
    .field_path(".tlsNegotiation"))]
#[x_kube(validation = Rule::new("!has(self.additionalDomains) || !(self.domain in self.additionalDomains)")
    .message("additionalDomains must not repeat domain")
    .field_path(".additionalDomains"))]
pub struct XmppAllowedPartnerSpec {
    /// The partner's primary XMPP domain, e.g. `fabrikam.com`. Lower-case, IDNA A-labels, no
    /// trailing dot. Cannot be changed: create a new partner instead.
    #[x_kube(validation = Rule::new("self == oldSelf").message("domain is immutable; create a new XmppAllowedPartner for another domain"))]
    pub domain: DomainName,

    /// Further XMPP domains of the same partner (child domains or others), e.g.
    /// `research.fabrikam.com`. Subdomains are not included implicitly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Set)]
    pub additional_domains: Vec<DomainName>,

    /// Free text, e.g. the partner's contact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,

    /// How far partner users are trusted: `Federated` (may subscribe and write without prior
    /// authorisation, see status notes), `PublicVerified` (the same, no status notes) or
    /// `PublicUnverified` (reach a local user only after that user reached out first; no status
    /// notes).
    #[serde(default)]
    pub partner_type: PartnerType,

    /// TLS on server-to-server streams with this partner: `Required`, `Optional` (used when
    /// offered) or `NotSupported`.
    #[serde(default)]
    pub tls_negotiation: Negotiation,

    /// SASL EXTERNAL authentication with certificates (XEP-0178): `Required`, `Optional` or
    /// `NotSupported`. SASL needs TLS.
    #[serde(default)]
    pub sasl_negotiation: Negotiation,

    /// Accept server dialback (XEP-0220) for authentication. With TLS and SASL both `Required`
    /// dialback does not operate (Lync matrix row 1).
    #[serde(default = "default_true")]
    pub support_dialback_negotiation: bool,

    /// Expect the partner to send keepalives, and close silent streams after
    /// `limits.keepAliveInterval`.
    #[serde(default = "default_true")]
    pub enable_keep_alive: bool,

    /// Simultaneous connections allowed with this partner. Default: the federation's
    /// `limits.partnerConnectionLimit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub connection_limit: Option<i32>,

    /// Static route to the partner's server as `host` or `host:port` (port 5269 by default),
    /// used instead of its SRV records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 259))]
    #[x_kube(validation = Rule::new(r"self.matches('^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*(:[0-9]{1,5})?$') && (!self.contains(':') || (int(self.substring(self.indexOf(':') + 1)) >= 1 && int(self.substring(self.indexOf(':') + 1)) <= 65535))")
        .message("must be host or host:port: a lower-case host name without trailing dot, and a port from 1 to 65535"))]
    pub proxy_fqdn: Option<String>,
}

/// Observed state of an XmppAllowedPartner.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct XmppAllowedPartnerStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted` (in a federation's policy, or why not) and `Warning` (risky settings).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// XmppFederations whose policy includes this partner.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub federations: Vec<String>,
    /// Streams open with this partner, as reported by the proxies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams: Option<i32>,
    /// The last error a proxy saw with this partner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}
