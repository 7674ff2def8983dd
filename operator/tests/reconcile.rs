//! The reconcile pipeline against a scripted API server (kube-rs style: `tower-test` behind a
//! real `kube::Client`): every request is recorded and asserted — method, path, field manager,
//! `force`, body — for creation, no-op reconciles, orphan deletion, missing optional CRDs,
//! invalid specs, refused writes and status conflicts.

mod support;

use serde_json::{Value, json};
use std::sync::Arc;
use support::{
    Answer, Call, absorb_statuses, examples, scripted_client, settings, status, store_of,
};
use xmppfed_api::compile::compile;
use xmppfed_api::v1alpha1::{ExternalAccessPolicy, XmppAllowedPartner, XmppFederation};
use xmppfed_operator::build::{Inputs, Observed, build};
use xmppfed_operator::metrics::Metrics;
use xmppfed_operator::reconcile::{Context, Discovery, OptionalCrds, Stores, reconcile};

const NS: &str = "xmpp";

struct World {
    fed: XmppFederation,
    partners: Vec<XmppAllowedPartner>,
    policies: Vec<ExternalAccessPolicy>,
}

fn world() -> World {
    let (fed, partners, policies) = examples();
    World {
        fed,
        partners,
        policies,
    }
}

fn context(
    w: &World,
    client: kube::Client,
    crds: Option<OptionalCrds>,
    confirm: bool,
) -> Arc<Context> {
    Arc::new(Context {
        client,
        settings: settings(),
        stores: Stores {
            federations: store_of(std::slice::from_ref(&w.fed)),
            partners: store_of(&w.partners),
            policies: store_of(&w.policies),
        },
        discovery: match crds {
            Some(c) => Discovery::fixed(c),
            None => Discovery::new(std::time::Duration::from_secs(60)),
        },
        metrics: Arc::new(Metrics::default()),
        recorder: None,
        confirm_policy: confirm,
    })
}

const ALL: OptionalCrds = OptionalCrds {
    cert_manager: true,
    external_dns: true,
};

async fn run(
    w: &World,
    crds: Option<OptionalCrds>,
    confirm: bool,
    script: impl Fn(&Call) -> Option<Answer> + Send + Sync + 'static,
) -> (Result<(), String>, Vec<Call>, Arc<Context>) {
    let (client, log) = scripted_client(script);
    let ctx = context(w, client, crds, confirm);
    let result = reconcile(Arc::new(w.fed.clone()), ctx.clone())
        .await
        .map(|_| ())
        .map_err(|e| format!("{} {e}", e.reason()));
    let calls = log.lock().expect("log").clone();
    (result, calls, ctx)
}

fn applies(calls: &[Call]) -> Vec<&Call> {
    calls.iter().filter(|c| c.is_apply()).collect()
}

fn status_of<'a>(calls: &'a [Call], path: &str) -> Option<&'a Value> {
    calls
        .iter()
        .rev()
        .find(|c| c.is_apply() && c.path == path)
        .map(|c| &c.body["status"])
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

const FED_STATUS: &str = "/apis/xmppfed.io/v1alpha1/namespaces/xmpp/xmppfederations/contoso/status";

