//! Golden tests of every object the operator builds, from the `examples/` manifests users
//! apply. The YAML files in `tests/golden/` are reviewed like code; regenerate them after an
//! intended change with `UPDATE_GOLDEN=1 cargo test -p xmppfed-operator --test golden` and
//! read the diff.

use serde_json::Value;
use std::path::Path;
use xmppfed_api::compile::compile;
use xmppfed_api::schema_check::prune_and_validate;
use xmppfed_api::v1alpha1::XmppFederation;
use xmppfed_operator::build::{Desired, Inputs, Observed, build, dialback_secret};

mod support;

use support::{ROOT, examples, settings};

fn built(fed: &XmppFederation, observed: &Observed) -> Desired {
    let (_, partners, policies) = examples();
    let compiled = compile(fed, &partners, &policies).expect("examples compile");
    let settings = settings();
    let inputs = Inputs {
        federation: fed,
        policy: &compiled.document,
        settings: &settings,
        observed,
    };
    let mut desired = build(&inputs).expect("the examples fit in a ConfigMap");
    desired
        .objects
        .extend(dialback_secret(&inputs, "golden-dialback-secret"));
    desired
}

fn check_golden(name: &str, desired: &Desired) {
    let path = Path::new(ROOT)
        .join("tests/golden")
        .join(format!("{name}.yaml"));
    let yaml = desired.to_yaml();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &yaml).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    if want != yaml {
        let first = want
            .lines()
            .zip(yaml.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(want.lines().count().min(yaml.lines().count()));
        panic!(
            "{} differs from the built objects from line {}:\n  golden: {:?}\n  built:  {:?}\n(UPDATE_GOLDEN=1 to accept the new output, then review the diff)",
            path.display(),
            first + 1,
            want.lines().nth(first),
            yaml.lines().nth(first)
        );
    }
}

fn full() -> Observed {
    Observed {
        cert_manager: true,
        external_dns: true,
        load_balancer: vec!["203.0.113.10".into(), "2001:db8::10".into()],
        // The mounted Secrets as the API server gave them (the pod templates carry these).
        secret_versions: [
            ("contoso-edge-tls", "1101"),
            ("contoso-link-proxy", "1102"),
            ("contoso-link-gateway", "1103"),
            ("contoso-dialback", "1104"),
        ]
        .into_iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect(),
    }
}

#[test]
fn examples_with_cert_manager_and_external_dns() {
    let (fed, _, _) = examples();
    check_golden("contoso", &built(&fed, &full()));
}

/// Neither cert-manager nor external-dns installed: the user's certificate Secret and
/// dialback Secret, no DNS records.
#[test]
fn examples_without_optional_crds() {
    let (mut fed, _, _) = examples();
    fed.spec.tls.issuer_ref = None;
    fed.spec.tls.secret_name = Some("contoso-edge-cert".into());
    fed.spec.dialback.secret_ref = Some(
        serde_json::from_value(serde_json::json!({"name": "contoso-dialback-own", "key": "pass"}))
            .expect("ref"),
    );
    fed.spec.dns.provider = xmppfed_api::v1alpha1::DnsProvider::None;
    let desired = built(&fed, &Observed::default());
    assert!(desired.objects.iter().all(|o| o.kind != "Certificate"
        && o.kind != "DNSEndpoint"
        && o.name != "contoso-dialback"));
    check_golden("contoso-minimal", &desired);
}

#[test]
fn builds_are_deterministic() {
    let (fed, _, _) = examples();
    assert_eq!(built(&fed, &full()), built(&fed, &full()));
}

/// Every object has an owner reference to the federation and the standard labels, so it is
/// garbage-collected with it and found again by the orphan sweep.
#[test]
fn every_object_is_owned_and_labelled() {
    let (fed, _, _) = examples();
    for o in built(&fed, &full()).objects {
        let meta = &o.value["metadata"];
        assert_eq!(meta["namespace"], "xmpp", "{} {}", o.kind, o.name);
        let owner = &meta["ownerReferences"][0];
        assert_eq!(owner["kind"], "XmppFederation", "{} {}", o.kind, o.name);
        assert_eq!(owner["controller"], true);
        let labels = &meta["labels"];
        assert_eq!(labels["app.kubernetes.io/managed-by"], "xmppfed-operator");
        assert_eq!(labels["app.kubernetes.io/instance"], "contoso");
    }
}

