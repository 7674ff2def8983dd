//! The controller: what it watches and how changes map to federations to reconcile.
//!
//! - `XmppFederation`: the reconciled kind.
//! - `XmppAllowedPartner`, `ExternalAccessPolicy`: kept in reflector stores (the reconcile
//!   compiles from them without listing) and mapped to every federation of their namespace — a
//!   label change can move an object out of a selector, so "the federations that select it now"
//!   would miss the one that must drop it.
//! - Owned ConfigMaps, Services, Deployments, StatefulSets (and cert-manager Certificates when
//!   installed), watched by the `managed-by` label only.
//!
//! Secrets are not watched: that needs `list` on every Secret in the cluster. A missing
//! `tls.secretName` Secret is re-checked by the short requeue of a federation that is not ready.
//!
//! Reconcile requests are debounced by 500 ms, so a burst of partner changes (a GitOps sync)
//! gives one new policy document, within the 1 s the specification allows.

use crate::labels::{MANAGED_BY, MANAGER};
use crate::reconcile::{Context, error_policy, reconcile};
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Api, DynamicObject};
use kube::runtime::controller::{Config, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, warn};
use xmppfed_api::v1alpha1::{ExternalAccessPolicy, XmppAllowedPartner, XmppFederation};

/// How long reconcile requests wait for more of the same.
pub const DEBOUNCE: Duration = Duration::from_millis(500);

/// The plurals the operator needs from its own API group.
const OWN_RESOURCES: [&str; 3] = [
    "xmppfederations",
    "xmppallowedpartners",
    "externalaccesspolicies",
];

/// A clear error when the CRDs are not installed, instead of watchers failing forever.
pub async fn check_crds(client: &Client) -> Result<(), String> {
    let list = client
        .list_api_group_resources("xmppfed.io/v1alpha1")
        .await
        .map_err(|e| {
            format!(
                "the xmppfed.io/v1alpha1 CRDs are not installed ({e}); install them with `kubectl apply -f crds/` or the Helm chart's crds.enabled=true"
            )
        })?;
    let missing: Vec<&str> = OWN_RESOURCES
        .iter()
        .copied()
        .filter(|p| !list.resources.iter().any(|r| r.name == *p))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "CRDs missing from xmppfed.io/v1alpha1: {}; apply crds/",
            missing.join(", ")
        ))
    }
}

/// A reflector store of every `K` in the cluster, and the stream of changes that feeds it (the
/// controller's trigger for `K`).
fn reflected<K>(
    client: &Client,
) -> (
    Store<K>,
    impl futures_util::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(Api::<K>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects();
    (store, stream)
}

/// Every federation in the namespace of `object`.
fn federations_of_namespace<K: Resource>(
    federations: Store<XmppFederation>,
) -> impl Fn(K) -> Vec<ObjectRef<XmppFederation>> + Send + Sync + 'static {
    move |object: K| {
        let namespace = object.meta().namespace.clone();
        federations
            .state()
            .iter()
            .filter(|f| f.namespace() == namespace)
            .map(|f| ObjectRef::from_obj(&**f))
            .collect()
    }
}

/// What the controller needs to start, besides the client.
pub struct Setup {
    pub settings: crate::build::Settings,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub recorder: Option<kube::runtime::events::Recorder>,
    pub confirm_policy: bool,
    /// Optional-CRD discovery (the start-up answer stays cached for the first reconciles).
    pub discovery: crate::reconcile::Discovery,
    /// Watch cert-manager Certificates (only when its CRDs are installed at start-up).
    pub watch_certificates: bool,
}

/// Runs the controller until `shutdown` completes.
pub async fn run(
    client: Client,
    setup: Setup,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let owned = watcher::Config::default().labels(&format!("{MANAGED_BY}={MANAGER}"));
    let (partners, partner_stream) = reflected::<XmppAllowedPartner>(&client);
    let (policies, policy_stream) = reflected::<ExternalAccessPolicy>(&client);
    let controller = Controller::new(
        Api::<XmppFederation>::all(client.clone()),
        watcher::Config::default(),
    )
    .with_config(Config::default().debounce(DEBOUNCE));
    let federations = controller.store();
    let ctx = Arc::new(Context {
        client: client.clone(),
        settings: setup.settings,
        stores: crate::reconcile::Stores {
            federations: federations.clone(),
            partners,
            policies,
        },
        discovery: setup.discovery,
        metrics: setup.metrics,
        recorder: setup.recorder,
        confirm_policy: setup.confirm_policy,
    });
    let mut controller = controller
        .owns(Api::<ConfigMap>::all(client.clone()), owned.clone())
        .owns(Api::<Service>::all(client.clone()), owned.clone())
        .owns(Api::<Deployment>::all(client.clone()), owned.clone())
        .owns(Api::<StatefulSet>::all(client.clone()), owned.clone())
        .watches_stream(
            partner_stream,
            federations_of_namespace::<XmppAllowedPartner>(federations.clone()),
        )
        .watches_stream(
            policy_stream,
            federations_of_namespace::<ExternalAccessPolicy>(federations.clone()),
        );
    if setup.watch_certificates {
        let certificates = crate::apply::api_resource("cert-manager.io/v1", "Certificate");
        controller = controller.owns_with(
            Api::<DynamicObject>::all_with(client.clone(), &certificates),
            certificates,
            owned,
        );
    }
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => debug!(federation = %object.name, "reconciled"),
                Err(e) => warn!("controller: {e}"),
            }
        })
        .await;
}