#[tokio::test]
async fn first_reconcile_applies_every_built_object_with_one_forcing_field_manager() {
    let w = world();
    let (result, calls, _) = run(&w, Some(ALL), false, |_| None).await;
    assert_eq!(result, Ok(()));

    // What the pure builders want, applied in order, byte for byte.
    let compiled = compile(&w.fed, &w.partners, &w.policies).expect("compiles");
    let settings = settings();
    let observed = Observed {
        cert_manager: true,
        external_dns: true,
        load_balancer: vec![],
        secret_versions: Default::default(),
    };
    let desired = build(&Inputs {
        federation: &w.fed,
        policy: &compiled.document,
        settings: &settings,
        observed: &observed,
    })
    .expect("builds");
    let object_applies: Vec<&Call> = applies(&calls)
        .into_iter()
        .filter(|c| !c.path.ends_with("/status"))
        .collect();
    assert_eq!(object_applies.len(), desired.objects.len());
    for (call, want) in object_applies.iter().zip(&desired.objects) {
        assert_eq!(call.name(), want.name, "{}", call.path);
        assert_eq!(call.body, want.value, "{}", call.path);
        assert_eq!(
            call.query.get("fieldManager").map(String::as_str),
            Some("xmppfed-operator")
        );
        assert_eq!(
            call.query.get("force").map(String::as_str),
            Some("true"),
            "{}",
            call.path
        );
        assert!(call.path.contains("/namespaces/xmpp/"), "{}", call.path);
    }
    assert!(object_applies[0].is("PATCH", "/api/v1/namespaces/xmpp/configmaps/contoso-policy"));
    assert!(calls.iter().any(|c| c.is(
        "PATCH",
        "/apis/apps/v1/namespaces/xmpp/deployments/contoso-proxy"
    )));
    assert!(calls.iter().any(|c| c.is(
        "PATCH",
        "/apis/cert-manager.io/v1/namespaces/xmpp/certificates/contoso-edge"
    )));
    assert!(calls.iter().any(|c| c.is(
        "PATCH",
        "/apis/externaldns.k8s.io/v1alpha1/namespaces/xmpp/dnsendpoints/contoso-dns"
    )));

    // The generated dialback Secret: looked up, created once, before the pods that mount it.
    let secret_get = calls
        .iter()
        .position(|c| c.is("GET", "/api/v1/namespaces/xmpp/secrets/contoso-dialback"))
        .expect("dialback secret looked up");
    let secret_post = calls
        .iter()
        .position(|c| c.is("POST", "/api/v1/namespaces/xmpp/secrets"))
        .expect("dialback secret created");
    let first_apply = calls
        .iter()
        .position(|c| c.is_apply() && !c.path.ends_with("/status"))
        .expect("applies");
    assert!(secret_get < secret_post && secret_post < first_apply);
    let secret = &calls[secret_post].body;
    assert_eq!(secret["metadata"]["name"], "contoso-dialback");
    assert_eq!(
        secret["metadata"]["ownerReferences"][0]["uid"],
        w.fed.metadata.uid.clone().unwrap()
    );
    assert_eq!(
        secret["stringData"]["secret"].as_str().map(str::len),
        Some(43)
    );
    assert_eq!(
        calls[secret_post]
            .query
            .get("fieldManager")
            .map(String::as_str),
        Some("xmppfed-operator")
    );

    // The Secrets the pods mount are read by name, never listed, before anything is applied
    // (their versions go into the pod templates).
    for name in [
        "contoso-edge-tls",
        "contoso-link-proxy",
        "contoso-link-gateway",
    ] {
        let get = calls
            .iter()
            .position(|c| c.is("GET", &format!("/api/v1/namespaces/xmpp/secrets/{name}")))
            .unwrap_or_else(|| panic!("{name} read"));
        assert!(get < first_apply, "{name}");
    }
    assert!(
        !calls
            .iter()
            .any(|c| c.method == "GET" && c.path == "/api/v1/namespaces/xmpp/secrets"),
        "Secrets are never listed"
    );

    // Orphans searched by label, kind by kind, in the federation's namespace.
    let lists: Vec<&Call> = calls
        .iter()
        .filter(|c| c.method == "GET" && c.query.contains_key("labelSelector"))
        .collect();
    assert_eq!(lists.len(), 12, "{lists:#?}");
    for l in &lists {
        assert_eq!(
            l.query["labelSelector"],
            "app.kubernetes.io/managed-by=xmppfed-operator,app.kubernetes.io/instance=contoso"
        );
    }
    assert!(
        !calls.iter().any(|c| c.method == "DELETE"),
        "nothing to delete"
    );
    assert!(
        !calls
            .iter()
            .any(|c| c.path.ends_with("/secrets") && c.query.contains_key("labelSelector")),
        "Secrets are never orphan-deleted"
    );

    // Status: server-side applied with the same manager; the pods are not there yet.
    let status_call = calls
        .iter()
        .find(|c| c.path == FED_STATUS)
        .expect("status written");
    assert!(status_call.is_apply());
    assert_eq!(
        status_call.query.get("force").map(String::as_str),
        Some("true")
    );
    assert_eq!(status_call.body["kind"], "XmppFederation");
    let s = &status_call.body["status"];
    assert_eq!(s["observedGeneration"], 1);
    assert_eq!(s["policyVersion"], compiled.document.version.as_str());
    assert_eq!(s["partners"], compiled.accepted_partners.len());
    assert_eq!(condition(s, "Ready")["status"], "False");
    assert_eq!(condition(s, "Ready")["reason"], "WaitingForPods");
    assert_eq!(condition(s, "Progressing")["status"], "True");
    assert_eq!(
        condition(s, "DNSPublished")["reason"],
        "WaitingForLoadBalancer"
    );
    assert_eq!(condition(s, "CertificateReady")["reason"], "Pending");
    for c in s["conditions"].as_array().expect("conditions") {
        assert_eq!(c["observedGeneration"], 1, "{c}");
        assert!(c["lastTransitionTime"].is_string(), "{c}");
    }

    // Every partner and access policy gets its Accepted verdict.
    for p in &w.partners {
        let name = p.metadata.name.clone().unwrap();
        let path =
            format!("/apis/xmppfed.io/v1alpha1/namespaces/xmpp/xmppallowedpartners/{name}/status");
        let s = status_of(&calls, &path).unwrap_or_else(|| panic!("no status for partner {name}"));
        assert_eq!(condition(s, "Accepted")["status"], "True", "{name}: {s}");
        assert_eq!(s["federations"], json!(["contoso"]));
    }
    for p in &w.policies {
        let name = p.metadata.name.clone().unwrap();
        let path = format!(
            "/apis/xmppfed.io/v1alpha1/namespaces/xmpp/externalaccesspolicies/{name}/status"
        );
        assert!(
            status_of(&calls, &path).is_some(),
            "no status for access policy {name}"
        );
    }
}

