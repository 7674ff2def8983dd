//! `XmppFederation`: one federation edge (proxies + gateways) serving some local domains.

use super::common::{Condition, DomainName, Duration, SecretKeyRef, default_true};
use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use xmppfed_policy::Negotiation;

/// An XMPP federation edge: the proxies that partner servers talk to, the gateways that lead to
/// the organisation's own XMPP server, their certificates and DNS records, and the policy that
/// decides which partners and which users may federate. Lync Server's XMPP proxy, XMPP gateway
/// and XmppGatewayConfiguration in one object.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "xmppfed.io",
    version = "v1alpha1",
    kind = "XmppFederation",
    derive = "PartialEq",
    doc = "An XMPP federation edge: proxies, gateways, certificates, DNS records and the compiled partner and user policy for some local XMPP domains.",
    plural = "xmppfederations",
    namespaced,
    status = "XmppFederationStatus",
    shortname = "xfed",
    category = "xmpp",
    cel,
    printcolumn(
        name = "Domains",
        type_ = "string",
        json_path = ".spec.domains",
        description = "Local XMPP domains served"
    ),
    printcolumn(
        name = "Edge",
        type_ = "string",
        json_path = ".spec.edge.hostname",
        description = "Host name the SRV records point at"
    ),
    printcolumn(
        name = "Partners",
        type_ = "integer",
        json_path = ".status.partners",
        description = "Allowed partners in the compiled policy"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1
    ),
    printcolumn(
        name = "Endpoints",
        type_ = "string",
        json_path = ".status.endpoints",
        priority = 1,
        description = "LoadBalancer addresses of the edge"
    ),
    printcolumn(
        name = "Policy",
        type_ = "string",
        json_path = ".status.policyVersion",
        priority = 1,
        description = "Version of the compiled policy"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct XmppFederationSpec {
    /// Local XMPP domains served by this edge (the domain part of your users' addresses, e.g.
    /// `example.com`). Each gets `_xmpp-server._tcp` and `_xmpps-server._tcp` SRV records and is a
    /// SAN of the edge certificate.
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Set)]
    pub domains: Vec<DomainName>,

    /// The edge proxies: what partners connect to (TCP 5269 STARTTLS, 5270 direct TLS).
    #[serde(default)]
    pub edge: EdgeSpec,

    /// The gateways between the edge and the organisation's own XMPP server(s).
    pub gateway: GatewaySpec,

    /// Connection limits and timers, as Lync's XmppGatewayConfiguration.
    #[serde(default)]
    pub limits: LimitsSpec,

    /// Server dialback (XEP-0220) secret.
    #[serde(default)]
    pub dialback: DialbackSpec,

    /// Where the edge certificate comes from.
    pub tls: TlsSpec,

    /// Publication of the SRV and host records.
    #[serde(default)]
    pub dns: DnsSpec,

    /// What happens to servers that are not allowed partners. Only `Deny` (Lync's behaviour)
    /// exists today.
    #[serde(default)]
    pub unlisted_partners: UnlistedPartners,

    /// NetworkPolicies around the proxy and gateway pods.
    #[serde(default)]
    pub network_policy: NetworkPolicySpec,

    /// Which XmppAllowedPartners of this namespace belong to this federation. Empty or absent
    /// selects all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_selector: Option<LabelSelector>,

    /// Which ExternalAccessPolicies of this namespace belong to this federation. Empty or absent
    /// selects all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_policy_selector: Option<LabelSelector>,
}

/// Scheduling and resources of a workload's pods.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodPlacement {
    /// Node labels the pods must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Affinity rules. Without them the operator spreads replicas over nodes (preferred pod
    /// anti-affinity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// CPU and memory requests and limits of the main container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// The edge proxies.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EdgeSpec {
    /// Host name that the SRV records point at and that the edge's address is published under
    /// (Lync: `xmpp.contoso.com`). Default: `xmpp.` followed by the first domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<DomainName>,
    /// Number of proxy pods.
    #[serde(default = "default_edge_replicas")]
    #[schemars(range(min = 1, max = 100))]
    pub replicas: i32,
    /// The Service partners connect to.
    #[serde(default)]
    pub service: EdgeServiceSpec,
    /// Listening ports.
    #[serde(default)]
    pub ports: EdgePorts,
    /// SRV priority of this edge; lower is preferred. Give a standby federation a higher value
    /// for site failover, as with Lync edge pools.
    #[serde(default)]
    #[schemars(range(min = 0, max = 65535))]
    pub srv_priority: i32,
    /// SRV weight among edges of equal priority.
    #[serde(default = "default_srv_weight")]
    #[schemars(range(min = 0, max = 65535))]
    pub srv_weight: i32,
    #[serde(flatten)]
    pub placement: PodPlacement,
}

