//! The operator's policy ConfigMap, read through the Kubernetes API.
//!
//! One watch on one object: `fieldSelector=metadata.name=<name>`, so the pod's Role needs
//! only `get`, `list` and `watch` on that ConfigMap (`resourceNames` works for list and
//! watch when the request selects by name). kube-runtime's watcher re-lists after a desync
//! and retries with backoff, so an API server restart costs no update.

use crate::PolicyHolder;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use std::sync::Arc;
use xmppfed_policy::CompiledPolicy;

/// Which ConfigMap holds the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigMapRef {
    pub namespace: String,
    pub name: String,
}

impl ConfigMapRef {
    /// Parses `<namespace>/<name>`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(Self {
                    namespace: ns.to_string(),
                    name: name.to_string(),
                })
            }
            _ => Err(format!(
                "{s:?} is not <namespace>/<name> of the policy ConfigMap"
            )),
        }
    }

    /// How `/readyz` and the logs name this source.
    pub fn describe(&self) -> String {
        format!("configmap/{}/{}", self.namespace, self.name)
    }
}

/// A watch on the policy ConfigMap: first [`PolicyWatch::first_good`], then
/// [`PolicyWatch::run`] feeding a holder.
pub struct PolicyWatch {
    source: String,
    events: futures_util::stream::BoxStream<'static, Result<Event<ConfigMap>, watcher::Error>>,
}

/// What one watch event means for the policy.
enum Seen {
    Document(Box<Result<CompiledPolicy, String>>),
    Deleted,
    Nothing,
}

impl PolicyWatch {
    pub fn new(client: Client, cm: &ConfigMapRef) -> Self {
        let api: Api<ConfigMap> = Api::namespaced(client, &cm.namespace);
        let config = watcher::Config::default().fields(&format!("metadata.name={}", cm.name));
        Self {
            source: cm.describe(),
            events: watcher::watcher(api, config).default_backoff().boxed(),
        }
    }

    fn interpret(&self, event: Result<Event<ConfigMap>, watcher::Error>) -> Seen {
        match event {
            Ok(Event::Apply(cm) | Event::InitApply(cm)) => Seen::Document(Box::new(
                xmppfed_api::configmap::from_config_map(&cm)
                    .map_err(|e| format!("{}: {e}", self.source)),
            )),
            Ok(Event::Delete(_)) => Seen::Deleted,
            Ok(Event::Init | Event::InitDone) => Seen::Nothing,
            Err(e) => {
                // The watcher backs off and retries by itself; say so once per failure.
                tracing::warn!(source = %self.source, error = %e, "policy watch failed; retrying");
                Seen::Nothing
            }
        }
    }

    /// Waits for the first document that loads (refused ones are logged), so a pod never
    /// serves without a policy. `None` if the watch ended.
    pub async fn first_good(&mut self) -> Option<CompiledPolicy> {
        while let Some(event) = self.events.next().await {
            match self.interpret(event) {
                Seen::Document(loaded) => match *loaded {
                    Ok(policy) => return Some(policy),
                    Err(why) => {
                        tracing::error!(error = %why, "policy document refused; waiting for a good one");
                    }
                },
                Seen::Deleted => {
                    tracing::warn!(source = %self.source, "policy ConfigMap absent; waiting for it");
                }
                Seen::Nothing => {}
            }
        }
        None
    }

    /// Offers every later version to `holder`; a deleted ConfigMap keeps the last good policy.
    pub async fn run(mut self, holder: Arc<PolicyHolder>) {
        while let Some(event) = self.events.next().await {
            match self.interpret(event) {
                Seen::Document(loaded) => {
                    holder.offer(*loaded);
                }
                Seen::Deleted => holder.keep_last_good(format!("{} was deleted", self.source)),
                Seen::Nothing => {}
            }
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }
}

#[cfg(test)]
mod tests {
    //! The watch against a scripted API server (tower-test), answering the list and watch
    //! requests kube-runtime's watcher makes — the way kube-rs tests its own controllers.
    use super::*;
    use crate::{PolicyMetrics, testdoc};
    use http::{Request, Response};
    use kube::client::Body;
    use std::time::Duration;

    const NAME: &str = "edge-policy";

    fn config_map(partners: &[&str], rv: u32) -> serde_json::Value {
        let mut cm = xmppfed_api::configmap::to_config_map(&testdoc::document(partners), NAME, "t")
            .expect("encodes");
        cm.metadata.resource_version = Some(rv.to_string());
        serde_json::to_value(cm).expect("json")
    }

