//! One reconcile of an `XmppFederation`, as a pipeline: look up → validate (pure) → build
//! (pure) → server-side apply → delete orphans → status. Also writes the status of the
//! partners and access policies of the namespace, since only the federations' compilation
//! knows whether they were accepted.

use crate::apply::{self, ApiError};
use crate::build::{self, Inputs, Observed, Settings, owned_kinds};
use crate::labels::Component;
use crate::labels::MANAGER;
use crate::metrics::Metrics;
use crate::names::Names;
use crate::status::{
    self, CertificateState, DnsState, FederationObservation, PodPolicy, PolicyOutcome, Replicas,
    Verdict,
};
use futures_util::stream::{self, StreamExt};
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thiserror::Error;
use tracing::{info, warn};
use xmppfed_api::compile::{Compilation, compile};
use xmppfed_api::crosscheck::{ObjectSet, check};
use xmppfed_api::findings::ObjectRef;
use xmppfed_api::v1alpha1::{
    DnsProvider, ExternalAccessPolicy, XmppAllowedPartner, XmppFederation,
};

/// Requeue when all is well (drift and the pods' policy confirmation are re-read).
const SETTLED: Duration = Duration::from_secs(300);
/// Requeue while something is on its way (pods starting, a certificate pending).
const PENDING: Duration = Duration::from_secs(10);
/// How long a pod has to say which policy it runs.
const POD_ANSWER: Duration = Duration::from_secs(2);
/// Status writes in flight at once (thousands of partners on the first reconcile).
const STATUS_WRITES: usize = 16;

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("the policy document cannot be stored: {0}")]
    Encode(String),
    #[error("no randomness for a generated secret or key")]
    Random,
}

impl Error {
    /// CamelCase reason for metrics and events.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Api(e) => e.reason(),
            Error::Encode(_) => "PolicyTooLarge",
            Error::Random => "RandomnessUnavailable",
        }
    }
}

/// What is installed besides the operator's own CRDs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OptionalCrds {
    pub cert_manager: bool,
    pub external_dns: bool,
}

/// Discovery of the optional CRDs, cached so that reconciles do not ask every time.
pub struct Discovery {
    ttl: Duration,
    cached: Mutex<Option<(Instant, OptionalCrds)>>,
}

impl Discovery {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            cached: Mutex::new(None),
        }
    }

    /// A fixed answer (tests, benchmarks).
    pub fn fixed(crds: OptionalCrds) -> Self {
        Self {
            ttl: Duration::MAX,
            cached: Mutex::new(Some((Instant::now(), crds))),
        }
    }

    fn cached(&self) -> Option<(Instant, OptionalCrds)> {
        *self.cached.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub async fn optional_crds(&self, client: &Client) -> Result<OptionalCrds, ApiError> {
        let cached = self.cached();
        if let Some((at, crds)) = cached
            && at.elapsed() < self.ttl
        {
            return Ok(crds);
        }
        let fallback = cached.map(|(_, c)| c);
        let cert_manager = serves(
            client,
            "cert-manager.io/v1",
            &["certificates", "issuers"],
            fallback.map(|c| c.cert_manager),
        )
        .await?;
        let external_dns = serves(
            client,
            "externaldns.k8s.io/v1alpha1",
            &["dnsendpoints"],
            fallback.map(|c| c.external_dns),
        )
        .await?;
        let crds = OptionalCrds {
            cert_manager,
            external_dns,
        };
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), crds));
        Ok(crds)
    }
}

/// Whether the API server serves every one of `plurals` in `group_version`. A 404 means not
/// installed; any other failure keeps the last answer (or fails the reconcile when there is
/// none), so a flaky discovery call never makes certificates look uninstalled.
async fn serves(
    client: &Client,
    group_version: &str,
    plurals: &[&str],
    last: Option<bool>,
) -> Result<bool, ApiError> {
    match client.list_api_group_resources(group_version).await {
        Ok(list) => Ok(plurals
            .iter()
            .all(|p| list.resources.iter().any(|r| r.name == *p))),
        Err(e) if apply::is_status(&e, 404) => Ok(false),
        Err(e) => last.ok_or_else(|| ApiError::new("discover", "APIGroup", group_version, e)),
    }
}

