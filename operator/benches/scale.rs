//! Scale benchmark of the reconcile: one federation with 10,000 partners and 10,000 user
//! access policies, against the scripted API of the tests (answers in microseconds, so the
//! times are the operator's own work). Run with
//!
//! ```sh
//! cargo bench -p xmppfed-operator --bench scale
//! ```
//!
//! It reports, for the first reconcile (every status new) and a steady-state one (nothing
//! changed), the time and the API calls by kind; then the time from one partner change to
//! the new policy ConfigMap being applied (to which the controller's 500 ms debounce adds).

#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Call, absorb_statuses, examples, scripted_client, settings, store_of};
use xmppfed_api::v1alpha1::{ExternalAccessPolicy, XmppAllowedPartner, XmppFederation};
use xmppfed_operator::controller::DEBOUNCE;
use xmppfed_operator::metrics::Metrics;
use xmppfed_operator::reconcile::{Context, Discovery, OptionalCrds, Stores, reconcile};

const PARTNERS: usize = 10_000;
const POLICIES: usize = 10_000;

fn partner(i: usize) -> XmppAllowedPartner {
    serde_json::from_value(json!({
        "apiVersion": "xmppfed.io/v1alpha1",
        "kind": "XmppAllowedPartner",
        "metadata": {"name": format!("partner-{i}"), "namespace": "xmpp", "generation": 1,
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"domain": format!("partner-{i}.example"), "partnerType": "Federated"},
    }))
    .expect("partner")
}

fn policy(i: usize) -> ExternalAccessPolicy {
    serde_json::from_value(json!({
        "apiVersion": "xmppfed.io/v1alpha1",
        "kind": "ExternalAccessPolicy",
        "metadata": {"name": format!("user-{i}"), "namespace": "xmpp", "generation": 1,
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"scope": "User", "users": [format!("user-{i}@contoso.com")],
                 "enableFederationAccess": true, "enableXmppAccess": i.is_multiple_of(2)},
    }))
    .expect("policy")
}

struct Run {
    took: Duration,
    calls: Vec<Call>,
    /// From the start of the reconcile to the policy ConfigMap's apply arriving.
    to_config_map: Option<Duration>,
}

async fn reconcile_once(
    fed: &XmppFederation,
    partners: &[XmppAllowedPartner],
    policies: &[ExternalAccessPolicy],
) -> Run {
    let started = Arc::new(Mutex::new(None::<Instant>));
    let seen = Arc::new(Mutex::new(None::<Duration>));
    let (s, t) = (started.clone(), seen.clone());
    let (client, log) = scripted_client(move |c| {
        if c.is_apply() && c.path.ends_with("/configmaps/contoso-policy") {
            let at = s.lock().expect("lock").map(|i| i.elapsed());
            *t.lock().expect("lock") = at;
        }
        // The dialback Secret exists (not the first reconcile ever).
        c.is("GET", "/api/v1/namespaces/xmpp/secrets/contoso-dialback")
            .then(|| (200, json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": {"name": "contoso-dialback"}})))
    });
    let ctx = Arc::new(Context {
        client,
        settings: settings(),
        stores: Stores {
            federations: store_of(std::slice::from_ref(fed)),
            partners: store_of(partners),
            policies: store_of(policies),
        },
        discovery: Discovery::fixed(OptionalCrds {
            cert_manager: true,
            external_dns: true,
        }),
        metrics: Arc::new(Metrics::default()),
        recorder: None,
        confirm_policy: false,
    });
    let start = Instant::now();
    *started.lock().expect("lock") = Some(start);
    reconcile(Arc::new(fed.clone()), ctx)
        .await
        .expect("reconcile succeeds");
    let took = start.elapsed();
    let calls = log.lock().expect("log").clone();
    let to_config_map = *seen.lock().expect("lock");
    Run {
        took,
        calls,
        to_config_map,
    }
}

fn summary(calls: &[Call]) -> String {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for c in calls {
        let what = if c.path.ends_with("/status") {
            let kind = c.path.split('/').rev().nth(2).unwrap_or_default();
            format!("{} {kind}/status", c.method)
        } else if c.method == "GET" && c.query.contains_key("labelSelector") {
            "GET list (orphans)".to_string()
        } else {
            format!("{} object", c.method)
        };
        *by.entry(what).or_default() += 1;
    }
    by.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (mut fed, _, _) = examples();
        fed.metadata.creation_timestamp = None;
        let mut partners: Vec<XmppAllowedPartner> = (0..PARTNERS).map(partner).collect();
        let mut policies: Vec<ExternalAccessPolicy> = (0..POLICIES).map(policy).collect();
        println!("federation with {PARTNERS} partners and {POLICIES} user access policies, scripted API\n");

        let first = reconcile_once(&fed, &partners, &policies).await;
        println!(
            "first reconcile:  {:>8.1} ms, {} API calls ({})",
            first.took.as_secs_f64() * 1e3,
            first.calls.len(),
            summary(&first.calls)
        );
        absorb_statuses(&mut fed, &mut partners, &mut policies, &first.calls);

        let mut steady = Vec::new();
        for _ in 0..5 {
            let run = reconcile_once(&fed, &partners, &policies).await;
            steady.push(run);
        }
        let best = steady.iter().map(|r| r.took).min().unwrap_or_default();
        let worst = steady.iter().map(|r| r.took).max().unwrap_or_default();
        println!(
            "steady reconcile: {:>8.1} ms best, {:.1} ms worst of 5, {} API calls ({})",
            best.as_secs_f64() * 1e3,
            worst.as_secs_f64() * 1e3,
            steady[0].calls.len(),
            summary(&steady[0].calls)
        );

        // One partner changes its type: time to the new ConfigMap being applied.
        let mut changes = Vec::new();
        for round in 0..5 {
            let i = round * 997 % PARTNERS;
            partners[i].spec.partner_type = if round.is_multiple_of(2) {
                xmppfed_policy::PartnerType::PublicVerified
            } else {
                xmppfed_policy::PartnerType::Federated
            };
            partners[i].metadata.generation = Some(2 + round as i64);
            let run = reconcile_once(&fed, &partners, &policies).await;
            changes.push(run.to_config_map.unwrap_or(run.took));
            absorb_statuses(&mut fed, &mut partners, &mut policies, &run.calls);
        }
        changes.sort();
        let median = changes[changes.len() / 2];
        println!(
            "partner change → policy ConfigMap applied: {:.1} ms median of 5 (max {:.1} ms); with the {} ms debounce: {:.1} ms",
            median.as_secs_f64() * 1e3,
            changes.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
            DEBOUNCE.as_millis(),
            (median + DEBOUNCE).as_secs_f64() * 1e3
        );
    });
}