fn default_edge_replicas() -> i32 {
    2
}
fn default_srv_weight() -> i32 {
    5
}

impl Default for EdgeSpec {
    fn default() -> Self {
        Self {
            hostname: None,
            replicas: default_edge_replicas(),
            service: EdgeServiceSpec::default(),
            ports: EdgePorts::default(),
            srv_priority: 0,
            srv_weight: default_srv_weight(),
            placement: PodPlacement::default(),
        }
    }
}

/// Kubernetes Service type of the edge.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EdgeServiceType {
    #[default]
    LoadBalancer,
    NodePort,
    ClusterIP,
}

/// The edge Service.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EdgeServiceSpec {
    /// Service type; `LoadBalancer` unless something else fronts the edge.
    #[serde(default, rename = "type")]
    pub type_: EdgeServiceType,
    /// Annotations for the Service (cloud load-balancer settings).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Requested load-balancer address, where the cloud supports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_ip: Option<String>,
    /// Load-balancer implementation to use (`spec.loadBalancerClass`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_class: Option<String>,
}

/// The edge's listening ports.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.starttls != self.directTls").message("ports.starttls and ports.directTls must differ"))]
pub struct EdgePorts {
    /// Port for XMPP server-to-server with STARTTLS (RFC 6120).
    #[serde(default = "default_starttls_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub starttls: i32,
    /// Port for XMPP server-to-server over direct TLS (XEP-0368).
    #[serde(default = "default_direct_tls_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub direct_tls: i32,
}

fn default_starttls_port() -> i32 {
    5269
}
fn default_direct_tls_port() -> i32 {
    5270
}

impl Default for EdgePorts {
    fn default() -> Self {
        Self {
            starttls: default_starttls_port(),
            direct_tls: default_direct_tls_port(),
        }
    }
}

/// The gateways.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// Number of gateway pods.
    #[serde(default = "default_gateway_replicas")]
    #[schemars(range(min = 1, max = 100))]
    pub replicas: i32,
    /// The organisation's own XMPP server(s). For each of them the gateway stands for every
    /// allowed partner domain.
    #[schemars(length(min = 1, max = 16))]
    pub internal_servers: Vec<InternalServerSpec>,
    /// Record message bodies in the audit log (Lync `EnableLoggingAllMessageBodies`). Off by
    /// default: logs and metrics never contain message bodies.
    #[serde(default)]
    pub log_message_bodies: bool,
    /// Port of the mutual-TLS link between proxies and gateways (Lync: MTLS 23456).
    #[serde(default = "default_internal_link_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub internal_link_port: i32,
    #[serde(flatten)]
    pub placement: PodPlacement,
}

fn default_gateway_replicas() -> i32 {
    1
}
fn default_internal_link_port() -> i32 {
    23456
}

/// One of the organisation's XMPP servers.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InternalServerSpec {
    /// Local domains this server hosts. Empty means every domain in `spec.domains`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub domains: Vec<DomainName>,
    /// Host name (or IPv4 address) of the server, e.g. `prosody.chat.svc.cluster.local`.
    pub host: DomainName,
    /// Its server-to-server port.
    #[serde(default = "default_s2s_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// TLS towards this server.
    #[serde(default)]
    pub tls: Negotiation,
    /// Secret with the CA (`ca.crt`) that issued this server's certificate, when it is not a
    /// public one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_name: Option<String>,
}

fn default_s2s_port() -> i32 {
    5269
}

/// Lync's XmppGatewayConfiguration limits.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LimitsSpec {
    /// Simultaneous connections allowed for all partners together.
    #[serde(default = "default_connection_limit")]
    #[schemars(range(min = 1, max = 1000000))]
    pub connection_limit: i32,
    /// Simultaneous connections allowed per partner, unless the partner sets its own.
    #[serde(default = "default_partner_connection_limit")]
    #[schemars(range(min = 1, max = 1000000))]
    pub partner_connection_limit: i32,
    /// Longest time a partner may stay silent before it must send a keepalive; the connection is
    /// closed when it expires.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_interval: Duration,
    /// Longest time a partner may take to establish an authenticated stream.
    #[serde(default = "default_establishment")]
    pub stream_establishment_timeout: Duration,
    /// Longest inactivity before a stream is closed.
    #[serde(default = "default_inactivity")]
    pub stream_inactivity_timeout: Duration,
    /// Longest time before a partner must refresh a presence subscription.
    #[serde(default = "default_subscription_refresh")]
    pub subscription_refresh_interval: Duration,
    /// Largest stanza accepted, in bytes (advertised with XEP-0478). RFC 6120 requires at least
    /// 10000.
    #[serde(default = "default_max_stanza_bytes")]
    #[schemars(range(min = 10000, max = 16777216))]
    pub max_stanza_bytes: i32,
}