fn upstream_schema(file: &str) -> Value {
    let text = std::fs::read_to_string(Path::new(ROOT).join("tests/upstream-crds").join(file))
        .expect("upstream CRD");
    let crd: Value = serde_saphyr::from_str(&text).expect("CRD YAML");
    let versions = crd["spec"]["versions"].as_array().expect("versions");
    let served = versions
        .iter()
        .find(|v| v["storage"] == true)
        .expect("storage version");
    served["schema"]["openAPIV3Schema"].clone()
}

/// The cert-manager and external-dns objects are valid against those projects' published
/// CRDs (unknown fields, types, enums, required fields, patterns).
#[test]
fn optional_crd_objects_match_the_upstream_schemas() {
    let (fed, _, _) = examples();
    let schemas = [
        (
            "Certificate",
            upstream_schema("cert-manager.io_certificates.yaml"),
        ),
        ("Issuer", upstream_schema("cert-manager.io_issuers.yaml")),
        (
            "DNSEndpoint",
            upstream_schema("externaldns.k8s.io_dnsendpoints.yaml"),
        ),
    ];
    let mut checked = 0;
    for o in built(&fed, &full()).objects {
        let Some((_, schema)) = schemas.iter().find(|(k, _)| *k == o.kind) else {
            continue;
        };
        let mut value = o.value.clone();
        // The API server validates ObjectMeta itself, not through the CRD schema.
        if let Some(v) = value.as_object_mut() {
            v.remove("metadata");
        }
        let violations = prune_and_validate(schema, &mut value, "");
        assert!(
            violations.is_empty(),
            "{} {}: {violations:?}",
            o.kind,
            o.name
        );
        checked += 1;
    }
    assert_eq!(
        checked, 7,
        "edge + link CA + 2 link certificates, 2 issuers, 1 DNSEndpoint"
    );
}

#[test]
fn srv_records_end_with_a_dot_and_carry_priority_weight_and_port() {
    let (fed, _, _) = examples();
    let desired = built(&fed, &full());
    let dns = desired
        .find("DNSEndpoint", "contoso-dns")
        .expect("DNSEndpoint");
    let endpoints = dns.value["spec"]["endpoints"]
        .as_array()
        .expect("endpoints");
    let target = |name: &str| {
        endpoints
            .iter()
            .find(|e| e["dnsName"] == name)
            .map(|e| e["targets"][0].clone())
    };
    assert_eq!(
        target("_xmpp-server._tcp.contoso.com"),
        Some("0 5 5269 xmpp.contoso.com.".into())
    );
    assert_eq!(
        target("_xmpps-server._tcp.contoso.net"),
        Some("0 5 5270 xmpp.contoso.com.".into())
    );
    let a = endpoints
        .iter()
        .find(|e| e["recordType"] == "A")
        .expect("A");
    assert_eq!(a["targets"], serde_json::json!(["203.0.113.10"]));
    let aaaa = endpoints
        .iter()
        .find(|e| e["recordType"] == "AAAA")
        .expect("AAAA");
    assert_eq!(aaaa["targets"], serde_json::json!(["2001:db8::10"]));
}

/// Pod Security "restricted" for both pods: non-root, no privilege escalation, all
/// capabilities dropped, RuntimeDefault seccomp, read-only root.
#[test]
fn pods_meet_pod_security_restricted() {
    let (fed, _, _) = examples();
    let desired = built(&fed, &full());
    for (kind, name) in [
        ("Deployment", "contoso-proxy"),
        ("StatefulSet", "contoso-gateway"),
    ] {
        let o = desired.find(kind, name).expect("workload");
        let pod = &o.value["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{kind}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        for c in pod["containers"].as_array().expect("containers") {
            let sc = &c["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{kind}");
            assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
            assert_eq!(sc["readOnlyRootFilesystem"], true);
            assert!(sc["capabilities"]["add"].is_null());
            assert!(
                c["ports"]
                    .as_array()
                    .expect("ports")
                    .iter()
                    .all(|p| p["containerPort"].as_i64() >= Some(1024)),
                "{kind}: no privileged ports without NET_BIND_SERVICE"
            );
        }
        for v in pod["volumes"].as_array().expect("volumes") {
            assert!(v["hostPath"].is_null(), "{kind}: no hostPath");
        }
    }
}

