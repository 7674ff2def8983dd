//! The policy document: everything the proxy and gateway need, with every default filled in.
//!
//! Field order, sorted lists and `BTreeMap`s make the JSON encoding canonical, so the same
//! inputs always give the same bytes and the same [`PolicyDocument::version`].

use crate::negotiation::{Negotiation, PartnerType};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The format this build writes and reads. A reader refuses any other format rather than
/// guess at fields it does not know (an old proxy must not under-enforce a newer policy).
pub const FORMAT: &str = "xmppfed.io/policy/v1";

/// One compiled federation policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyDocument {
    /// Always [`FORMAT`].
    pub format: String,
    /// `sha256:<hex>` of the canonical encoding of this document with `version` empty.
    /// Set by [`crate::codec::seal`]; checked by [`crate::codec::decode`].
    #[serde(default)]
    pub version: String,
    /// The `XmppFederation` this was compiled from.
    pub federation: FederationId,
    /// Local XMPP domains served, sorted.
    pub served_domains: Vec<String>,
    pub edge: Edge,
    pub gateway: Gateway,
    pub limits: Limits,
    /// What happens to servers that are not allowed partners. Only `Deny` exists today.
    pub unlisted_partners: UnlistedPartners,
    /// Allowed partners, sorted by name.
    pub partners: Vec<Partner>,
    /// Per-user external access policy (user > domain > global).
    pub access: AccessTable,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FederationId {
    pub namespace: String,
    pub name: String,
}

/// The edge (proxy) as partners see it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Edge {
    /// Host name the SRV records point at.
    pub hostname: String,
    pub starttls_port: u16,
    pub direct_tls_port: u16,
}

/// The gateway and the organisation's own XMPP servers behind it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gateway {
    /// Port of the mutual-TLS link between proxy and gateway.
    pub internal_link_port: u16,
    /// Whether message bodies go to the audit log (Lync `EnableLoggingAllMessageBodies`).
    pub log_message_bodies: bool,
    pub internal_servers: Vec<InternalServer>,
}

/// Where the organisation's XMPP server for some local domains is.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InternalServer {
    /// Local domains this server hosts (never empty after compilation: an empty list in the
    /// CR means every served domain).
    pub domains: Vec<String>,
    pub host: String,
    pub port: u16,
    pub tls: Negotiation,
    /// Secret holding the CA (`ca.crt`) of this server's certificate, when not a public CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_name: Option<String>,
}

/// Lync `XmppGatewayConfiguration`, with durations in seconds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    pub connection_limit: u32,
    pub partner_connection_limit: u32,
    pub keep_alive_interval_seconds: u64,
    pub stream_establishment_timeout_seconds: u64,
    pub stream_inactivity_timeout_seconds: u64,
    pub subscription_refresh_interval_seconds: u64,
    pub max_stanza_bytes: u32,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum UnlistedPartners {
    #[default]
    Deny,
}

/// One allowed partner with every default filled in.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Partner {
    /// Name of the `XmppAllowedPartner` object.
    pub name: String,
    /// Primary domain.
    pub domain: String,
    /// Further domains of the same partner, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_domains: Vec<String>,
    pub partner_type: PartnerType,
    pub tls: Negotiation,
    pub sasl: Negotiation,
    pub dialback: bool,
    pub keep_alive: bool,
    pub connection_limit: u32,
    /// Static route instead of SRV lookup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<HostPort>,
}

impl Partner {
    /// The primary domain followed by the additional ones.
    pub fn domains(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.domain.as_str())
            .chain(self.additional_domains.iter().map(String::as_str))
    }
    pub fn negotiation(&self) -> crate::NegotiationSettings {
        crate::NegotiationSettings::new(self.tls, self.sasl, self.dialback)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

/// The per-user access policies, indexed for resolution.
///
/// Rules are stored once in [`AccessTable::rules`]; the scopes refer to them by index, which
/// keeps a document with thousands of users small.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessTable {
    /// Distinct policies, sorted by name.
    pub rules: Vec<AccessRule>,
    /// Index of the global policy; none means everybody is denied (Lync's all-false default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global: Option<u32>,
    /// Local domain → rule.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub domains: BTreeMap<String, u32>,
    /// Exact bare JID → rule.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub users: BTreeMap<String, u32>,
    /// Glob patterns over bare JIDs, in the order they are tried (most specific first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_patterns: Vec<UserPattern>,
}

/// One `ExternalAccessPolicy` as the gateway applies it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessRule {
    /// Name of the `ExternalAccessPolicy` object.
    pub policy: String,
    pub federation_access: bool,
    pub xmpp_access: bool,
}

impl AccessRule {
    /// XMPP federation needs both switches, as in Lync.
    pub fn allows_xmpp(&self) -> bool {
        self.federation_access && self.xmpp_access
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserPattern {
    /// `*` matches any run of characters, `?` one character.
    pub pattern: String,
    pub rule: u32,
}
