//! The edge LoadBalancer partners connect to, the proxies' headless Service the gateways
//! dial every proxy pod through, and the gateway's Service for the internal servers.

use super::workloads::{DNS_PORT, GATEWAY_S2S_PORT, PROXY_DIRECT_TLS_PORT, PROXY_STARTTLS_PORT};
use super::{Inputs, Object, selector};
use crate::labels::Component;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use xmppfed_api::v1alpha1::EdgeServiceType;

fn port(name: &str, port: i32, target: i32, protocol: &str) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::Int(target)),
        protocol: Some(protocol.into()),
        ..Default::default()
    }
}

pub(super) fn build(inputs: &Inputs) -> Vec<Object> {
    let names = inputs.names();
    let spec = &inputs.federation.spec;
    let edge_spec = &spec.edge.service;
    let mut edge_meta = inputs.meta(names.edge_service(), Component::Proxy);
    if !edge_spec.annotations.is_empty() {
        edge_meta.annotations = Some(edge_spec.annotations.clone());
    }
    let edge = Service {
        metadata: edge_meta,
        spec: Some(ServiceSpec {
            type_: Some(
                match edge_spec.type_ {
                    EdgeServiceType::LoadBalancer => "LoadBalancer",
                    EdgeServiceType::NodePort => "NodePort",
                    EdgeServiceType::ClusterIP => "ClusterIP",
                }
                .into(),
            ),
            selector: Some(selector(inputs, Component::Proxy)),
            ports: Some(vec![
                port(
                    "xmpp-server",
                    spec.edge.ports.starttls,
                    PROXY_STARTTLS_PORT,
                    "TCP",
                ),
                port(
                    "xmpps-server",
                    spec.edge.ports.direct_tls,
                    PROXY_DIRECT_TLS_PORT,
                    "TCP",
                ),
            ]),
            load_balancer_ip: edge_spec.load_balancer_ip.clone(),
            load_balancer_class: edge_spec.load_balancer_class.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let link = spec.gateway.internal_link_port;
    let proxies = Service {
        metadata: inputs.meta(names.proxy(), Component::Proxy),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            // A proxy is ready only once a gateway linked to it, and gateways find proxies
            // through this Service: it must list pods before they are ready.
            publish_not_ready_addresses: Some(true),
            selector: Some(selector(inputs, Component::Proxy)),
            ports: Some(vec![port("link", link, link, "TCP")]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let gateway = Service {
        metadata: inputs.meta(names.gateway(), Component::Gateway),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector(inputs, Component::Gateway)),
            ports: Some(vec![
                port("xmpp-server", GATEWAY_S2S_PORT, GATEWAY_S2S_PORT, "TCP"),
                port("dns", 53, DNS_PORT, "UDP"),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    };
    vec![
        Object::from_typed(&edge),
        Object::from_typed(&proxies),
        Object::from_typed(&gateway),
    ]
}
