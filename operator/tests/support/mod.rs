//! Shared by the operator's tests and its scale benchmark: the `examples/` manifests, and a
//! scripted Kubernetes API in the kube-rs style (a `tower-test` mock service behind a real
//! `kube::Client`) that records every request and answers from a script.
// Each test binary uses part of this module.
#![allow(dead_code)]

use http::{Request, Response};
use kube::client::Body;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Client, Resource};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use xmppfed_api::v1alpha1::{ExternalAccessPolicy, XmppAllowedPartner, XmppFederation};
use xmppfed_operator::build::Settings;

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The federation, partners and access policies of `examples/`, as the API server would hold
/// them (a uid on the federation: owner references need it).
pub fn examples() -> (
    XmppFederation,
    Vec<XmppAllowedPartner>,
    Vec<ExternalAccessPolicy>,
) {
    let mut fed = None;
    let (mut partners, mut policies) = (Vec::new(), Vec::new());
    for file in ["federation.yaml", "partners.yaml", "access-policies.yaml"] {
        let text = std::fs::read_to_string(Path::new(ROOT).join("../examples").join(file))
            .expect("example");
        for doc in serde_saphyr::from_multiple::<Value>(&text).expect("YAML") {
            match doc["kind"].as_str() {
                Some("XmppFederation") => fed = Some(serde_json::from_value(doc).expect("fed")),
                Some("XmppAllowedPartner") => {
                    partners.push(serde_json::from_value(doc).expect("partner"))
                }
                Some("ExternalAccessPolicy") => {
                    policies.push(serde_json::from_value(doc).expect("policy"))
                }
                _ => {}
            }
        }
    }
    let mut fed: XmppFederation = fed.expect("a federation in examples/");
    fed.metadata.uid = Some("6f1c3c1e-0000-4000-8000-000000000001".into());
    fed.metadata.generation = Some(1);
    (fed, partners, policies)
}

pub fn settings() -> Settings {
    Settings {
        image: "ghcr.io/xmppfed/xmppfed:golden".into(),
        ..Settings::default()
    }
}

/// A reflector store holding `objects`, as the controller's watches would fill it.
pub fn store_of<K>(objects: &[K]) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let (store, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(o.clone()));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    store
}

/// One request the operator made.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// Path without the query.
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: String,
    pub body: Value,
}

impl Call {
    pub fn is(&self, method: &str, path: &str) -> bool {
        self.method == method && self.path == path
    }
    /// The last path segment that is not `status`: the object's name for object paths.
    pub fn name(&self) -> &str {
        self.path
            .rsplit('/')
            .find(|s| *s != "status")
            .unwrap_or_default()
    }
    pub fn is_apply(&self) -> bool {
        self.method == "PATCH" && self.content_type == "application/apply-patch+yaml"
    }
}

/// An answer: HTTP status and JSON body (a JSON string is sent as plain text).
pub type Answer = (u16, Value);

/// What the API server answers when the script has nothing special to say:
/// apply and create echo the object, named GETs are 404, lists are empty, deletes succeed,
/// API discovery knows every group.
pub fn default_answer(call: &Call) -> Answer {
    match call.method.as_str() {
        "PATCH" | "POST" | "PUT" => {
            let mut body = call.body.clone();
            if body.get("metadata").is_none() {
                body["metadata"] = json!({});
            }
            body["metadata"]["resourceVersion"] = json!("1");
            (if call.method == "POST" { 201 } else { 200 }, body)
        }
        "DELETE" => (
            200,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        ),
        _ if call.path.starts_with("/apis/") && call.path.matches('/').count() == 3 => {
            (404, not_found(&call.path))
        }
        _ if is_list(&call.path) => (
            200,
            json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": []}),
        ),
        _ => (404, not_found(&call.path)),
    }
}

/// A collection path (`…/namespaces/NS/KIND`), not an object path.
pub fn is_list(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.iter().position(|s| *s == "namespaces") {
        Some(i) => segments.len() == i + 3,
        None => false,
    }
}

pub fn not_found(what: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": format!("{what} not found")})
}

pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code, "message": message})
}

/// A kube `Client` whose requests go to `script` (then [`default_answer`]); every request is
/// recorded in the returned log.
pub fn scripted_client(
    script: impl Fn(&Call) -> Option<Answer> + Send + Sync + 'static,
) -> (Client, Arc<Mutex<Vec<Call>>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let log = Arc::new(Mutex::new(Vec::new()));
    let recorded = log.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = http_body_util::BodyExt::collect(body)
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let call = Call {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
                query: parts
                    .uri
                    .query()
                    .unwrap_or_default()
                    .split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            v.replace("%3D", "=")
                                .replace("%2C", ",")
                                .replace("%2F", "/"),
                        )
                    })
                    .collect(),
                content_type: parts
                    .headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            let (code, answer) = script(&call).unwrap_or_else(|| default_answer(&call));
            recorded.lock().expect("log").push(call);
            // A JSON string is sent as plain text (the pods' /policy-version).
            let (content_type, bytes) = match answer {
                Value::String(text) => ("text/plain", text.into_bytes()),
                other => (
                    "application/json",
                    serde_json::to_vec(&other).unwrap_or_default(),
                ),
            };
            let response = Response::builder()
                .status(code)
                .header("content-type", content_type)
                .body(Body::from(bytes))
                .expect("response");
            send.send_response(response);
        }
    });
    (Client::new(service, "default"), log)
}

/// Feeds the statuses a reconcile applied (namespace `xmpp`) back into the objects, as the
/// watches would.
pub fn absorb_statuses(
    fed: &mut XmppFederation,
    partners: &mut [XmppAllowedPartner],
    policies: &mut [ExternalAccessPolicy],
    calls: &[Call],
) {
    let mut statuses: BTreeMap<&str, &serde_json::Value> = BTreeMap::new();
    for c in calls
        .iter()
        .filter(|c| c.is_apply() && c.path.ends_with("/status"))
    {
        statuses.insert(c.path.as_str(), &c.body["status"]);
    }
    let path = |kind: &str, name: &str| {
        format!("/apis/xmppfed.io/v1alpha1/namespaces/xmpp/{kind}/{name}/status")
    };
    if let Some(s) = statuses.get(path("xmppfederations", "contoso").as_str()) {
        fed.status = serde_json::from_value((*s).clone()).ok();
    }
    for p in partners.iter_mut() {
        if let Some(s) = statuses.get(
            path(
                "xmppallowedpartners",
                p.metadata.name.as_deref().unwrap_or_default(),
            )
            .as_str(),
        ) {
            p.status = serde_json::from_value((*s).clone()).ok();
        }
    }
    for p in policies.iter_mut() {
        if let Some(s) = statuses.get(
            path(
                "externalaccesspolicies",
                p.metadata.name.as_deref().unwrap_or_default(),
            )
            .as_str(),
        ) {
            p.status = serde_json::from_value((*s).clone()).ok();
        }
    }
}
