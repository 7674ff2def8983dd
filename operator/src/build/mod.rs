//! Pure builders: (federation, compiled policy, what was observed) → every object the
//! operator wants to exist. No API calls, no clocks, no randomness: the same inputs give
//! byte-identical objects, which the golden tests (`operator/tests/golden/`) pin down and the
//! apply step sends with server-side apply.

mod certificates;
mod dns;
mod link_pki;
mod network;
mod policy;
mod rbac;
mod services;
mod workloads;

pub use link_pki::{LinkPki, generate_link_pki, link_secret};
pub use policy::dialback_secret;
pub use workloads::{SECRET_VERSIONS, mounted_secrets};

use crate::labels::{self, Component};
use crate::names::Names;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use serde_json::Value;
use std::collections::BTreeMap;
use xmppfed_api::v1alpha1::XmppFederation;
use xmppfed_policy::PolicyDocument;
use xmppfed_policy::codec::EncodeError;

/// How the operator itself is configured (flags / Helm values), not per federation.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The image holding `xmppfed-proxy` and `xmppfed-gateway`.
    pub image: String,
    pub image_pull_policy: Option<String>,
    /// The cluster's DNS domain (the internal servers resolve the gateway's Service by it).
    pub cluster_domain: String,
    /// Size of each gateway's contact-store volume.
    pub gateway_state_size: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            image: format!("ghcr.io/xmppfed/xmppfed:{}", env!("CARGO_PKG_VERSION")),
            image_pull_policy: None,
            cluster_domain: "cluster.local".into(),
            gateway_state_size: "1Gi".into(),
        }
    }
}

/// What the operator found in the cluster before building.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// cert-manager's CRDs are installed.
    pub cert_manager: bool,
    /// external-dns's `DNSEndpoint` CRD is installed.
    pub external_dns: bool,
    /// Addresses (IPs) of the edge LoadBalancer, once assigned.
    pub load_balancer: Vec<String>,
    /// `metadata.resourceVersion` of each Secret the pods mount that exists (see
    /// [`mounted_secrets`]).
    pub secret_versions: BTreeMap<String, String>,
}

/// One object to server-side apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    /// The whole object, `apiVersion` and `kind` included.
    pub value: Value,
}

impl Object {
    fn from_typed<K: Resource<DynamicType = ()> + serde::Serialize>(object: &K) -> Self {
        let value = serde_json::to_value(object).unwrap_or(Value::Null);
        Self {
            api_version: K::api_version(&()).into_owned(),
            kind: K::kind(&()).into_owned(),
            name: object.meta().name.clone().unwrap_or_default(),
            value,
        }
    }
}

/// Everything one federation needs, in apply order (what others mount comes first).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    pub objects: Vec<Object>,
}

impl Desired {
    /// The objects as one multi-document YAML (the golden files' form).
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        for o in &self.objects {
            out.push_str("---\n");
            out.push_str(&serde_saphyr::to_string(&o.value).unwrap_or_default());
        }
        out
    }

    pub fn find(&self, kind: &str, name: &str) -> Option<&Object> {
        self.objects
            .iter()
            .find(|o| o.kind == kind && o.name == name)
    }
}

/// The inputs of one build.
pub struct Inputs<'a> {
    pub federation: &'a XmppFederation,
    /// The sealed policy document compiled from the federation, its partners and policies.
    pub policy: &'a PolicyDocument,
    pub settings: &'a Settings,
    pub observed: &'a Observed,
}

impl Inputs<'_> {
    pub fn names(&self) -> Names {
        Names::new(
            &self.federation.metadata.name.clone().unwrap_or_default(),
            &self
                .federation
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
        )
    }

    /// Metadata for a child object: name, namespace, labels, owner.
    fn meta(&self, name: String, component: Component) -> ObjectMeta {
        let names = self.names();
        ObjectMeta {
            name: Some(name),
            namespace: Some(names.namespace.clone()),
            labels: Some(labels::labels(&names.federation, component)),
            owner_references: self.owner().map(|o| vec![o]),
            ..Default::default()
        }
    }

    fn owner(&self) -> Option<OwnerReference> {
        self.federation.controller_owner_ref(&())
    }

    /// The edge certificate's Secret: the user's, or the one cert-manager fills.
    fn edge_tls_secret(&self) -> String {
        self.federation
            .spec
            .tls
            .secret_name
            .clone()
            .unwrap_or_else(|| self.names().edge_tls_secret())
    }

    /// The dialback Secret and key: the user's, or the generated one.
    fn dialback_secret(&self) -> (String, String) {
        match &self.federation.spec.dialback.secret_ref {
            Some(r) => (r.name.clone(), r.key.clone()),
            None => (self.names().dialback(), policy::DIALBACK_KEY.into()),
        }
    }
}

/// Every object for one federation except the generated dialback Secret, which is created
/// once and never re-applied (see [`dialback_secret`]). Fails only when the policy document
/// cannot be put in a ConfigMap.
pub fn build(inputs: &Inputs) -> Result<Desired, EncodeError> {
    let mut objects = vec![policy::config_map(inputs)?];
    if inputs.observed.cert_manager {
        objects.extend(certificates::build(inputs));
    }
    objects.extend(rbac::build(inputs));
    objects.extend(services::build(inputs));
    objects.extend(workloads::build(inputs));
    objects.extend(network::build(inputs));
    if inputs.observed.external_dns {
        objects.extend(dns::build(inputs));
    }
    Ok(Desired { objects })
}

/// Labels of `component` for the federation being built, as the object's selector map.
fn selector(inputs: &Inputs, component: Component) -> BTreeMap<String, String> {
    labels::selector(&inputs.names().federation, component)
}

/// Every (apiVersion, kind) the builders can produce, for finding orphans by label. The
/// generated dialback and link Secrets are left out on purpose: they are never deleted while the
/// federation exists (their owner reference removes them with the federation).
pub fn owned_kinds(observed: &Observed) -> Vec<(&'static str, &'static str)> {
    let mut kinds = vec![
        ("v1", "ConfigMap"),
        ("v1", "ServiceAccount"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("v1", "Service"),
        ("apps/v1", "Deployment"),
        ("apps/v1", "StatefulSet"),
        ("policy/v1", "PodDisruptionBudget"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
    ];
    if observed.cert_manager {
        kinds.push(("cert-manager.io/v1", "Issuer"));
        kinds.push(("cert-manager.io/v1", "Certificate"));
    }
    if observed.external_dns {
        kinds.push(("externaldns.k8s.io/v1alpha1", "DNSEndpoint"));
    }
    kinds
}
