//! NetworkPolicies around the proxy and gateway pods: each pod accepts and opens only the
//! connections its role needs. Peers outside the cluster (partners, the internal servers, the
//! API server) have addresses the operator cannot know, so those rules name ports only.

use super::workloads::{
    DNS_PORT, GATEWAY_S2S_PORT, HTTP_PORT, PROXY_DIRECT_TLS_PORT, PROXY_STARTTLS_PORT,
};
use super::{Inputs, Object, selector};
use crate::labels::Component;
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeSet;

/// The API server as seen from a pod: 443 through the `kubernetes` Service, 6443 (or 443)
/// after kube-proxy's translation, which is what NetworkPolicies match on.
const API_SERVER_PORTS: [i32; 2] = [443, 6443];

fn port(number: i32, protocol: &str) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(number)),
        protocol: Some(protocol.into()),
        ..Default::default()
    }
}

fn tcp(ports: impl IntoIterator<Item = i32>) -> Vec<NetworkPolicyPort> {
    ports.into_iter().map(|p| port(p, "TCP")).collect()
}

/// Name resolution, over UDP and TCP, wherever the cluster DNS runs.
fn dns() -> NetworkPolicyEgressRule {
    NetworkPolicyEgressRule {
        ports: Some(vec![port(53, "UDP"), port(53, "TCP")]),
        to: None,
    }
}

fn api_server() -> NetworkPolicyEgressRule {
    NetworkPolicyEgressRule {
        ports: Some(tcp(API_SERVER_PORTS)),
        to: None,
    }
}

/// Pods of `component` of this federation, in its namespace.
fn pods(inputs: &Inputs, component: Component) -> Vec<NetworkPolicyPeer> {
    vec![NetworkPolicyPeer {
        pod_selector: Some(LabelSelector {
            match_labels: Some(selector(inputs, component)),
            ..Default::default()
        }),
        ..Default::default()
    }]
}

fn from_anywhere(ports: Vec<NetworkPolicyPort>) -> NetworkPolicyIngressRule {
    NetworkPolicyIngressRule {
        from: None,
        ports: Some(ports),
    }
}

fn policy(
    inputs: &Inputs,
    name: String,
    component: Component,
    ingress: Vec<NetworkPolicyIngressRule>,
    egress: Vec<NetworkPolicyEgressRule>,
) -> Object {
    Object::from_typed(&NetworkPolicy {
        metadata: inputs.meta(name, component),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector(inputs, component)),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(ingress),
            egress: Some(egress),
        }),
    })
}

pub(super) fn build(inputs: &Inputs) -> Vec<Object> {
    if !inputs.federation.spec.network_policy.enabled {
        return Vec::new();
    }
    let names = inputs.names();
    let link = inputs.federation.spec.gateway.internal_link_port;
    let proxy = policy(
        inputs,
        names.proxy(),
        Component::Proxy,
        vec![
            // Partners, from anywhere on the Internet.
            from_anywhere(tcp([PROXY_STARTTLS_PORT, PROXY_DIRECT_TLS_PORT])),
            // The internal link, from this federation's gateways only.
            NetworkPolicyIngressRule {
                from: Some(pods(inputs, Component::Gateway)),
                ports: Some(tcp([link])),
            },
            // Probes, metrics scrapes and the operator's policy-version query (through the
            // API server's pod proxy, whose address is not known here).
            from_anywhere(tcp([HTTP_PORT])),
        ],
        vec![
            // Partners (their SRV records may name any port), and the API server for the
            // policy ConfigMap watch.
            NetworkPolicyEgressRule {
                ports: Some(vec![NetworkPolicyPort {
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                to: None,
            },
            dns(),
        ],
    );
    let internal_ports: BTreeSet<i32> = inputs
        .federation
        .spec
        .gateway
        .internal_servers
        .iter()
        .map(|s| s.port)
        .collect();
    let gateway = policy(
        inputs,
        names.gateway(),
        Component::Gateway,
        vec![
            // The internal servers: their S2S streams and their DNS queries for partner
            // domains. They may run outside the cluster.
            from_anywhere(vec![
                port(GATEWAY_S2S_PORT, "TCP"),
                port(DNS_PORT, "UDP"),
                port(DNS_PORT, "TCP"),
            ]),
            from_anywhere(tcp([HTTP_PORT])),
        ],
        vec![
            NetworkPolicyEgressRule {
                to: Some(pods(inputs, Component::Proxy)),
                ports: Some(tcp([link])),
            },
            NetworkPolicyEgressRule {
                to: None,
                ports: Some(tcp(internal_ports)),
            },
            dns(),
            api_server(),
        ],
    );
    vec![proxy, gateway]
}