/// The watched objects, kept by the controller's reflectors.
#[derive(Clone)]
pub struct Stores {
    pub federations: Store<XmppFederation>,
    pub partners: Store<XmppAllowedPartner>,
    pub policies: Store<ExternalAccessPolicy>,
}

/// Everything a reconcile needs besides the federation.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub stores: Stores,
    pub discovery: Discovery,
    pub metrics: Arc<Metrics>,
    /// Events; None in tests that do not script them.
    pub recorder: Option<Recorder>,
    /// Ask running pods which policy they loaded (through the API server's pod proxy).
    pub confirm_policy: bool,
}

fn in_namespace<K: Resource<DynamicType = ()> + Clone>(
    store: &Store<K>,
    namespace: &str,
) -> Vec<K> {
    store
        .state()
        .iter()
        .filter(|o| o.meta().namespace.as_deref().unwrap_or("default") == namespace)
        .map(|o| (**o).clone())
        .collect()
}

/// Entry point for the controller: runs the pipeline and records metrics.
pub async fn reconcile(
    federation: Arc<XmppFederation>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let result = pipeline(&federation, &ctx).await;
    ctx.metrics
        .observe(started.elapsed(), result.as_ref().err().map(Error::reason));
    result
}

/// A failed reconcile is retried; the status already says what failed.
pub fn error_policy(federation: Arc<XmppFederation>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(
        federation = %federation.name_any(),
        namespace = federation.namespace().unwrap_or_default(),
        reason = error.reason(),
        "reconcile failed: {error}"
    );
    Action::requeue(Duration::from_secs(15))
}

async fn pipeline(federation: &XmppFederation, ctx: &Context) -> Result<Action, Error> {
    if federation.metadata.deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove the rest.
        return Ok(Action::await_change());
    }
    let client = &ctx.client;
    let name = federation.name_any();
    let namespace = federation.namespace().unwrap_or_else(|| "default".into());
    let names = Names::new(&name, &namespace);
    let now = Time(Timestamp::now());

    // 1. Look up.
    let optional = ctx.discovery.optional_crds(client).await?;
    let partners = in_namespace(&ctx.stores.partners, &namespace);
    let policies = in_namespace(&ctx.stores.policies, &namespace);
    let load_balancer = load_balancer_addresses(client, &namespace, &names.edge_service()).await?;

    // 2. Validate.
    let compiled = match compile(federation, &partners, &policies) {
        Ok(c) => c,
        Err(e) => {
            write_member_statuses(
                ctx, federation, None, &namespace, &partners, &policies, &now,
            )
            .await?;
            // Nothing is applied: the pods keep the last good policy.
            let message = e.to_string();
            let o = unobserved(federation, Err(message.clone()), optional);
            write_federation_status(ctx, federation, &o, &now).await?;
            publish(ctx, federation, EventType::Warning, "InvalidSpec", &message).await;
            return Ok(Action::requeue(SETTLED));
        }
    };

    // 3. Build.
    let mut observed = Observed {
        cert_manager: optional.cert_manager,
        external_dns: optional.external_dns,
        load_balancer: load_balancer.clone(),
        secret_versions: BTreeMap::new(),
    };
    observed.secret_versions = secret_versions(
        client,
        &namespace,
        &Inputs {
            federation,
            policy: &compiled.document,
            settings: &ctx.settings,
            observed: &observed,
        },
    )
    .await?;
    let inputs = Inputs {
        federation,
        policy: &compiled.document,
        settings: &ctx.settings,
        observed: &observed,
    };
    let outcome = policy_outcome(&compiled);
    let desired = match build::build(&inputs) {
        Ok(d) => d,
        Err(e) => {
            let error = Error::Encode(e.to_string());
            let mut o = unobserved(federation, Ok(outcome), optional);
            o.apply_error = Some(error.to_string());
            write_federation_status(ctx, federation, &o, &now).await?;
            publish(
                ctx,
                federation,
                EventType::Warning,
                error.reason(),
                &error.to_string(),
            )
            .await;
            return Err(error);
        }
    };

    // 4. Apply.
    let applied = match apply_desired(ctx, &inputs, &desired, &namespace).await {
        Ok(a) => a,
        Err(error) => {
            let mut o = unobserved(federation, Ok(outcome), optional);
            o.apply_error = Some(error.to_string());
            write_federation_status(ctx, federation, &o, &now).await?;
            publish(
                ctx,
                federation,
                EventType::Warning,
                "ApplyFailed",
                &error.to_string(),
            )
            .await;
            return Err(error);
        }
    };

    // 5. Orphans.
    let deleted =
        apply::delete_orphans(client, &namespace, &name, &owned_kinds(&observed), &desired).await?;
    if !deleted.is_empty() {
        ctx.metrics.orphans_deleted.inc_by(deleted.len() as u64);
        info!(federation = %name, %namespace, ?deleted, "deleted objects no longer wanted");
        publish(
            ctx,
            federation,
            EventType::Normal,
            "OrphansDeleted",
            &format!("deleted {}", deleted.join(", ")),
        )
        .await;
    }

    // 6. Status: the members' first (they do not wait for the pods), then the federation's.
    write_member_statuses(
        ctx,
        federation,
        Some(&compiled),
        &namespace,
        &partners,
        &policies,
        &now,
    )
    .await?;
    let certificate = certificate_state(federation, &names, &applied, &observed);
    let pods = if ctx.confirm_policy {
        pod_policies(client, &namespace, &name).await?
    } else {
        Vec::new()
    };
    let previous_version = federation
        .status
        .as_ref()
        .and_then(|s| s.policy_version.clone());
    let o = FederationObservation {
        generation: federation.metadata.generation,
        policy: Ok(outcome),
        certificate,
        dns: dns_state(federation, optional, &load_balancer),
        proxy: replicas(&applied, "Deployment", &names.proxy()),
        gateway: replicas(&applied, "StatefulSet", &names.gateway()),
        load_balancer,
        pods,
        apply_error: None,
    };
    let written = write_federation_status(ctx, federation, &o, &now).await?;
    if previous_version.as_deref() != Some(compiled.document.version.as_str()) {
        publish(
            ctx,
            federation,
            EventType::Normal,
            "PolicyUpdated",
            &format!(
                "policy {} with {} partner(s) and {} access polic(ies)",
                compiled.document.version,
                compiled.accepted_partners.len(),
                compiled.accepted_policies.len()
            ),
        )
        .await;
    }
    let ready = written
        .conditions
        .iter()
        .any(|c| c.type_ == xmppfed_api::v1alpha1::conditions::READY && c.status == "True");
    Ok(Action::requeue(if ready { SETTLED } else { PENDING }))
}

