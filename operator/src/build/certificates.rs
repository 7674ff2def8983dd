//! cert-manager objects (built as JSON: no compile-time dependency on cert-manager; checked
//! against its published CRD schemas in the tests).
//!
//! - The edge `Certificate`: every served domain (+ `*.domain` when asked), the edge host and
//!   the extra names; `server auth` only, unless `clientAuthUsage` — public CAs stopped
//!   issuing the client-auth EKU in 2026 and asking for it does not fail, it just is not there.
//!   Not built when the user names an existing `tls.secretName`.
//! - The internal link's private PKI: a self-signed Issuer bootstraps a CA Certificate, whose
//!   Secret backs a CA Issuer that signs the proxy's (server) and the gateway's (client)
//!   link certificates. Chaining to this CA *is* the link's authorisation.

use super::{Inputs, Object};
use crate::labels::Component;
use serde_json::{Value, json};
use xmppfed_api::v1alpha1::IssuerKind;

const API_VERSION: &str = "cert-manager.io/v1";

fn object(inputs: &Inputs, kind: &str, name: String, spec: Value) -> Object {
    let meta = inputs.meta(name.clone(), Component::Certificates);
    Object {
        api_version: API_VERSION.into(),
        kind: kind.into(),
        name,
        value: json!({
            "apiVersion": API_VERSION,
            "kind": kind,
            "metadata": meta,
            "spec": spec,
        }),
    }
}

fn ecdsa() -> Value {
    json!({"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"})
}

/// The edge certificate's names, in a stable order without duplicates.
pub fn edge_dns_names(inputs: &Inputs) -> Vec<String> {
    let spec = &inputs.federation.spec;
    let mut names: Vec<String> = Vec::new();
    let mut push = |n: String| {
        if !names.contains(&n) {
            names.push(n);
        }
    };
    for d in &inputs.policy.served_domains {
        push(d.clone());
        if spec.tls.include_wildcard {
            push(format!("*.{d}"));
        }
    }
    push(inputs.policy.edge.hostname.clone());
    for d in &spec.tls.extra_dns_names {
        push(d.as_str().to_ascii_lowercase());
    }
    names
}

pub(super) fn build(inputs: &Inputs) -> Vec<Object> {
    let names = inputs.names();
    let tls = &inputs.federation.spec.tls;
    let mut out = Vec::new();
    if let (None, Some(issuer)) = (&tls.secret_name, &tls.issuer_ref) {
        let mut usages = vec!["server auth", "digital signature"];
        if tls.client_auth_usage {
            usages.push("client auth");
        }
        out.push(object(
            inputs,
            "Certificate",
            names.edge_certificate(),
            json!({
                "secretName": names.edge_tls_secret(),
                "issuerRef": {
                    "name": issuer.name,
                    "kind": match issuer.kind {
                        IssuerKind::Issuer => "Issuer",
                        IssuerKind::ClusterIssuer => "ClusterIssuer",
                    },
                    "group": issuer.group,
                },
                "dnsNames": edge_dns_names(inputs),
                "usages": usages,
                "privateKey": ecdsa(),
                "secretTemplate": {"labels": crate::labels::labels(&names.federation, Component::Certificates)},
            }),
        ));
    }
    let local_issuer =
        |name: String| json!({"name": name, "kind": "Issuer", "group": "cert-manager.io"});
    out.push(object(
        inputs,
        "Issuer",
        names.link_bootstrap_issuer(),
        json!({"selfSigned": {}}),
    ));
    out.push(object(
        inputs,
        "Certificate",
        names.link_ca(),
        json!({
            "isCA": true,
            "commonName": format!("xmppfed link CA of {}/{}", names.namespace, names.federation),
            "secretName": names.link_ca(),
            "issuerRef": local_issuer(names.link_bootstrap_issuer()),
            "privateKey": ecdsa(),
            "duration": "87600h",
        }),
    ));
    out.push(object(
        inputs,
        "Issuer",
        names.link_ca(),
        json!({"ca": {"secretName": names.link_ca()}}),
    ));
    // The gateway's certificate also serves the internal servers' S2S connections.
    for (name, host, usages) in [
        (
            names.link_proxy(),
            names.service_host(&names.proxy()),
            vec!["server auth", "digital signature"],
        ),
        (
            names.link_gateway(),
            names.service_host(&names.gateway()),
            vec!["client auth", "server auth", "digital signature"],
        ),
    ] {
        out.push(object(
            inputs,
            "Certificate",
            name.clone(),
            json!({
                "secretName": name,
                "issuerRef": local_issuer(names.link_ca()),
                "dnsNames": [host],
                "usages": usages,
                "privateKey": ecdsa(),
            }),
        ));
    }
    out
}
