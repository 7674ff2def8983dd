//! Property tests of the pure builders: for any federation that compiles (admission skipped:
//! whatever serde accepts) and anything the operator may observe, building never panics, is
//! deterministic, names every object within Kubernetes' limits, and owns and labels it.

use proptest::prelude::*;
use serde_json::{Value, json};
use xmppfed_api::compile::compile;
use xmppfed_api::v1alpha1::XmppFederation;
use xmppfed_operator::build::{Inputs, Observed, Settings, build, dialback_secret};

fn domain() -> impl Strategy<Value = String> {
    prop_oneof![
        10 => "[a-z]{1,12}\\.(com|net|org)",
        10 => "[a-z][a-z0-9-]{0,30}[a-z0-9]\\.[a-z]{2,6}",
        // Not domains at all: compile() must refuse them, never the builder panic.
        1 => "[A-Za-z0-9 ._*-]{0,20}",
    ]
}

fn federation() -> impl Strategy<Value = Value> {
    (
        "[a-z][a-z0-9-]{0,40}",
        prop::collection::vec(domain(), 1..4),
        (any::<i32>(), any::<i32>(), any::<i32>(), prop_oneof![20 => 1..65536i64, 1 => any::<i64>()]),
        prop::option::of(domain()),
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec((domain(), prop::option::of(0..70000i64), prop::option::of("[a-z-]{1,20}")), 0..3),
        any::<bool>(),
        prop::collection::vec("[ -~]{0,12}", 0..3),
    )
        .prop_map(
            |(name, domains, (edge_replicas, gateway_replicas, weight, port), hostname, cert_manager, dns, internal, wildcard, extra)| {
                let mut spec = json!({
                    "domains": domains,
                    "edge": {"replicas": edge_replicas, "srvWeight": weight, "ports": {"starttls": port}},
                    "gateway": {
                        "replicas": gateway_replicas,
                        "internalServers": internal.iter().map(|(host, port, ca)| {
                            let mut s = json!({"host": host});
                            if let Some(p) = port { s["port"] = json!(p); }
                            if let Some(ca) = ca { s["caSecretName"] = json!(ca); }
                            s
                        }).collect::<Vec<_>>(),
                    },
                    "tls": if cert_manager {
                        json!({"issuerRef": {"name": "issuer"}, "includeWildcard": wildcard, "extraDnsNames": extra})
                    } else {
                        json!({"secretName": "edge-tls"})
                    },
                    "dns": {"provider": if dns { "ExternalDNS" } else { "None" }},
                });
                if let Some(h) = hostname {
                    spec["edge"]["hostname"] = json!(h);
                }
                json!({
                    "apiVersion": "xmppfed.io/v1alpha1",
                    "kind": "XmppFederation",
                    "metadata": {"name": name, "namespace": "ns", "uid": "u-1"},
                    "spec": spec,
                })
            },
        )
}

fn observed() -> impl Strategy<Value = Observed> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(
            prop_oneof![
                "[0-9]{1,3}(\\.[0-9]{1,3}){3}",
                "[0-9a-f:]{2,20}",
                "[ -~]{0,10}"
            ],
            0..3,
        ),
    )
        .prop_map(|(cert_manager, external_dns, load_balancer)| Observed {
            cert_manager,
            external_dns,
            load_balancer,
            ..Observed::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn builders_never_panic_and_are_deterministic(fed in federation(), observed in observed()) {
        let Ok(fed) = serde_json::from_value::<XmppFederation>(fed) else {
            return Ok(());
        };
        let Ok(compiled) = compile(&fed, &[], &[]) else {
            return Ok(());
        };
        let settings = Settings::default();
        let inputs = Inputs { federation: &fed, policy: &compiled.document, settings: &settings, observed: &observed };
        let first = build(&inputs).expect("an empty policy fits in a ConfigMap");
        let second = build(&inputs).expect("builds");
        prop_assert_eq!(&first, &second);
        prop_assert_eq!(first.to_yaml(), second.to_yaml());
        let secret = dialback_secret(&inputs, "s");
        for o in first.objects.iter().chain(secret.iter()) {
            prop_assert!(!o.name.is_empty() && o.name.len() <= 253, "{} name {:?}", o.kind, o.name);
            let meta = &o.value["metadata"];
            prop_assert_eq!(&meta["namespace"], "ns");
            prop_assert_eq!(&meta["ownerReferences"][0]["uid"], "u-1");
            prop_assert_eq!(&meta["labels"]["app.kubernetes.io/managed-by"], "xmppfed-operator");
        }
        // Services and workloads: names are DNS labels (63).
        for o in first.objects.iter().filter(|o| matches!(o.kind.as_str(), "Service" | "StatefulSet")) {
            prop_assert!(o.name.len() <= 63, "{} {:?}", o.kind, o.name);
        }
    }
}