fn policy_outcome(c: &Compilation) -> PolicyOutcome {
    PolicyOutcome {
        version: c.document.version.clone(),
        partners: c.accepted_partners.len(),
        rejected: c
            .findings
            .iter()
            .filter(|f| f.severity == xmppfed_policy::Severity::Error)
            .map(|f| f.to_string())
            .collect(),
    }
}

/// The status when the pipeline stopped before looking at the workloads.
fn unobserved(
    federation: &XmppFederation,
    policy: Result<PolicyOutcome, String>,
    optional: OptionalCrds,
) -> FederationObservation {
    let previous = federation.status.as_ref();
    FederationObservation {
        generation: federation.metadata.generation,
        policy,
        certificate: match (&federation.spec.tls.secret_name, optional.cert_manager) {
            (Some(name), _) => CertificateState::UserSecret {
                name: name.clone(),
                exists: true,
            },
            (None, true) => CertificateState::Issued {
                ready: None,
                reason: String::new(),
                message: String::new(),
            },
            (None, false) => CertificateState::CertManagerNotInstalled,
        },
        dns: dns_state(federation, optional, &[]),
        proxy: Replicas::default(),
        gateway: Replicas::default(),
        load_balancer: previous.map(|s| s.endpoints.clone()).unwrap_or_default(),
        pods: Vec::new(),
        apply_error: None,
    }
}

