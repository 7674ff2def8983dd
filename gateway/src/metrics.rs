//! Prometheus metrics of the gateway (`/metrics`): stanzas by direction, partner and verdict,
//! denials by reason, streams with the internal servers, links to the proxies, subscriptions.
//! Never a message body, a JID or a status note: labels are partner names and fixed words.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use xmppfed_policy_source::PolicyMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StanzaLabels {
    /// `inbound`: partner → organisation; `outbound`: organisation → partner.
    pub direction: &'static str,
    pub partner: String,
    /// `forwarded`, `rejected` (answered with a stanza error) or `dropped` (not relayed).
    pub verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    pub direction: &'static str,
}

#[derive(Default)]
pub struct Metrics {
    registry: Registry,
    pub stanzas: Family<StanzaLabels, Counter>,
    /// Stanzas refused or not relayed by policy, by reason (`no-access`, `not-contacted`, …).
    pub denials: Family<ReasonLabels, Counter>,
    /// Stanzas that could not be delivered and were answered with an error, by condition.
    pub bounces: Family<ReasonLabels, Counter>,
    /// Authenticated S2S streams with the internal servers.
    pub internal_streams: Family<DirectionLabels, Gauge>,
    /// Proxies connected over the internal link.
    pub proxy_links: Gauge,
    /// Presence subscriptions the gateway relays.
    pub subscriptions: Gauge,
    /// Subscriptions forgotten because nothing refreshed them in time.
    pub subscriptions_expired: Counter,
    /// Presence probes sent to refresh subscriptions.
    pub subscription_probes: Counter,
    /// Records written to the audit log (message bodies, when enabled).
    pub audit_records: Counter,
    pub policy: PolicyMetrics,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("xmppfed_gateway");
        let m = Self::default();
        registry.register(
            "stanzas",
            "Stanzas by direction, partner and verdict",
            m.stanzas.clone(),
        );
        registry.register(
            "denials",
            "Stanzas refused or not relayed by policy, by reason",
            m.denials.clone(),
        );
        registry.register(
            "bounces",
            "Stanzas answered with an error because they could not be delivered",
            m.bounces.clone(),
        );
        registry.register(
            "internal_streams",
            "Authenticated S2S streams with the organisation's servers",
            m.internal_streams.clone(),
        );
        registry.register(
            "proxy_links",
            "Proxies connected over the internal link",
            m.proxy_links.clone(),
        );
        registry.register(
            "subscriptions",
            "Presence subscriptions relayed",
            m.subscriptions.clone(),
        );
        registry.register(
            "subscriptions_expired",
            "Subscriptions forgotten because nothing refreshed them within subscriptionRefreshInterval",
            m.subscriptions_expired.clone(),
        );
        registry.register(
            "subscription_probes",
            "Presence probes sent to refresh subscriptions",
            m.subscription_probes.clone(),
        );
        registry.register(
            "audit_records",
            "Messages written to the audit log",
            m.audit_records.clone(),
        );
        m.policy.register(&mut registry);
        Self { registry, ..m }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    pub fn stanza(&self, direction: &'static str, partner: &str, verdict: &'static str) {
        self.stanzas
            .get_or_create(&StanzaLabels {
                direction,
                partner: partner.to_string(),
                verdict,
            })
            .inc();
    }

    pub fn denial(&self, reason: &str) {
        self.denials
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn bounce(&self, condition: &str) {
        self.bounces
            .get_or_create(&ReasonLabels {
                reason: condition.to_string(),
            })
            .inc();
    }
}