    fn corrupt(rv: u32) -> serde_json::Value {
        let mut cm = config_map(&["a.example"], rv);
        for (_, v) in cm["data"].as_object_mut().expect("data").iter_mut() {
            *v = serde_json::Value::String("{\"format\": \"something else\"}".into());
        }
        cm
    }

    fn list(items: Vec<serde_json::Value>) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMapList",
            "metadata": {"resourceVersion": "10"}, "items": items
        }))
        .expect("json")
    }

    fn events(events: &[(&str, serde_json::Value)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (kind, object) in events {
            out.extend(
                serde_json::to_vec(&serde_json::json!({"type": kind, "object": object}))
                    .expect("json"),
            );
            out.push(b'\n');
        }
        out
    }

    /// Serves one list, then the given watch responses in order; later watches never answer.
    fn api_server(first_list: Vec<u8>, watches: Vec<Vec<u8>>) -> Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        tokio::spawn(async move {
            let mut watches = watches.into_iter();
            let mut first_list = Some(first_list);
            let mut parked = Vec::new();
            while let Some((request, respond)) = handle.next_request().await {
                let uri = request.uri().to_string();
                assert!(uri.starts_with("/api/v1/namespaces/t/configmaps?"), "{uri}");
                assert!(
                    uri.contains("fieldSelector=metadata.name%3Dedge-policy"),
                    "{uri}"
                );
                let body = if uri.contains("watch=true") {
                    match watches.next() {
                        Some(body) => body,
                        None => {
                            parked.push(respond);
                            continue;
                        }
                    }
                } else {
                    first_list.take().unwrap_or_else(|| list(vec![]))
                };
                respond.send_response(Response::new(Body::from(body)));
            }
        });
        Client::new(service, "t")
    }

    fn cm_ref() -> ConfigMapRef {
        ConfigMapRef::parse("t/edge-policy").expect("parses")
    }

    async fn until(what: impl Fn() -> bool) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while !what() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("in time");
    }

    #[tokio::test]
    async fn updates_swap_corrupt_versions_are_refused_and_deletion_keeps_the_policy() {
        let client = api_server(
            list(vec![config_map(&["a.example"], 1)]),
            vec![
                events(&[
                    ("MODIFIED", corrupt(2)),
                    ("MODIFIED", config_map(&["b.example"], 3)),
                ]),
                events(&[("DELETED", config_map(&["b.example"], 4))]),
            ],
        );
        let mut watch = PolicyWatch::new(client, &cm_ref());
        let first = watch.first_good().await.expect("initial policy");
        assert!(first.partner_for("a.example").is_some());
        let metrics = PolicyMetrics::default();
        let holder = Arc::new(PolicyHolder::new(first, watch.source(), metrics.clone()));
        let mut rx = holder.subscribe();
        tokio::spawn(watch.run(holder.clone()));

        rx.changed().await.expect("swapped");
        let policy = holder.current();
        assert!(policy.partner_for("b.example").is_some());
        assert!(policy.partner_for("a.example").is_none());

        until(|| holder.status().last_error.is_some()).await;
        let status = holder.status();
        assert!(
            status
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("was deleted")),
            "{status:?}"
        );
        assert_eq!(status.source, "configmap/t/edge-policy");
        assert!(holder.current().partner_for("b.example").is_some());
        // Counted: the corrupt version in between, and the deletion.
        assert_eq!(metrics.reload_failures.get(), 2);
    }

    #[tokio::test]
    async fn a_pod_waits_for_a_good_document_before_serving() {
        let client = api_server(
            list(vec![corrupt(1)]),
            vec![events(&[("MODIFIED", config_map(&["c.example"], 2))])],
        );
        let mut watch = PolicyWatch::new(client, &cm_ref());
        let first = watch.first_good().await.expect("a good policy");
        assert!(first.partner_for("c.example").is_some());
    }

    #[test]
    fn references_name_namespace_and_object() {
        assert!(ConfigMapRef::parse("edge-policy").is_err());
        assert!(ConfigMapRef::parse("/x").is_err());
        assert!(ConfigMapRef::parse("a/b/c").is_err());
        assert_eq!(cm_ref().describe(), "configmap/t/edge-policy");
    }
}