/// Each pod may read its policy ConfigMap, by name, and nothing else.
#[test]
fn roles_grant_only_the_policy_config_map() {
    let (fed, _, _) = examples();
    let desired = built(&fed, &full());
    for name in ["contoso-proxy", "contoso-gateway"] {
        let role = desired.find("Role", name).expect("role");
        assert_eq!(
            role.value["rules"],
            serde_json::json!([{
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": ["contoso-policy"],
                "verbs": ["get", "list", "watch"],
            }])
        );
    }
}

/// Names of every Secret a pod template mounts, as volumes or projections.
fn secrets_in_pod_template(object: &Value) -> Vec<String> {
    let mut names = Vec::new();
    for v in object["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect("volumes")
    {
        if let Some(n) = v["secret"]["secretName"].as_str() {
            names.push(n.to_string());
        }
        for source in v["projected"]["sources"].as_array().into_iter().flatten() {
            if let Some(n) = source["secret"]["name"].as_str() {
                names.push(n.to_string());
            }
        }
    }
    names.sort();
    names
}

/// The pods roll when any Secret they mount changes: every mounted Secret is listed by
/// `mounted_secrets` (which the reconcile reads the versions of), and its version is in the
/// pod template.
#[test]
fn pod_templates_carry_the_version_of_every_secret_they_mount() {
    let (fed, _, _) = examples();
    let observed = full();
    let desired = built(&fed, &observed);
    for (kind, name) in [
        ("Deployment", "contoso-proxy"),
        ("StatefulSet", "contoso-gateway"),
    ] {
        let object = &desired.find(kind, name).expect("workload").value;
        let mounted = secrets_in_pod_template(object);
        let annotation = object["spec"]["template"]["metadata"]["annotations"]
            [xmppfed_operator::build::SECRET_VERSIONS]
            .as_str()
            .expect("annotation");
        for secret in &mounted {
            match observed.secret_versions.get(secret) {
                Some(v) => assert!(
                    annotation.contains(&format!("{secret}@{v}")),
                    "{kind}: {secret} missing from {annotation}"
                ),
                // Not observed (the internal CA of the example): listed, but no version.
                None => assert_eq!(secret, "chat-internal-ca"),
            }
        }
    }
    // A renewed certificate changes the proxy's pod template and nothing else's.
    let mut renewed = observed.clone();
    renewed
        .secret_versions
        .insert("contoso-edge-tls".into(), "2001".into());
    let after = built(&fed, &renewed);
    let template = |d: &Desired, kind: &str, name: &str| {
        d.find(kind, name).expect("workload").value["spec"]["template"].clone()
    };
    assert_ne!(
        template(&desired, "Deployment", "contoso-proxy"),
        template(&after, "Deployment", "contoso-proxy")
    );
    assert_eq!(
        template(&desired, "StatefulSet", "contoso-gateway"),
        template(&after, "StatefulSet", "contoso-gateway")
    );
}

/// Internal servers with different CAs: the gateway trusts each one's CA (one projected
/// volume, one file per Secret, each named once).
#[test]
fn every_internal_server_ca_is_mounted_once() {
    let (mut fed, _, _) = examples();
    let mut second = fed.spec.gateway.internal_servers[0].clone();
    second.host = serde_json::from_value(serde_json::json!("chat2.contoso.com")).expect("host");
    second.ca_secret_name = Some("other-ca".into());
    let third = second.clone();
    fed.spec.gateway.internal_servers.extend([second, third]);
    let desired = built(&fed, &full());
    let gateway = &desired
        .find("StatefulSet", "contoso-gateway")
        .expect("gateway")
        .value;
    assert_eq!(
        secrets_in_pod_template(gateway)
            .into_iter()
            .filter(|s| s.ends_with("-ca"))
            .collect::<Vec<_>>(),
        ["chat-internal-ca", "other-ca"]
    );
    let args: Vec<&str> = gateway["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let at = args
        .iter()
        .position(|a| *a == "--internal-ca")
        .expect("flag");
    assert_eq!(
        args[at + 1],
        "/etc/xmppfed/internal-ca/chat-internal-ca.crt,/etc/xmppfed/internal-ca/other-ca.crt"
    );
}

#[test]
fn network_policies_can_be_turned_off() {
    let (mut fed, _, _) = examples();
    assert_eq!(
        built(&fed, &full())
            .objects
            .iter()
            .filter(|o| o.kind == "NetworkPolicy")
            .count(),
        2
    );
    fed.spec.network_policy.enabled = false;
    assert!(
        built(&fed, &full())
            .objects
            .iter()
            .all(|o| o.kind != "NetworkPolicy")
    );
}
