//! The external-dns `DNSEndpoint`: `_xmpp-server._tcp` (STARTTLS) and `_xmpps-server._tcp`
//! (XEP-0368 direct TLS) SRV records for every served domain, pointing at the edge host with
//! the federation's priority and weight (several federations with different priorities give
//! site failover, as in Lync), plus the edge host's A/AAAA once the LoadBalancer has an
//! address. SRV targets end with a dot: external-dns ≥ 0.21 silently drops them otherwise.

use super::{Inputs, Object};
use crate::labels::Component;
use serde_json::{Value, json};
use xmppfed_api::v1alpha1::DnsProvider;

const API_VERSION: &str = "externaldns.k8s.io/v1alpha1";

pub(super) fn build(inputs: &Inputs) -> Vec<Object> {
    let spec = &inputs.federation.spec;
    if spec.dns.provider != DnsProvider::ExternalDNS {
        return Vec::new();
    }
    let names = inputs.names();
    let edge = &inputs.policy.edge;
    let ttl = spec.dns.ttl.as_secs();
    let (priority, weight) = (spec.edge.srv_priority, spec.edge.srv_weight);
    let srv = |service: &str, domain: &str, port: u16| -> Value {
        json!({
            "dnsName": format!("{service}._tcp.{domain}"),
            "recordType": "SRV",
            "recordTTL": ttl,
            "targets": [format!("{priority} {weight} {port} {}.", edge.hostname)],
        })
    };
    let mut endpoints = Vec::new();
    for d in &inputs.policy.served_domains {
        endpoints.push(srv("_xmpp-server", d, edge.starttls_port));
        endpoints.push(srv("_xmpps-server", d, edge.direct_tls_port));
    }
    let (v4, v6): (Vec<&String>, Vec<&String>) = inputs
        .observed
        .load_balancer
        .iter()
        .filter(|a| a.parse::<std::net::IpAddr>().is_ok())
        .partition(|a| a.parse::<std::net::Ipv4Addr>().is_ok());
    for (record, targets) in [("A", v4), ("AAAA", v6)] {
        if !targets.is_empty() {
            endpoints.push(json!({
                "dnsName": edge.hostname,
                "recordType": record,
                "recordTTL": ttl,
                "targets": targets,
            }));
        }
    }
    let meta = inputs.meta(names.dns_endpoint(), Component::Dns);
    vec![Object {
        api_version: API_VERSION.into(),
        kind: "DNSEndpoint".into(),
        name: names.dns_endpoint(),
        value: json!({
            "apiVersion": API_VERSION,
            "kind": "DNSEndpoint",
            "metadata": meta,
            "spec": {"endpoints": endpoints},
        }),
    }]
}
