//! Prometheus metrics of the proxy (`/metrics`), labelled as operators ask: by direction,
//! partner and authentication method; rejections by reason; the policy version in use.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use xmppfed_policy_source::PolicyMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    pub direction: &'static str,
    pub partner: String,
    pub method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

pub struct Metrics {
    registry: Registry,
    /// Authenticated streams open now.
    pub streams: Family<StreamLabels, Gauge>,
    /// Stanzas relayed (`inbound`: partner → gateway; `outbound`: gateway → partner).
    pub stanzas: Family<DirectionLabels, Counter>,
    pub bytes: Family<DirectionLabels, Counter>,
    /// Streams refused or closed by us, by stream error condition.
    pub rejections: Family<ReasonLabels, Counter>,
    /// Stanzas answered with an error instead of being delivered, by stanza error condition.
    pub bounces: Family<ReasonLabels, Counter>,
    /// The policy version in use and refused documents.
    pub policy: PolicyMetrics,
    /// Gateways connected over the internal link.
    pub gateway_links: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("xmppfed_proxy");
        let m = Self {
            streams: Family::default(),
            stanzas: Family::default(),
            bytes: Family::default(),
            rejections: Family::default(),
            bounces: Family::default(),
            policy: PolicyMetrics::default(),
            gateway_links: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "streams",
            "Authenticated S2S streams open",
            m.streams.clone(),
        );
        registry.register("stanzas", "Stanzas relayed", m.stanzas.clone());
        registry.register("bytes", "Bytes received from peers", m.bytes.clone());
        registry.register(
            "rejections",
            "Streams refused or closed with a stream error, by condition",
            m.rejections.clone(),
        );
        registry.register(
            "bounces",
            "Stanzas answered with a stanza error instead of delivered",
            m.bounces.clone(),
        );
        m.policy.register(&mut registry);
        registry.register(
            "gateway_links",
            "Gateways connected over the internal link",
            m.gateway_links.clone(),
        );
        Self { registry, ..m }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    pub fn reject(&self, condition: &str) {
        self.rejections
            .get_or_create(&ReasonLabels {
                reason: condition.to_string(),
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

    pub fn stanza(&self, direction: &'static str) {
        self.stanzas
            .get_or_create(&DirectionLabels { direction })
            .inc();
    }
}