/// The generated dialback Secret first (the pods mount it), then every built object.
async fn apply_desired(
    ctx: &Context,
    inputs: &Inputs<'_>,
    desired: &build::Desired,
    namespace: &str,
) -> Result<Vec<DynamicObject>, Error> {
    if inputs.federation.spec.dialback.secret_ref.is_none() {
        let value = xmppfed_policy_source::pod::generate_secret().map_err(|_| Error::Random)?;
        if let Some(secret) = build::dialback_secret(inputs, &value)
            && apply::create_once(&ctx.client, namespace, &secret).await?
        {
            publish(
                ctx,
                inputs.federation,
                EventType::Normal,
                "DialbackSecretCreated",
                &format!("generated Secret {}", secret.name),
            )
            .await;
        }
    }
    if !inputs.observed.cert_manager {
        // Key pairs are made only when the Secret is missing.
        let exists = apply::exists(
            &ctx.client,
            namespace,
            "v1",
            "Secret",
            &inputs.names().link_generated(),
        )
        .await?;
        if !exists {
            let pki = build::generate_link_pki(inputs).map_err(|_| Error::Random)?;
            if let Some(secret) = build::link_secret(inputs, &pki)
                && apply::create(&ctx.client, namespace, &secret).await?
            {
                publish(ctx, inputs.federation, EventType::Normal, "LinkCertificatesCreated", &format!("generated the internal link's CA and certificates in Secret {} (cert-manager is not installed)", secret.name)).await;
            }
        }
    }
    Ok(apply::apply_all(&ctx.client, namespace, desired).await?)
}

async fn load_balancer_addresses(
    client: &Client,
    namespace: &str,
    service: &str,
) -> Result<Vec<String>, ApiError> {
    let api: Api<Service> = Api::namespaced(client.clone(), namespace);
    let svc = api
        .get_opt(service)
        .await
        .map_err(|e| ApiError::new("get", "Service", service, e))?;
    Ok(svc
        .and_then(|s| s.status)
        .and_then(|s| s.load_balancer)
        .and_then(|lb| lb.ingress)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| i.ip)
        .collect())
}

/// The resource version of each Secret the pods mount that exists, read by name (metadata
/// only: the operator never needs their contents).
async fn secret_versions(
    client: &Client,
    namespace: &str,
    inputs: &Inputs<'_>,
) -> Result<BTreeMap<String, String>, ApiError> {
    let names: BTreeSet<String> = [Component::Proxy, Component::Gateway]
        .into_iter()
        .flat_map(|c| build::mounted_secrets(inputs, c))
        .collect();
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut versions = BTreeMap::new();
    for name in names {
        let meta = api
            .get_metadata_opt(&name)
            .await
            .map_err(|e| ApiError::new("get", "Secret", &name, e))?;
        if let Some(version) = meta.and_then(|m| m.metadata.resource_version) {
            versions.insert(name, version);
        }
    }
    Ok(versions)
}

fn certificate_state(
    federation: &XmppFederation,
    names: &Names,
    applied: &[DynamicObject],
    observed: &Observed,
) -> CertificateState {
    if let Some(name) = &federation.spec.tls.secret_name {
        return CertificateState::UserSecret {
            name: name.clone(),
            exists: observed.secret_versions.contains_key(name),
        };
    }
    if !observed.cert_manager {
        return CertificateState::CertManagerNotInstalled;
    }
    let ready = find(applied, "Certificate", &names.edge_certificate())
        .and_then(|c| c.data.pointer("/status/conditions"))
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready").cloned());
    match ready {
        Some(c) => CertificateState::Issued {
            ready: Some(c["status"] == "True"),
            reason: c["reason"].as_str().unwrap_or_default().into(),
            message: c["message"].as_str().unwrap_or_default().into(),
        },
        None => CertificateState::Issued {
            ready: None,
            reason: String::new(),
            message: String::new(),
        },
    }
}

fn dns_state(
    federation: &XmppFederation,
    optional: OptionalCrds,
    load_balancer: &[String],
) -> DnsState {
    match federation.spec.dns.provider {
        DnsProvider::None => DnsState::NotManaged,
        DnsProvider::ExternalDNS if !optional.external_dns => DnsState::ExternalDnsNotInstalled,
        DnsProvider::ExternalDNS => DnsState::Published {
            host_records: !load_balancer.is_empty(),
        },
    }
}

