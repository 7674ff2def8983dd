//! Names of everything the operator creates for one federation, in one place: the builders,
//! the RBAC `resourceNames`, the pods' flags and the docs all follow from these.

/// Object names for federation `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub federation: String,
    pub namespace: String,
}

impl Names {
    pub fn new(federation: &str, namespace: &str) -> Self {
        Self {
            federation: federation.to_string(),
            namespace: namespace.to_string(),
        }
    }
    fn with(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.federation)
    }
    /// Proxy Deployment, its ServiceAccount/Role/RoleBinding, its PDB, and the headless
    /// Service the gateways find every proxy pod through.
    pub fn proxy(&self) -> String {
        self.with("proxy")
    }
    /// The LoadBalancer Service partners connect to.
    pub fn edge_service(&self) -> String {
        self.with("edge")
    }
    /// Gateway StatefulSet, its Service (S2S and DNS for the internal servers), RBAC and PDB.
    pub fn gateway(&self) -> String {
        self.with("gateway")
    }
    /// The compiled policy document.
    pub fn policy(&self) -> String {
        xmppfed_api::configmap::policy_config_map_name(&self.federation)
    }
    /// The generated dialback secret (when `spec.dialback.secretRef` is not set).
    pub fn dialback(&self) -> String {
        self.with("dialback")
    }
    /// The edge Certificate and its Secret.
    pub fn edge_certificate(&self) -> String {
        self.with("edge")
    }
    pub fn edge_tls_secret(&self) -> String {
        self.with("edge-tls")
    }
    /// The internal link's private CA: a self-signed Issuer bootstraps a CA Certificate,
    /// which backs a CA Issuer for the two link certificates.
    pub fn link_bootstrap_issuer(&self) -> String {
        self.with("link-selfsigned")
    }
    pub fn link_ca(&self) -> String {
        self.with("link-ca")
    }
    pub fn link_proxy(&self) -> String {
        self.with("link-proxy")
    }
    pub fn link_gateway(&self) -> String {
        self.with("link-gateway")
    }
    /// Without cert-manager: the link PKI the operator generates once, in one Secret.
    pub fn link_generated(&self) -> String {
        self.with("link")
    }
    /// The DNSEndpoint with the SRV (and edge A/AAAA) records.
    pub fn dns_endpoint(&self) -> String {
        self.with("dns")
    }
    /// In-cluster DNS name of a Service of this namespace.
    pub fn service_host(&self, service: &str) -> String {
        format!("{service}.{}.svc", self.namespace)
    }
}
