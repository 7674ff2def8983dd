//! Policies for unit tests, built directly as documents.

use xmppfed_policy::CompiledPolicy;
use xmppfed_policy::document::*;
use xmppfed_policy::negotiation::{Negotiation, PartnerType};

/// A federation serving `org.example` with one partner `p.example` of `partner_type`; everyone
/// has XMPP access except `carol@org.example` (policy `no-xmpp`).
pub fn policy(partner_type: PartnerType) -> CompiledPolicy {
    let rule = |name: &str, on: bool| AccessRule {
        policy: name.into(),
        federation_access: true,
        xmpp_access: on,
    };
    let doc = PolicyDocument {
        format: FORMAT.into(),
        version: String::new(),
        federation: FederationId {
            namespace: "t".into(),
            name: "f".into(),
        },
        served_domains: vec!["org.example".into()],
        edge: Edge {
            hostname: "xmpp.org.example".into(),
            starttls_port: 5269,
            direct_tls_port: 5270,
        },
        gateway: Gateway {
            internal_link_port: 23456,
            log_message_bodies: false,
            internal_servers: vec![],
        },
        limits: Limits {
            connection_limit: 10,
            partner_connection_limit: 5,
            keep_alive_interval_seconds: 300,
            stream_establishment_timeout_seconds: 60,
            stream_inactivity_timeout_seconds: 600,
            subscription_refresh_interval_seconds: 28800,
            max_stanza_bytes: 262144,
        },
        unlisted_partners: UnlistedPartners::Deny,
        partners: vec![Partner {
            name: "p".into(),
            domain: "p.example".into(),
            additional_domains: vec![],
            partner_type,
            tls: Negotiation::Required,
            sasl: Negotiation::Required,
            dialback: true,
            keep_alive: true,
            connection_limit: 5,
            proxy: None,
        }],
        access: AccessTable {
            rules: vec![rule("everyone", true), rule("no-xmpp", false)],
            global: Some(0),
            users: [("carol@org.example".to_string(), 1)].into(),
            ..AccessTable::default()
        },
    };
    CompiledPolicy::new(doc).expect("valid")
}

/// As [`policy`], with the partner's domain chosen.
pub fn policy_with_partner(domain: &str) -> CompiledPolicy {
    let mut doc = policy(PartnerType::Federated).into_document();
    doc.partners[0].domain = domain.to_string();
    CompiledPolicy::new(doc).expect("valid")
}