fn default_connection_limit() -> i32 {
    1000
}
fn default_partner_connection_limit() -> i32 {
    20
}
fn default_keep_alive() -> Duration {
    Duration::from_secs(300)
}
fn default_establishment() -> Duration {
    Duration::from_secs(60)
}
fn default_inactivity() -> Duration {
    Duration::from_secs(600)
}
fn default_subscription_refresh() -> Duration {
    Duration::from_secs(28800)
}
fn default_max_stanza_bytes() -> i32 {
    262144
}

impl Default for LimitsSpec {
    fn default() -> Self {
        Self {
            connection_limit: default_connection_limit(),
            partner_connection_limit: default_partner_connection_limit(),
            keep_alive_interval: default_keep_alive(),
            stream_establishment_timeout: default_establishment(),
            stream_inactivity_timeout: default_inactivity(),
            subscription_refresh_interval: default_subscription_refresh(),
            max_stanza_bytes: default_max_stanza_bytes(),
        }
    }
}

/// Server dialback settings.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DialbackSpec {
    /// Secret key holding the dialback secret from which XEP-0185 keys are derived (Lync
    /// `DialbackPassphrase`). When absent the operator generates one once and never rotates it
    /// silently.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
}

/// The edge certificate.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.issuerRef) != has(self.secretName)").message("set exactly one of tls.issuerRef (cert-manager issues the edge certificate) and tls.secretName (an existing kubernetes.io/tls Secret)"))]
pub struct TlsSpec {
    /// cert-manager issuer of the edge certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<IssuerRef>,
    /// Existing `kubernetes.io/tls` Secret to use instead of cert-manager. It must carry every
    /// domain as a DNS SAN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: Option<String>,
    /// Further DNS names for the certificate (e.g. `conference.example.com`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub extra_dns_names: Vec<DomainName>,
    /// Also request `*.<domain>` for every domain, as Skype for Business 2015 advised. Needs an
    /// issuer that can solve DNS-01.
    #[serde(default)]
    pub include_wildcard: bool,
    /// Request the TLS client-authentication EKU as well. Only for private CAs: public CAs stopped
    /// issuing it in 2026, and the edge does not need it (peers accept serverAuth-only
    /// certificates as Prosody does).
    #[serde(default)]
    pub client_auth_usage: bool,
}

/// A cert-manager issuer.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    /// Issuer name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// `Issuer` (namespaced) or `ClusterIssuer`.
    #[serde(default)]
    pub kind: IssuerKind,
    /// API group of the issuer.
    #[serde(default = "default_issuer_group")]
    pub group: String,
}

fn default_issuer_group() -> String {
    "cert-manager.io".to_string()
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IssuerKind {
    #[default]
    Issuer,
    ClusterIssuer,
}

/// Publication of DNS records.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DnsSpec {
    /// `ExternalDNS` publishes the records through an external-dns `DNSEndpoint`; `None` leaves
    /// them to you.
    #[serde(default)]
    pub provider: DnsProvider,
    /// Time to live of the records.
    #[serde(default = "default_dns_ttl")]
    pub ttl: Duration,
}

fn default_dns_ttl() -> Duration {
    Duration::from_secs(300)
}

impl Default for DnsSpec {
    fn default() -> Self {
        Self {
            provider: DnsProvider::default(),
            ttl: default_dns_ttl(),
        }
    }
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DnsProvider {
    #[default]
    ExternalDNS,
    None,
}

/// NetworkPolicies for the federation's pods. They admit partners to the edge ports, the
/// gateways to the proxies' internal link, the internal servers to the gateways, DNS, the API
/// server and health/metrics scrapes, and nothing else. A cluster whose network plugin does not
/// enforce NetworkPolicies ignores them.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Create the NetworkPolicies (secure by default; turn off when another tool manages the
    /// namespace's network policy).
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// Treatment of servers that are not allowed partners.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum UnlistedPartners {
    /// Refuse them with a `<policy-violation/>` stream error.
    #[default]
    Deny,
}

/// Observed state of an XmppFederation.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct XmppFederationStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing`, `Degraded`, `CertificateReady`, `DNSPublished`, `PolicyApplied`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Addresses of the edge load balancer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    /// Number of allowed partners in the compiled policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partners: Option<i32>,
    /// Version (content hash) of the compiled policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
    /// Policy version that every running proxy and gateway has confirmed loading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_policy_version: Option<String>,
}
