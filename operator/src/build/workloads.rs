//! The proxy Deployment, the gateway StatefulSet and their PodDisruptionBudgets, with Pod
//! Security "restricted" settings, probes on `/healthz` and `/readyz`, and every file the
//! binaries read mounted from Secrets.

use super::{Inputs, Object, selector};
use crate::labels::{self, Component};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, KeyToPath, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ProjectedVolumeSource, SeccompProfile, SecretProjection,
    SecretVolumeSource, SecurityContext, Volume, VolumeMount, VolumeProjection,
    VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::{BTreeMap, BTreeSet};
use xmppfed_api::v1alpha1::PodPlacement;

/// Container ports (the Services map the user's ports onto these).
pub const PROXY_STARTTLS_PORT: i32 = 5269;
pub const PROXY_DIRECT_TLS_PORT: i32 = 5270;
pub const GATEWAY_S2S_PORT: i32 = 5269;
/// The gateway's DNS for the internal servers (the Service answers on 53).
pub const DNS_PORT: i32 = 5353;
pub const HTTP_PORT: i32 = 8080;
/// Non-root user of the image (distroless `nonroot`).
const USER: i64 = 65532;
/// Longer than the binaries' 20 s drain.
const GRACE_SECONDS: i64 = 30;

const EDGE_DIR: &str = "/etc/xmppfed/edge";
const LINK_DIR: &str = "/etc/xmppfed/link";
const DIALBACK_DIR: &str = "/etc/xmppfed/dialback";
const INTERNAL_CA_DIR: &str = "/etc/xmppfed/internal-ca";
const STATE_DIR: &str = "/var/lib/xmppfed";
const SYSTEM_CA: &str = "/etc/ssl/certs/ca-certificates.crt";

pub(super) fn build(inputs: &Inputs) -> Vec<Object> {
    vec![
        Object::from_typed(&proxy(inputs)),
        Object::from_typed(&pdb(inputs, Component::Proxy, inputs.names().proxy())),
        Object::from_typed(&gateway(inputs)),
        Object::from_typed(&pdb(inputs, Component::Gateway, inputs.names().gateway())),
    ]
}

fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(USER),
        run_as_group: Some(USER),
        fs_group: Some(USER),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn http_probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        ..Default::default()
    }
}

fn container_port(name: &str, port: i32, protocol: &str) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some(protocol.into()),
        ..Default::default()
    }
}

fn secret_volume(name: &str, secret: &str, items: Option<Vec<(String, String)>>) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            items: items.map(|i| {
                i.into_iter()
                    .map(|(key, path)| KeyToPath {
                        key,
                        path,
                        ..Default::default()
                    })
                    .collect()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The link certificate: cert-manager's Secret, or this pod's items of the generated one
/// (each pod sees only its own key).
fn link_volume(inputs: &Inputs, cert_manager_secret: &str, role: &str) -> Volume {
    if inputs.observed.cert_manager {
        return secret_volume("link-tls", cert_manager_secret, None);
    }
    secret_volume(
        "link-tls",
        &inputs.names().link_generated(),
        Some(vec![
            (format!("{role}.crt"), "tls.crt".into()),
            (format!("{role}.key"), "tls.key".into()),
            ("ca.crt".into(), "ca.crt".into()),
        ]),
    )
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..Default::default()
    }
}

fn flag(args: &mut Vec<String>, name: &str, value: impl Into<String>) {
    args.push(format!("--{name}"));
    args.push(value.into());
}

/// Spread replicas over nodes unless the user placed them.
fn affinity(inputs: &Inputs, placement: &PodPlacement, component: Component) -> Option<Affinity> {
    if placement.affinity.is_some() {
        return placement.affinity.clone();
    }
    Some(Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(LabelSelector {
                            match_labels: Some(selector(inputs, component)),
                            ..Default::default()
                        }),
                        topology_key: "kubernetes.io/hostname".into(),
                        ..Default::default()
                    },
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// What both pods share: security, placement, the binary's container.
/// The Secrets the pods of `component` mount. The binaries read them once at start, so the
/// pod template carries their resource versions: a renewed certificate or a changed Secret
/// rolls the pods.
pub fn mounted_secrets(inputs: &Inputs, component: Component) -> Vec<String> {
    let names = inputs.names();
    let link = if inputs.observed.cert_manager {
        match component {
            Component::Gateway => names.link_gateway(),
            _ => names.link_proxy(),
        }
    } else {
        names.link_generated()
    };
    let mut secrets = vec![link, inputs.dialback_secret().0];
    match component {
        Component::Gateway => secrets.extend(internal_cas(inputs)),
        _ => secrets.push(inputs.edge_tls_secret()),
    }
    secrets.sort();
    secrets.dedup();
    secrets
}

/// `name@resourceVersion` of each mounted Secret that exists (annotation
/// [`SECRET_VERSIONS`]); none when nothing was observed.
fn secret_versions(inputs: &Inputs, component: Component) -> Option<BTreeMap<String, String>> {
    let versions: Vec<String> = mounted_secrets(inputs, component)
        .into_iter()
        .filter_map(|name| {
            let version = inputs.observed.secret_versions.get(&name)?;
            Some(format!("{name}@{version}"))
        })
        .collect();
    (!versions.is_empty()).then(|| BTreeMap::from([(SECRET_VERSIONS.into(), versions.join(","))]))
}

/// Pod template annotation: the resource versions of the Secrets the pods mount.
pub const SECRET_VERSIONS: &str = "xmppfed.io/secret-versions";

/// Every distinct CA Secret of the internal servers.
fn internal_cas(inputs: &Inputs) -> Vec<String> {
    inputs
        .federation
        .spec
        .gateway
        .internal_servers
        .iter()
        .filter_map(|s| s.ca_secret_name.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn pod(
    inputs: &Inputs,
    component: Component,
    service_account: String,
    placement: &PodPlacement,
    container: Container,
    volumes: Vec<Volume>,
) -> PodTemplateSpec {
    let names = inputs.names();
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels::labels(&names.federation, component)),
            annotations: secret_versions(inputs, component),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(service_account),
            // Both binaries watch their policy ConfigMap through the API.
            automount_service_account_token: Some(true),
            security_context: Some(pod_security()),
            termination_grace_period_seconds: Some(GRACE_SECONDS),
            node_selector: (!placement.node_selector.is_empty())
                .then(|| placement.node_selector.clone()),
            tolerations: (!placement.tolerations.is_empty()).then(|| placement.tolerations.clone()),
            affinity: affinity(inputs, placement, component),
            containers: vec![container],
            volumes: Some(volumes),
            ..Default::default()
        }),
    }
}

