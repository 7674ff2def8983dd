//! The operator's Prometheus metrics: reconciles, failures by reason, duration.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

pub struct Metrics {
    registry: Registry,
    pub reconciles: Counter,
    pub failures: Family<ReasonLabels, Counter>,
    pub duration: Histogram,
    /// Objects deleted because the federation no longer wants them.
    pub orphans_deleted: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("xmppfed_operator");
        let reconciles = Counter::default();
        let failures = Family::<ReasonLabels, Counter>::default();
        // 1 ms … ~16 s.
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let orphans_deleted = Counter::default();
        registry.register(
            "reconciles",
            "Reconciles of an XmppFederation",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Failed reconciles by reason (retried with backoff)",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time of one reconcile",
            duration.clone(),
        );
        registry.register(
            "orphans_deleted",
            "Objects deleted because their federation no longer wants them",
            orphans_deleted.clone(),
        );
        Self {
            registry,
            reconciles,
            failures,
            duration,
            orphans_deleted,
        }
    }
}

impl Metrics {
    pub fn observe(&self, took: Duration, failure: Option<&str>) {
        self.reconciles.inc();
        self.duration.observe(took.as_secs_f64());
        if let Some(reason) = failure {
            self.failures
                .get_or_create(&ReasonLabels {
                    reason: reason.into(),
                })
                .inc();
        }
    }

    /// OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_by_reason() {
        let m = Metrics::default();
        m.observe(Duration::from_millis(3), None);
        m.observe(Duration::from_millis(5), Some("Forbidden"));
        let text = m.encode();
        assert!(
            text.contains("xmppfed_operator_reconciles_total 2"),
            "{text}"
        );
        assert!(
            text.contains("xmppfed_operator_reconcile_failures_total{reason=\"Forbidden\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("xmppfed_operator_reconcile_duration_seconds_count 2"),
            "{text}"
        );
    }
}