fn find<'a>(applied: &'a [DynamicObject], kind: &str, name: &str) -> Option<&'a DynamicObject> {
    applied.iter().find(|o| {
        o.types.as_ref().is_some_and(|t| t.kind == kind) && o.metadata.name.as_deref() == Some(name)
    })
}

/// Replicas of a Deployment or StatefulSet, from the apply answer.
fn replicas(applied: &[DynamicObject], kind: &str, name: &str) -> Replicas {
    let Some(o) = find(applied, kind, name) else {
        return Replicas::default();
    };
    let int = |p: &str| {
        o.data
            .pointer(p)
            .and_then(Value::as_i64)
            .and_then(|n| i32::try_from(n).ok())
            .unwrap_or(0)
    };
    Replicas {
        desired: o
            .data
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .and_then(|n| i32::try_from(n).ok())
            .unwrap_or(1),
        ready: int("/status/readyReplicas"),
        updated: int("/status/updatedReplicas"),
    }
}

/// Which policy each running proxy and gateway pod serves, asked through the API server's
/// pod proxy (`GET pods/proxy`), so it works wherever the operator runs.
async fn pod_policies(
    client: &Client,
    namespace: &str,
    instance: &str,
) -> Result<Vec<PodPolicy>, ApiError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = format!(
        "{}={},{}=xmppfed,{} in (proxy,gateway)",
        crate::labels::INSTANCE,
        instance,
        "app.kubernetes.io/name",
        crate::labels::COMPONENT
    );
    let pods = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| ApiError::new("list", "Pod", &selector, e))?;
    let running: Vec<String> = pods
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter_map(|p| p.metadata.name)
        .collect();
    let answers = running.into_iter().map(|pod| async move {
        let path = format!("/api/v1/namespaces/{namespace}/pods/{pod}:8080/proxy/policy-version");
        let version = match http::Request::get(path).body(Vec::new()) {
            Ok(request) => tokio::time::timeout(POD_ANSWER, client.request_text(request))
                .await
                .ok()
                .and_then(Result::ok)
                .map(|text| text.trim().to_string())
                .filter(|v| !v.is_empty()),
            Err(_) => None,
        };
        PodPolicy { pod, version }
    });
    Ok(stream::iter(answers).buffer_unordered(8).collect().await)
}

/// Writes the federation's status when it says something new; returns what it holds now.
async fn write_federation_status(
    ctx: &Context,
    federation: &XmppFederation,
    o: &FederationObservation,
    now: &Time,
) -> Result<xmppfed_api::v1alpha1::XmppFederationStatus, ApiError> {
    let previous = federation.status.as_ref();
    let new = status::federation_status(o, previous, now);
    let unchanged = previous.is_some_and(|p| {
        status::same_conditions(&p.conditions, &new.conditions)
            && p.observed_generation == new.observed_generation
            && p.endpoints == new.endpoints
            && p.partners == new.partners
            && p.policy_version == new.policy_version
            && p.applied_policy_version == new.applied_policy_version
    });
    if !unchanged {
        let namespace = federation.namespace().unwrap_or_default();
        let kind = ApiResource::erase::<XmppFederation>(&());
        apply_status(&ctx.client, &namespace, &kind, &federation.name_any(), &new).await?;
    }
    Ok(new)
}

/// Server-side applies `status` to the status subresource of `name`. The answer is read as a
/// dynamic object: only success matters, and thousands of partners are not worth decoding.
async fn apply_status<S: Serialize>(
    client: &Client,
    namespace: &str,
    kind: &ApiResource,
    name: &str,
    status: &S,
) -> Result<(), ApiError> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, kind);
    let body = json!({
        "apiVersion": kind.api_version,
        "kind": kind.kind,
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|e| ApiError::new("apply status of", &kind.kind, name, e))?;
    Ok(())
}

/// (conditions, federations, observedGeneration) of a partner's or access policy's status.
type MemberStatus<'a> = (&'a [Condition], &'a [String], Option<i64>);

/// Whether a member's new status says something its current one does not (timestamps aside).
fn member_changed(previous: Option<MemberStatus>, new: MemberStatus) -> bool {
    !previous.is_some_and(|(conditions, federations, generation)| {
        status::same_conditions(conditions, new.0) && federations == new.1 && generation == new.2
    })
}