fn container(inputs: &Inputs, name: &str, args: Vec<String>) -> Container {
    Container {
        name: name.into(),
        image: Some(inputs.settings.image.clone()),
        image_pull_policy: inputs.settings.image_pull_policy.clone(),
        command: Some(vec![format!("/usr/local/bin/xmppfed-{name}")]),
        args: Some(args),
        security_context: Some(container_security()),
        readiness_probe: Some(http_probe("/readyz", 5)),
        liveness_probe: Some(http_probe("/healthz", 10)),
        ..Default::default()
    }
}

fn proxy(inputs: &Inputs) -> Deployment {
    let names = inputs.names();
    let spec = &inputs.federation.spec;
    let (dialback_secret, dialback_key) = inputs.dialback_secret();
    let link = spec.gateway.internal_link_port;
    let mut args = Vec::new();
    flag(
        &mut args,
        "policy-configmap",
        format!("{}/{}", names.namespace, names.policy()),
    );
    flag(&mut args, "tls-cert", format!("{EDGE_DIR}/tls.crt"));
    flag(&mut args, "tls-key", format!("{EDGE_DIR}/tls.key"));
    flag(&mut args, "peer-ca", SYSTEM_CA);
    flag(
        &mut args,
        "dialback-secret",
        format!("{DIALBACK_DIR}/secret"),
    );
    flag(&mut args, "link-cert", format!("{LINK_DIR}/tls.crt"));
    flag(&mut args, "link-key", format!("{LINK_DIR}/tls.key"));
    flag(&mut args, "link-ca", format!("{LINK_DIR}/ca.crt"));
    flag(
        &mut args,
        "starttls-listen",
        format!("0.0.0.0:{PROXY_STARTTLS_PORT}"),
    );
    flag(
        &mut args,
        "direct-tls-listen",
        format!("0.0.0.0:{PROXY_DIRECT_TLS_PORT}"),
    );
    flag(&mut args, "link-listen", format!("0.0.0.0:{link}"));
    flag(&mut args, "http-listen", format!("0.0.0.0:{HTTP_PORT}"));
    args.push("--log-json".into());
    let mut c = container(inputs, "proxy", args);
    c.ports = Some(vec![
        container_port("xmpp-server", PROXY_STARTTLS_PORT, "TCP"),
        container_port("xmpps-server", PROXY_DIRECT_TLS_PORT, "TCP"),
        container_port("link", link, "TCP"),
        container_port("http", HTTP_PORT, "TCP"),
    ]);
    c.resources = spec.edge.placement.resources.clone();
    c.volume_mounts = Some(vec![
        mount("edge-tls", EDGE_DIR),
        mount("link-tls", LINK_DIR),
        mount("dialback", DIALBACK_DIR),
    ]);
    let volumes = vec![
        secret_volume("edge-tls", &inputs.edge_tls_secret(), None),
        link_volume(inputs, &names.link_proxy(), "proxy"),
        secret_volume(
            "dialback",
            &dialback_secret,
            Some(vec![(dialback_key, "secret".into())]),
        ),
    ];
    Deployment {
        metadata: inputs.meta(names.proxy(), Component::Proxy),
        spec: DeploymentSpec {
            replicas: Some(spec.edge.replicas),
            selector: LabelSelector {
                match_labels: Some(selector(inputs, Component::Proxy)),
                ..Default::default()
            },
            template: pod(
                inputs,
                Component::Proxy,
                names.proxy(),
                &spec.edge.placement,
                c,
                volumes,
            ),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn gateway(inputs: &Inputs) -> StatefulSet {
    let names = inputs.names();
    let spec = &inputs.federation.spec;
    let (dialback_secret, dialback_key) = inputs.dialback_secret();
    let link = spec.gateway.internal_link_port;
    // Every internal server's CA, in one projected volume.
    let internal_cas = internal_cas(inputs);
    let mut args = Vec::new();
    flag(
        &mut args,
        "policy-configmap",
        format!("{}/{}", names.namespace, names.policy()),
    );
    // Towards the internal servers the gateway presents its link certificate (private CA):
    // SASL EXTERNAL where the internal server trusts that CA, dialback otherwise.
    flag(&mut args, "tls-cert", format!("{LINK_DIR}/tls.crt"));
    flag(&mut args, "tls-key", format!("{LINK_DIR}/tls.key"));
    flag(
        &mut args,
        "internal-ca",
        if internal_cas.is_empty() {
            SYSTEM_CA.into()
        } else {
            internal_cas
                .iter()
                .map(|name| format!("{INTERNAL_CA_DIR}/{name}.crt"))
                .collect::<Vec<_>>()
                .join(",")
        },
    );
    flag(
        &mut args,
        "dialback-secret",
        format!("{DIALBACK_DIR}/secret"),
    );
    flag(
        &mut args,
        "proxy",
        format!("{}:{link}", names.service_host(&names.proxy())),
    );
    flag(&mut args, "link-cert", format!("{LINK_DIR}/tls.crt"));
    flag(&mut args, "link-key", format!("{LINK_DIR}/tls.key"));
    flag(&mut args, "link-ca", format!("{LINK_DIR}/ca.crt"));
    flag(
        &mut args,
        "link-server-name",
        names.service_host(&names.proxy()),
    );
    flag(&mut args, "state", format!("{STATE_DIR}/contacts.redb"));
    flag(
        &mut args,
        "s2s-listen",
        format!("0.0.0.0:{GATEWAY_S2S_PORT}"),
    );
    flag(&mut args, "http-listen", format!("0.0.0.0:{HTTP_PORT}"));
    flag(&mut args, "dns-listen", format!("0.0.0.0:{DNS_PORT}"));
    flag(
        &mut args,
        "dns-target-host",
        format!(
            "{}.{}",
            names.service_host(&names.gateway()),
            inputs.settings.cluster_domain
        ),
    );
    flag(&mut args, "dns-port", GATEWAY_S2S_PORT.to_string());
    // Everything but the partner domains goes to the cluster DNS from the pod's resolv.conf.
    flag(&mut args, "dns-upstream", "auto");
    args.push("--log-json".into());
    let mut c = container(inputs, "gateway", args);
    c.env = Some(vec![EnvVar {
        name: "POD_NAME".into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.name".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }]);
    c.ports = Some(vec![
        container_port("xmpp-server", GATEWAY_S2S_PORT, "TCP"),
        container_port("dns", DNS_PORT, "UDP"),
        container_port("http", HTTP_PORT, "TCP"),
    ]);
    c.resources = spec.gateway.placement.resources.clone();
    let mut mounts = vec![
        mount("link-tls", LINK_DIR),
        mount("dialback", DIALBACK_DIR),
        VolumeMount {
            name: "state".into(),
            mount_path: STATE_DIR.into(),
            ..Default::default()
        },
        VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..Default::default()
        },
    ];
    let mut volumes = vec![
        link_volume(inputs, &names.link_gateway(), "gateway"),
        secret_volume(
            "dialback",
            &dialback_secret,
            Some(vec![(dialback_key, "secret".into())]),
        ),
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
    ];
    if !internal_cas.is_empty() {
        mounts.push(mount("internal-ca", INTERNAL_CA_DIR));
        volumes.push(Volume {
            name: "internal-ca".into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(
                    internal_cas
                        .iter()
                        .map(|name| VolumeProjection {
                            secret: Some(SecretProjection {
                                name: name.clone(),
                                items: Some(vec![KeyToPath {
                                    key: "ca.crt".into(),
                                    path: format!("{name}.crt"),
                                    ..Default::default()
                                }]),
                                ..Default::default()
                            }),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    c.volume_mounts = Some(mounts);
    StatefulSet {
        metadata: inputs.meta(names.gateway(), Component::Gateway),
        spec: StatefulSetSpec {
            replicas: Some(spec.gateway.replicas),
            service_name: Some(names.gateway()),
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(selector(inputs, Component::Gateway)),
                ..Default::default()
            },
            template: pod(
                inputs,
                Component::Gateway,
                names.gateway(),
                &spec.gateway.placement,
                c,
                volumes,
            ),
            // The contact store (who reached out to whom) survives restarts on its volume.
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("state".into()),
                    labels: Some(labels::labels(&names.federation, Component::Gateway)),
                    ..Default::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".into(),
                            Quantity(inputs.settings.gateway_state_size.clone()),
                        )])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// One pod at a time may be evicted: the others keep the federation up while it drains.
fn pdb(inputs: &Inputs, component: Component, name: String) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: inputs.meta(name, component),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector(inputs, component)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
