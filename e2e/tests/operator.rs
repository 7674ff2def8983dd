//! The operator against the real cluster named by `KUBECONFIG` (kind, k3d or any other). Without
//! `KUBECONFIG` the test says it is skipped and passes.
//!
//! What it does, in a fresh namespace `xmppfed-e2e-<n>`:
//! 1. server-side applies the CRDs from `crds/` and waits for them to be Established;
//! 2. creates a ServiceAccount bound to the operator's ClusterRole (`xmppfed_operator::rbac`),
//!    and runs the controller in this process **as that ServiceAccount** (a TokenRequest token),
//!    so a missing RBAC rule fails the test;
//! 3. applies `examples/` (namespace rewritten) and waits for every object the operator builds,
//!    the federation's conditions with `observedGeneration`, and the partners' `Accepted`;
//! 4. changes a partner, then deletes one, and checks that the policy ConfigMap follows within
//!    2 s each time;
//! 5. deletes what it created (namespace, ClusterRole, ClusterRoleBinding); the CRDs stay.
//!
//! The proxy and gateway pods need the image (`XMPPFED_IMAGE`, default the release image); the
//! test does not wait for them to become ready, only for the objects and conditions.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Client, Config};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use xmppfed_api::v1alpha1::{XmppAllowedPartner, XmppFederation};
use xmppfed_operator::apply::api_resource;
use xmppfed_operator::build::Settings;
use xmppfed_operator::controller::{self, Setup};
use xmppfed_operator::metrics::Metrics;
use xmppfed_operator::rbac;
use xmppfed_policy::codec::VERSION_ANNOTATION;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const MANAGER: &str = "xmppfed-e2e";

fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .filter(|d| d.is_object())
        .collect()
}

async fn apply_value(client: &Client, namespace: Option<&str>, value: &Value) {
    let api_version = value["apiVersion"].as_str().expect("apiVersion");
    let kind = value["kind"].as_str().expect("kind");
    let name = value["metadata"]["name"].as_str().expect("name");
    let resource = api_resource(api_version, kind);
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    api.patch(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(value),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {kind} {name}: {e}"));
}

/// Polls `check` every 100 ms until it returns Some, or fails after `limit` saying `what`.
async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return (v, start.elapsed());
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A client that authenticates as `namespace/sa` with a short-lived token.
async fn client_as(admin: &Client, namespace: &str, sa: &str) -> Client {
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                      "spec": {"expirationSeconds": 3600}});
    let request = http::Request::post(format!(
        "/api/v1/namespaces/{namespace}/serviceaccounts/{sa}/token"
    ))
    .header("content-type", "application/json")
    .body(serde_json::to_vec(&body).expect("json"))
    .expect("request");
    let answer: Value = admin.request(request).await.expect("TokenRequest");
    let token = answer["status"]["token"]
        .as_str()
        .expect("token")
        .to_string();
    let mut config = Config::infer().await.expect("kubeconfig");
    config.auth_info = Default::default();
    config.auth_info.token = Some(token.into());
    Client::try_from(config).expect("client")
}

fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_reconciles_the_examples_on_a_real_cluster() {
    if std::env::var_os("KUBECONFIG").is_none() {
        eprintln!(
            "skipped: KUBECONFIG is not set (see e2e/README.md to run this against kind or k3d)"
        );
        return;
    }
    let admin = Client::try_default().await.expect("client from KUBECONFIG");
    let repo = Path::new(ROOT).join("..");

    // 1. CRDs.
    for entry in std::fs::read_dir(repo.join("crds")).expect("crds/") {
        let path = entry.expect("entry").path();
        for doc in yaml_documents(&path) {
            apply_value(&admin, None, &doc).await;
        }
    }
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for name in [
        "xmppfederations.xmppfed.io",
        "xmppallowedpartners.xmppfed.io",
        "externalaccesspolicies.xmppfed.io",
    ] {
        wait_for(
            &format!("CRD {name} Established"),
            Duration::from_secs(30),
            || {
                let crds = crds.clone();
                async move {
                    let crd = crds.get(name).await.ok()?;
                    let established = crd
                        .status?
                        .conditions?
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True");
                    established.then_some(())
                }
            },
        )
        .await;
    }

    // 2. Namespace, the operator's identity and RBAC.
    let suffix = std::process::id();
    let ns = format!("xmppfed-e2e-{suffix}");
    let role_name = format!("xmppfed-e2e-operator-{suffix}");
    Api::<Namespace>::all(admin.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns"),
        )
        .await
        .expect("namespace");
    let cleanup = Cleanup {
        admin: admin.clone(),
        namespace: ns.clone(),
        cluster_role: role_name.clone(),
    };
    Api::<ServiceAccount>::namespaced(admin.clone(), &ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "operator"}})).expect("sa"),
        )
        .await
        .expect("service account");
    Api::<ClusterRole>::all(admin.clone())
        .create(&PostParams::default(), &rbac::cluster_role(&role_name))
        .await
        .expect("cluster role");
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": role_name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
                "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": ns}],
            }))
            .expect("binding"),
        )
        .await
        .expect("cluster role binding");
    let operator_client = client_as(&admin, &ns, "operator").await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let setup = Setup {
        settings: Settings {
            image: std::env::var("XMPPFED_IMAGE").unwrap_or_else(|_| Settings::default().image),
            ..Settings::default()
        },
        metrics: Arc::new(Metrics::default()),
        recorder: None,
        confirm_policy: true,
        discovery: xmppfed_operator::reconcile::Discovery::new(Duration::from_secs(60)),
        watch_certificates: false,
    };
    let operator = tokio::spawn(controller::run(operator_client, setup, async move {
        let _ = stopped.await;
    }));

    // 3. The examples, in the test namespace.
    for file in ["federation.yaml", "partners.yaml", "access-policies.yaml"] {
        for mut doc in yaml_documents(&repo.join("examples").join(file)) {
            doc["metadata"]["namespace"] = json!(ns);
            apply_value(&admin, Some(&ns), &doc).await;
        }
    }
    let feds: Api<XmppFederation> = Api::namespaced(admin.clone(), &ns);
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), &ns);
    let version_of = |cms: Api<ConfigMap>| async move {
        cms.get_opt("contoso-policy")
            .await
            .ok()
            .flatten()
            .and_then(|cm| cm.metadata.annotations)
            .and_then(|a| a.get(VERSION_ANNOTATION).cloned())
    };
    let (first_version, took) = wait_for("the policy ConfigMap", Duration::from_secs(60), || {
        version_of(cms.clone())
    })
    .await;
    eprintln!("policy ConfigMap {first_version} after {took:?}");
    for (api_version, kind, name) in [
        ("apps/v1", "Deployment", "contoso-proxy"),
        ("apps/v1", "StatefulSet", "contoso-gateway"),
        ("v1", "Service", "contoso-edge"),
        ("v1", "Service", "contoso-proxy"),
        ("v1", "Service", "contoso-gateway"),
        ("v1", "ServiceAccount", "contoso-proxy"),
        ("rbac.authorization.k8s.io/v1", "Role", "contoso-gateway"),
        (
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            "contoso-gateway",
        ),
        ("policy/v1", "PodDisruptionBudget", "contoso-proxy"),
        ("networking.k8s.io/v1", "NetworkPolicy", "contoso-proxy"),
        ("networking.k8s.io/v1", "NetworkPolicy", "contoso-gateway"),
        ("v1", "Secret", "contoso-dialback"),
    ] {
        let api: Api<DynamicObject> =
            Api::namespaced_with(admin.clone(), &ns, &api_resource(api_version, kind));
        let object = api
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("{kind} {name}: {e}"));
        if kind != "Secret" {
            assert_eq!(
                object
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("app.kubernetes.io/managed-by"))
                    .map(String::as_str),
                Some("xmppfed-operator"),
                "{kind} {name}"
            );
        }
        assert_eq!(
            object
                .metadata
                .owner_references
                .as_ref()
                .and_then(|o| o.first())
                .map(|o| o.kind.as_str()),
            Some("XmppFederation"),
            "{kind} {name} is owned by the federation"
        );
    }
    let (status, _) = wait_for(
        "the federation's conditions",
        Duration::from_secs(30),
        || {
            let feds = feds.clone();
            async move {
                let fed = feds.get("contoso").await.ok()?;
                let status = serde_json::to_value(fed.status?).ok()?;
                [
                    "Ready",
                    "Progressing",
                    "Degraded",
                    "CertificateReady",
                    "DNSPublished",
                    "PolicyApplied",
                ]
                .iter()
                .all(|t| {
                    condition(&status, t)
                        .is_some_and(|c| c["observedGeneration"] == json!(fed.metadata.generation))
                })
                .then_some(status)
            }
        },
    )
    .await;
    assert_eq!(status["policyVersion"], json!(first_version));
    eprintln!("federation status: {status:#}");
    let partners: Api<XmppAllowedPartner> = Api::namespaced(admin.clone(), &ns);
    wait_for("partner fabrikam Accepted", Duration::from_secs(30), || {
        let partners = partners.clone();
        async move {
            let p = partners.get("fabrikam").await.ok()?;
            let status = serde_json::to_value(p.status?).ok()?;
            (condition(&status, "Accepted")?["status"] == "True").then_some(())
        }
    })
    .await;

    // 4. A partner changes, then one is deleted: the ConfigMap follows within 2 s.
    partners
        .patch(
            "fabrikam",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"partnerType": "PublicVerified"}})),
        )
        .await
        .expect("change a partner");
    let (second_version, took) = wait_for(
        "a new policy after a partner change",
        Duration::from_secs(2),
        || {
            let (cms, first) = (cms.clone(), first_version.clone());
            async move { version_of(cms).await.filter(|v| *v != first) }
        },
    )
    .await;
    eprintln!("partner change → policy {second_version} in {took:?}");
    partners
        .delete("litware", &DeleteParams::default())
        .await
        .expect("delete a partner");
    let (_, took) = wait_for(
        "a new policy after a partner deletion",
        Duration::from_secs(2),
        || {
            let (cms, second) = (cms.clone(), second_version.clone());
            async move { version_of(cms).await.filter(|v| *v != second) }
        },
    )
    .await;
    eprintln!("partner deletion → new policy in {took:?}");
    let cm = cms.get("contoso-policy").await.expect("configmap");
    let policy = xmppfed_api::configmap::from_config_map(&cm).expect("the ConfigMap decodes");
    assert!(
        policy.partner_for("litware.example").is_none(),
        "the deleted partner is gone from the policy"
    );
    assert!(policy.partner_for("fabrikam.com").is_some());

    // 5. Stop and clean up (also on failure: Cleanup's Drop).
    let _ = stop.send(());
    let _ = operator.await;
    drop(cleanup);
}

/// Deletes what the test created, whether it passed or not.
struct Cleanup {
    admin: Client,
    namespace: String,
    cluster_role: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (admin, ns, role) = (
            self.admin.clone(),
            self.namespace.clone(),
            self.cluster_role.clone(),
        );
        // Drop cannot await: finish the deletions on a runtime of their own.
        let done = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let dp = DeleteParams::default();
                let _ = Api::<Namespace>::all(admin.clone()).delete(&ns, &dp).await;
                let _ = Api::<ClusterRoleBinding>::all(admin.clone())
                    .delete(&role, &dp)
                    .await;
                let _ = Api::<ClusterRole>::all(admin).delete(&role, &dp).await;
            });
        });
        let _ = done.join();
    }
}