/// Partner and access-policy statuses of the namespace, from every federation in it. Only
/// objects whose status changes are written.
async fn write_member_statuses(
    ctx: &Context,
    federation: &XmppFederation,
    compiled: Option<&Compilation>,
    namespace: &str,
    partners: &[XmppAllowedPartner],
    policies: &[ExternalAccessPolicy],
    now: &Time,
) -> Result<(), ApiError> {
    let mut federations = in_namespace(&ctx.stores.federations, namespace);
    // The store may lag behind the object being reconciled.
    let me = federation.name_any();
    federations.retain(|f| f.name_any() != me);
    federations.push(federation.clone());
    federations.sort_by_key(|f| f.name_any());

    let mut accepted = Vec::new();
    for f in &federations {
        let fname = f.name_any();
        let own;
        let c = if fname == me {
            compiled
        } else {
            own = compile(f, partners, policies).ok();
            own.as_ref()
        };
        if let Some(c) = c {
            for p in &c.accepted_partners {
                accepted.push((
                    fname.clone(),
                    ObjectRef {
                        kind: "XmppAllowedPartner",
                        namespace: namespace.into(),
                        name: p.clone(),
                    },
                ));
            }
            for p in &c.accepted_policies {
                accepted.push((
                    fname.clone(),
                    ObjectRef {
                        kind: "ExternalAccessPolicy",
                        namespace: namespace.into(),
                        name: p.clone(),
                    },
                ));
            }
        }
    }
    let findings = check(&ObjectSet {
        federations,
        partners: partners.to_vec(),
        policies: policies.to_vec(),
    });
    let verdicts: BTreeMap<ObjectRef, Verdict> = status::verdicts(&accepted, &findings);
    let none = Verdict::default();
    let verdict = |kind: &'static str, name: String| {
        verdicts
            .get(&ObjectRef {
                kind,
                namespace: namespace.into(),
                name,
            })
            .unwrap_or(&none)
    };

    let partner_kind = ApiResource::erase::<XmppAllowedPartner>(&());
    let policy_kind = ApiResource::erase::<ExternalAccessPolicy>(&());
    let mut writes = Vec::new();
    for p in partners {
        let new = status::partner_status(
            verdict("XmppAllowedPartner", p.name_any()),
            p.metadata.generation,
            p.status.as_ref(),
            now,
        );
        let previous = p.status.as_ref().map(|s| {
            (
                s.conditions.as_slice(),
                s.federations.as_slice(),
                s.observed_generation,
            )
        });
        if member_changed(
            previous,
            (&new.conditions, &new.federations, new.observed_generation),
        ) {
            writes.push((
                partner_kind.clone(),
                p.name_any(),
                serde_json::to_value(&new).unwrap_or(Value::Null),
            ));
        }
    }
    for p in policies {
        let new = status::access_policy_status(
            verdict("ExternalAccessPolicy", p.name_any()),
            p.metadata.generation,
            p.status.as_ref(),
            now,
        );
        let previous = p.status.as_ref().map(|s| {
            (
                s.conditions.as_slice(),
                s.federations.as_slice(),
                s.observed_generation,
            )
        });
        if member_changed(
            previous,
            (&new.conditions, &new.federations, new.observed_generation),
        ) {
            writes.push((
                policy_kind.clone(),
                p.name_any(),
                serde_json::to_value(&new).unwrap_or(Value::Null),
            ));
        }
    }
    let results: Vec<Result<(), ApiError>> =
        stream::iter(writes.into_iter().map(|(kind, name, status)| {
            let client = &ctx.client;
            async move {
                match apply_status(client, namespace, &kind, &name, &status).await {
                    // Deleted since the store saw it: nothing to report on.
                    Err(e) if e.is_not_found() => Ok(()),
                    other => other,
                }
            }
        }))
        .buffer_unordered(STATUS_WRITES)
        .collect()
        .await;
    results.into_iter().collect()
}

async fn publish(
    ctx: &Context,
    federation: &XmppFederation,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    let Some(recorder) = &ctx.recorder else {
        return;
    };
    // Events are at most 1 kB.
    let note: String = note.chars().take(1000).collect();
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &federation.object_ref(&())).await {
        warn!("could not publish event {reason}: {e}");
    }
}