/// The dialback Secret exists now, as it would after the first reconcile.
fn secret_exists(c: &Call) -> Option<Answer> {
    c.is("GET", "/api/v1/namespaces/xmpp/secrets/contoso-dialback").then(|| {
        (200, json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": {"name": "contoso-dialback", "namespace": NS}}))
    })
}

#[tokio::test]
async fn a_second_reconcile_of_the_same_inputs_writes_no_status_and_creates_no_secret() {
    let (_, first, _) = run(&world(), Some(ALL), false, |_| None).await;
    let mut w = world();
    absorb_statuses(&mut w.fed, &mut w.partners, &mut w.policies, &first);
    let (result, calls, _) = run(&w, Some(ALL), false, secret_exists).await;
    assert_eq!(result, Ok(()));
    let statuses: Vec<&str> = calls
        .iter()
        .filter(|c| c.path.ends_with("/status"))
        .map(|c| c.path.as_str())
        .collect();
    assert!(statuses.is_empty(), "no churn, yet wrote {statuses:?}");
    assert!(
        !calls.iter().any(|c| c.method == "POST"),
        "the Secret is never created twice"
    );
    // The objects are still applied (drift is corrected), identical to the first time.
    let before: Vec<&Value> = applies(&first)
        .iter()
        .filter(|c| !c.path.ends_with("/status"))
        .map(|c| &c.body)
        .collect();
    let after: Vec<&Value> = applies(&calls).iter().map(|c| &c.body).collect();
    assert_eq!(before, after);
}

#[tokio::test]
async fn objects_the_federation_no_longer_wants_are_deleted_by_label() {
    let w = world();
    let (result, calls, ctx) = run(&w, Some(ALL), false, |c| {
        (c.method == "GET" && c.path == "/apis/apps/v1/namespaces/xmpp/deployments").then(|| {
            let item = |name: &str| json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": {"name": name, "namespace": NS}});
            (200, json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList", "metadata": {}, "items": [item("contoso-proxy"), item("contoso-proxy-old")]}))
        })
    })
    .await;
    assert_eq!(result, Ok(()));
    let deletes: Vec<&str> = calls
        .iter()
        .filter(|c| c.method == "DELETE")
        .map(|c| c.path.as_str())
        .collect();
    assert_eq!(
        deletes,
        vec!["/apis/apps/v1/namespaces/xmpp/deployments/contoso-proxy-old"]
    );
    let delete = calls.iter().find(|c| c.method == "DELETE").unwrap();
    assert_eq!(delete.body["propagationPolicy"], "Background");
    assert!(
        ctx.metrics
            .encode()
            .contains("xmppfed_operator_orphans_deleted_total 1")
    );
}

#[tokio::test]
async fn without_cert_manager_and_external_dns_it_says_so_and_keeps_working() {
    let mut w = world();
    w.fed.spec.tls.issuer_ref =
        Some(serde_json::from_value(json!({"name": "letsencrypt"})).unwrap());
    // Real discovery: the API server answers 404 for both groups (the script's default).
    let (result, calls, _) = run(&w, None, false, |_| None).await;
    assert_eq!(result, Ok(()));
    assert!(
        calls
            .iter()
            .any(|c| c.is("GET", "/apis/cert-manager.io/v1"))
    );
    assert!(
        calls
            .iter()
            .any(|c| c.is("GET", "/apis/externaldns.k8s.io/v1alpha1"))
    );
    assert!(
        !calls.iter().any(|c| c.path.contains("cert-manager.io/v1/")
            || c.path.contains("externaldns.k8s.io/v1alpha1/")),
        "no cert-manager or external-dns objects without their CRDs"
    );
    let s = status_of(&calls, FED_STATUS).expect("status");
    let cert = condition(s, "CertificateReady");
    assert_eq!(
        (cert["status"].as_str(), cert["reason"].as_str()),
        (Some("Unknown"), Some("CertManagerNotInstalled"))
    );
    assert_eq!(
        condition(s, "DNSPublished")["reason"],
        "ExternalDNSNotInstalled"
    );
    // The internal link still gets certificates: generated once into one Secret.
    assert!(
        calls
            .iter()
            .any(|c| c.is("GET", "/api/v1/namespaces/xmpp/secrets/contoso-link"))
    );
    let link = calls
        .iter()
        .find(|c| c.method == "POST" && c.body["metadata"]["name"] == "contoso-link")
        .expect("link PKI created");
    for key in [
        "ca.crt",
        "proxy.crt",
        "proxy.key",
        "gateway.crt",
        "gateway.key",
    ] {
        assert!(link.body["stringData"][key].is_string(), "{key}");
    }
    let proxy = calls
        .iter()
        .find(|c| {
            c.is(
                "PATCH",
                "/apis/apps/v1/namespaces/xmpp/deployments/contoso-proxy",
            )
        })
        .expect("proxy applied");
    let volumes = proxy.body["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect("volumes");
    let link_volume = volumes
        .iter()
        .find(|v| v["name"] == "link-tls")
        .expect("link volume");
    assert_eq!(link_volume["secret"]["secretName"], "contoso-link");
    let items: Vec<&str> = link_volume["secret"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["key"].as_str())
        .collect();
    assert_eq!(
        items,
        ["proxy.crt", "proxy.key", "ca.crt"],
        "the proxy sees only its own key"
    );
}

#[tokio::test]
async fn an_invalid_federation_applies_nothing_and_reports_the_field() {
    let mut w = world();
    // Skipped admission (e.g. applied before the CRD's rules): not a domain.
    w.fed.spec.domains[0] = xmppfed_api::v1alpha1::DomainName::new("not a domain");
    let (result, calls, _) = run(&w, Some(ALL), false, |_| None).await;
    assert_eq!(
        result,
        Ok(()),
        "retrying cannot fix the spec; the status says it"
    );
    let object_writes: Vec<&str> = calls
        .iter()
        .filter(|c| c.method != "GET" && !c.path.ends_with("/status"))
        .map(|c| c.path.as_str())
        .collect();
    assert!(
        object_writes.is_empty(),
        "the last good policy must stay: {object_writes:?}"
    );
    let s = status_of(&calls, FED_STATUS).expect("status");
    let degraded = condition(s, "Degraded");
    assert_eq!(
        (degraded["status"].as_str(), degraded["reason"].as_str()),
        (Some("True"), Some("InvalidSpec"))
    );
    assert!(
        degraded["message"]
            .as_str()
            .unwrap()
            .contains("spec.domains[0]"),
        "{degraded}"
    );
}

#[tokio::test]
async fn a_refused_apply_fails_the_reconcile_and_is_reported_in_status() {
    let w = world();
    let (result, calls, ctx) = run(&w, Some(ALL), false, |c| {
        (c.method == "PATCH" && c.path.contains("/statefulsets/")).then(|| {
            (
                403,
                status(
                    403,
                    "Forbidden",
                    "statefulsets.apps is forbidden: User cannot patch",
                ),
            )
        })
    })
    .await;
    let error = result.expect_err("a refused apply fails the reconcile");
    assert!(
        error.starts_with("Forbidden apply StatefulSet contoso-gateway"),
        "{error}"
    );
    let s = status_of(&calls, FED_STATUS).expect("status written before failing");
    assert_eq!(condition(s, "Degraded")["reason"], "ApplyFailed");
    assert!(
        condition(s, "Ready")["message"]
            .as_str()
            .unwrap()
            .contains("forbidden")
    );
    assert!(
        !calls.iter().any(|c| c.method == "DELETE"),
        "no orphan deletion after a failed apply"
    );
    assert!(
        ctx.metrics
            .encode()
            .contains("reconcile_failures_total{reason=\"Forbidden\"} 1")
    );
}

#[tokio::test]
async fn a_dialback_secret_made_meanwhile_by_another_replica_is_kept() {
    let w = world();
    let (result, calls, _) = run(&w, Some(ALL), false, |c| {
        (c.is("POST", "/api/v1/namespaces/xmpp/secrets")).then(|| {
            (
                409,
                status(
                    409,
                    "AlreadyExists",
                    "secrets \"contoso-dialback\" already exists",
                ),
            )
        })
    })
    .await;
    assert_eq!(result, Ok(()));
    assert_eq!(
        calls.iter().filter(|c| c.method == "POST").count(),
        1,
        "not retried, not replaced"
    );
}

#[tokio::test]
async fn a_status_write_conflict_fails_the_reconcile_for_a_retry() {
    let w = world();
    let (result, _, ctx) = run(&w, Some(ALL), false, |c| {
        (c.path == FED_STATUS)
            .then(|| (409, status(409, "Conflict", "the object has been modified")))
    })
    .await;
    let error = result.expect_err("conflict");
    assert!(
        error.starts_with("Conflict apply status of XmppFederation contoso"),
        "{error}"
    );
    assert!(
        ctx.metrics
            .encode()
            .contains("reconcile_failures_total{reason=\"Conflict\"} 1")
    );
}

#[tokio::test]
async fn running_pods_confirm_the_policy_version_through_the_pod_proxy() {
    let w = world();
    let version = compile(&w.fed, &w.partners, &w.policies)
        .unwrap()
        .document
        .version;
    let v = version.clone();
    let (result, calls, _) = run(&w, Some(ALL), true, move |c| {
        let pod = |name: &str, component: &str| json!({"metadata": {"name": name, "namespace": NS, "labels": {"app.kubernetes.io/component": component}}, "status": {"phase": "Running"}});
        if c.is("GET", "/api/v1/namespaces/xmpp/pods") {
            return Some((200, json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [pod("contoso-proxy-a", "proxy"), pod("contoso-gateway-0", "gateway")]})));
        }
        if c.path.ends_with(":8080/proxy/policy-version") {
            let answer = if c.path.contains("contoso-proxy-a") { format!("{v}\n") } else { "0000old\n".into() };
            return Some((200, Value::String(answer)));
        }
        None
    })
    .await;
    assert_eq!(result, Ok(()));
    let list = calls
        .iter()
        .find(|c| c.is("GET", "/api/v1/namespaces/xmpp/pods"))
        .expect("pods listed");
    assert_eq!(
        list.query["labelSelector"],
        "app.kubernetes.io/instance=contoso,app.kubernetes.io/name=xmppfed,app.kubernetes.io/component in (proxy,gateway)"
            .replace(' ', "+")
            .replace("(", "%28")
            .replace(")", "%29")
    );
    assert!(calls.iter().any(|c| c.is(
        "GET",
        "/api/v1/namespaces/xmpp/pods/contoso-gateway-0:8080/proxy/policy-version"
    )));
    let s = status_of(&calls, FED_STATUS).expect("status");
    let applied = condition(s, "PolicyApplied");
    assert_eq!(
        (applied["status"].as_str(), applied["reason"].as_str()),
        (Some("False"), Some("RolloutPending"))
    );
    assert!(
        applied["message"]
            .as_str()
            .unwrap()
            .contains("contoso-gateway-0 runs 0000old"),
        "{applied}"
    );
    assert!(
        s.get("appliedPolicyVersion").is_none(),
        "pods disagree: nothing confirmed yet"
    );
}

/// (group, resource, verb) of a request, or None for discovery (allowed to every user).
fn authorization(call: &Call) -> Option<(String, String, &'static str)> {
    let segments: Vec<&str> = call.path.trim_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let (resource, named, sub) = match rest {
        ["namespaces", _, resource] => (*resource, false, None),
        ["namespaces", _, resource, _name] => (*resource, true, None),
        ["namespaces", _, resource, _name, sub, ..] => (*resource, true, Some(*sub)),
        _ => return None,
    };
    let resource = match sub {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource.to_string(),
    };
    let verb = match (call.method.as_str(), named) {
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PATCH", _) => "patch",
        ("PUT", _) => "update",
        ("DELETE", _) => "delete",
        _ => return None,
    };
    Some((group.to_string(), resource, verb))
}

#[tokio::test]
async fn every_request_of_a_reconcile_is_granted_by_the_operators_cluster_role() {
    use xmppfed_operator::rbac::{CLUSTER_NEEDS, grants};
    let mut w = world();
    w.fed.spec.tls.issuer_ref =
        Some(serde_json::from_value(json!({"name": "letsencrypt"})).unwrap());
    let (result, calls, _) = run(&w, Some(ALL), true, |c| {
        c.is("GET", "/api/v1/namespaces/xmpp/pods").then(|| {
            (200, json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [{"metadata": {"name": "contoso-proxy-a"}, "status": {"phase": "Running"}}]}))
        })
    })
    .await;
    assert_eq!(result, Ok(()));
    let mut checked = 0;
    for call in &calls {
        let Some((group, resource, verb)) = authorization(call) else {
            continue;
        };
        assert!(
            grants(CLUSTER_NEEDS, &group, &resource, verb),
            "{verb} {group}/{resource} ({} {}) is not in the operator's ClusterRole",
            call.method,
            call.path
        );
        // An apply may create the object: that needs `create` too.
        if call.is_apply() && !resource.ends_with("/status") {
            assert!(
                grants(CLUSTER_NEEDS, &group, &resource, "create"),
                "create {group}/{resource}"
            );
        }
        checked += 1;
    }
    assert!(checked > 30, "only {checked} requests checked");
}
