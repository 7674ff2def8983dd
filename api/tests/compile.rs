//! The policy compiler: defaults, determinism, precedence, ties, selectors and the ConfigMap form.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use proptest::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;
use xmppfed_api::compile::{compile, parse_host_port};
use xmppfed_api::configmap::{from_config_map, to_config_map};
use xmppfed_api::findings::Severity;
use xmppfed_api::v1alpha1::*;
use xmppfed_policy::index::AccessSource;
use xmppfed_policy::{CompiledPolicy, Negotiation, PartnerType};

fn federation() -> XmppFederation {
    let mut f: XmppFederation = serde_json::from_value(json!({
        "apiVersion": "xmppfed.io/v1alpha1", "kind": "XmppFederation",
        "metadata": {"name": "contoso", "namespace": "xmpp"},
        "spec": {
            "domains": ["contoso.com", "contoso.net"],
            "tls": {"secretName": "edge-tls"},
            "gateway": {"internalServers": [{"host": "prosody.internal"}]},
            "limits": {"partnerConnectionLimit": 7}
        }
    }))
    .unwrap();
    f.metadata.uid = Some("uid-1".into());
    f
}

fn partner(name: &str, domain: &str) -> XmppAllowedPartner {
    let mut p: XmppAllowedPartner = serde_json::from_value(json!({
        "apiVersion": "xmppfed.io/v1alpha1", "kind": "XmppAllowedPartner",
        "metadata": {"name": name, "namespace": "xmpp"},
        "spec": {"domain": domain}
    }))
    .unwrap();
    p.spec.support_dialback_negotiation = false;
    p
}

fn created(
    mut meta: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    secs: i64,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    meta.creation_timestamp = Some(Time(
        k8s_openapi::jiff::Timestamp::from_second(secs).unwrap(),
    ));
    meta
}

fn policy(name: &str, spec: serde_json::Value) -> ExternalAccessPolicy {
    serde_json::from_value(json!({
        "apiVersion": "xmppfed.io/v1alpha1", "kind": "ExternalAccessPolicy",
        "metadata": {"name": name, "namespace": "xmpp"}, "spec": spec
    }))
    .unwrap()
}

#[test]
fn fills_federation_defaults_into_every_partner() {
    let mut limited = partner("b", "b.example");
    limited.spec.connection_limit = Some(3);
    limited.spec.proxy_fqdn = Some("gw.b.example".into());
    let c = compile(&federation(), &[partner("a", "A.example"), limited], &[]).unwrap();
    let d = &c.document;
    assert_eq!(d.served_domains, vec!["contoso.com", "contoso.net"]);
    assert_eq!(d.edge.hostname, "xmpp.contoso.com");
    assert_eq!(d.partners[0].connection_limit, 7);
    assert_eq!(d.partners[0].domain, "a.example", "domains are normalised");
    assert_eq!(d.partners[1].connection_limit, 3);
    assert_eq!(
        d.partners[1]
            .proxy
            .as_ref()
            .map(|p| (p.host.as_str(), p.port)),
        Some(("gw.b.example", 5269))
    );
    assert_eq!(
        d.gateway.internal_servers[0].domains,
        vec!["contoso.com", "contoso.net"]
    );
    assert_eq!(d.limits.subscription_refresh_interval_seconds, 28800);
    assert!(d.version.starts_with("sha256:"));
    assert_eq!(c.accepted_partners.len(), 2);
}

#[test]
fn same_inputs_in_any_order_give_the_same_version() {
    let partners = vec![
        partner("a", "a.example"),
        partner("b", "b.example"),
        partner("c", "c.example"),
    ];
    let policies = vec![
        policy(
            "g",
            json!({"scope": "Global", "enableFederationAccess": true}),
        ),
        policy(
            "u",
            json!({"scope": "User", "users": ["x@contoso.com", "*@contoso.net"]}),
        ),
    ];
    let one = compile(&federation(), &partners, &policies).unwrap();
    let mut rp = partners.clone();
    rp.reverse();
    let mut rpol = policies.clone();
    rpol.reverse();
    let two = compile(&federation(), &rp, &rpol).unwrap();
    assert_eq!(one.document, two.document);
    let mut changed = partners.clone();
    changed[1].spec.partner_type = PartnerType::Federated;
    assert_ne!(
        compile(&federation(), &changed, &policies)
            .unwrap()
            .document
            .version,
        one.document.version
    );
}

#[test]
fn the_older_partner_wins_a_domain_conflict() {
    let mut old = partner("zeta", "shared.example");
    old.metadata = created(old.metadata, 1_000);
    let mut new = partner("alpha", "other.example");
    new.spec.additional_domains = vec!["shared.example".into()];
    new.metadata = created(new.metadata, 2_000);
    let c = compile(&federation(), &[new, old], &[]).unwrap();
    assert_eq!(c.accepted_partners.iter().collect::<Vec<_>>(), vec!["zeta"]);
    let f = &c.findings[0];
    assert_eq!(
        (f.severity, f.reason, f.object.name.as_str()),
        (Severity::Error, "DomainConflict", "alpha")
    );
    assert_eq!(f.field, "spec.additionalDomains[0]");
    // The loser is left out entirely, not half-applied.
    assert!(c.document.partners.iter().all(|p| p.name != "alpha"));
}

#[test]
fn partners_cannot_claim_our_own_domains() {
    let c = compile(&federation(), &[partner("evil", "contoso.net")], &[]).unwrap();
    assert!(c.document.partners.is_empty());
    assert_eq!(c.findings[0].reason, "DomainConflict");
}

#[test]
fn selectors_and_namespaces_limit_what_is_compiled() {
    let mut fed = federation();
    fed.spec.partner_selector = Some(LabelSelector {
        match_labels: Some(BTreeMap::from([("tier".to_string(), "gold".to_string())])),
        ..Default::default()
    });
    let mut gold = partner("gold", "gold.example");
    gold.metadata.labels = Some(BTreeMap::from([("tier".to_string(), "gold".to_string())]));
    let plain = partner("plain", "plain.example");
    let mut elsewhere = partner("elsewhere", "else.example");
    elsewhere.metadata.namespace = Some("other".into());
    elsewhere.metadata.labels = gold.metadata.labels.clone();
    let c = compile(&fed, &[gold, plain, elsewhere], &[]).unwrap();
    assert_eq!(c.accepted_partners.iter().collect::<Vec<_>>(), vec!["gold"]);
}

#[test]
fn access_precedence_from_policies_to_lookup() {
    let policies = vec![
        policy(
            "global",
            json!({"scope": "Global", "enableFederationAccess": true, "enableXmppAccess": false}),
        ),
        policy(
            "net",
            json!({"scope": "Domain", "domains": ["contoso.net"], "enableFederationAccess": true, "enableXmppAccess": true}),
        ),
        policy(
            "interns",
            json!({"scope": "User", "users": ["intern-*@contoso.net"]}),
        ),
        policy(
            "everyone-com",
            json!({"scope": "User", "users": ["*@contoso.com"], "enableFederationAccess": true, "enableXmppAccess": true}),
        ),
        policy(
            "ceo",
            json!({"scope": "User", "users": ["ceo@contoso.com"]}),
        ),
    ];
    let c = compile(&federation(), &[], &policies).unwrap();
    let p = CompiledPolicy::new(c.document).unwrap();
    let check = |jid: &str| {
        let d = p.access_for(jid);
        (d.source, d.policy().map(str::to_string), d.allows_xmpp())
    };
    assert_eq!(
        check("ceo@contoso.com"),
        (AccessSource::User, Some("ceo".into()), false)
    );
    assert_eq!(
        check("bob@contoso.com"),
        (AccessSource::UserPattern, Some("everyone-com".into()), true)
    );
    assert_eq!(
        check("intern-7@contoso.net"),
        (AccessSource::UserPattern, Some("interns".into()), false)
    );
    assert_eq!(
        check("carol@contoso.net"),
        (AccessSource::Domain, Some("net".into()), true)
    );
    assert_eq!(
        check("dave@elsewhere.example"),
        (AccessSource::Global, Some("global".into()), false)
    );
}

#[test]
fn ties_resolve_to_the_older_policy_and_are_reported() {
    let mut a = policy(
        "a",
        json!({"scope": "User", "users": ["x@contoso.com"], "enableFederationAccess": true, "enableXmppAccess": true}),
    );
    a.metadata = created(a.metadata, 200);
    let mut b = policy("b", json!({"scope": "User", "users": ["x@contoso.com"]}));
    b.metadata = created(b.metadata, 100);
    let mut g1 = policy("g1", json!({"scope": "Global"}));
    g1.metadata = created(g1.metadata, 300);
    let mut g2 = policy("g2", json!({"scope": "Global"}));
    g2.metadata = created(g2.metadata, 50);
    let c = compile(&federation(), &[], &[a, b, g1, g2]).unwrap();
    let p = CompiledPolicy::new(c.document).unwrap();
    assert_eq!(p.access_for("x@contoso.com").policy(), Some("b"));
    assert_eq!(p.access_for("y@contoso.com").policy(), Some("g2"));
    let reasons: Vec<(&str, &str)> = c
        .findings
        .iter()
        .map(|f| (f.object.name.as_str(), f.reason))
        .collect();
    assert!(reasons.contains(&("a", "Tie")), "{reasons:?}");
    assert!(
        reasons.contains(&("g1", "DuplicateGlobalPolicy")),
        "{reasons:?}"
    );
    assert!(!c.accepted_policies.contains("a") && !c.accepted_policies.contains("g1"));
}

#[test]
fn unknown_domains_and_useless_switches_are_warned() {
    let c = compile(
        &federation(),
        &[],
        &[
            policy("d", json!({"scope": "Domain", "domains": ["fabrikam.com"]})),
            policy(
                "u",
                json!({"scope": "User", "users": ["a@fabrikam.com"], "enableXmppAccess": true}),
            ),
        ],
    )
    .unwrap();
    let reasons: Vec<&str> = c.findings.iter().map(|f| f.reason).collect();
    assert_eq!(
        reasons.iter().filter(|r| **r == "UnknownDomain").count(),
        2,
        "{reasons:?}"
    );
    assert!(reasons.contains(&"XmppAccessWithoutFederation"));
    assert!(c.findings.iter().all(|f| f.severity == Severity::Warning));
}

#[test]
fn invalid_federations_are_refused_naming_the_field() {
    let mut f = federation();
    f.spec.gateway.internal_servers[0].domains = vec!["fabrikam.com".into()];
    let e = compile(&f, &[], &[]).unwrap_err();
    assert_eq!(e.field, "spec.gateway.internalServers[0].domains[0]");
    let mut f = federation();
    f.spec.limits.connection_limit = 0;
    assert_eq!(
        compile(&f, &[], &[]).unwrap_err().field,
        "spec.limits.connectionLimit"
    );
    let mut f = federation();
    f.spec.domains.clear();
    assert_eq!(compile(&f, &[], &[]).unwrap_err().field, "spec.domains");
}

#[test]
fn static_routes_parse() {
    assert_eq!(parse_host_port("gw.example:5270").unwrap().port, 5270);
    assert!(parse_host_port("gw.example:0").is_err());
    assert!(parse_host_port("gw.example:99999").is_err());
    assert!(parse_host_port("gw_example").is_err());
}

#[test]
fn config_map_round_trip_small_and_large() {
    for n in [3usize, 4000] {
        let partners: Vec<_> = (0..n)
            .map(|i| partner(&format!("p{i:05}"), &format!("p{i:05}.example")))
            .collect();
        let c = compile(&federation(), &partners, &[]).unwrap();
        let cm = to_config_map(&c.document, "contoso-policy", "xmpp").unwrap();
        assert_eq!(
            cm.data.is_some(),
            n == 3,
            "small documents stay readable, large ones are compressed"
        );
        // Through JSON, as it travels to and from the API server.
        let wire: k8s_openapi::api::core::v1::ConfigMap =
            serde_json::from_value(serde_json::to_value(&cm).unwrap()).unwrap();
        let back = from_config_map(&wire).unwrap();
        assert_eq!(back.document(), &c.document);
        assert_eq!(
            back.partner_for(&format!("p{:05}.example", n - 1))
                .unwrap()
                .tls,
            Negotiation::Required
        );
    }
}

fn arb_negotiation() -> impl Strategy<Value = Negotiation> {
    prop_oneof![
        Just(Negotiation::Required),
        Just(Negotiation::Optional),
        Just(Negotiation::NotSupported)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the objects hold (admitted or not), compile never panics, and whatever it produces
    /// passes the document checks the proxy applies on load.
    #[test]
    fn compile_never_panics_and_output_always_loads(
        domains in proptest::collection::vec("[a-zA-Z0-9.\\-_]{0,12}", 0..4),
        partners in proptest::collection::vec(("[a-z]{1,3}", "[a-zA-Z0-9.\\-]{0,10}", arb_negotiation(), arb_negotiation(), any::<bool>(), proptest::option::of(-2i32..5)), 0..8),
        users in proptest::collection::vec("[a-z*?@.]{0,10}", 0..6),
        limit in -1i32..3,
    ) {
        let mut fed = federation();
        fed.spec.domains = domains.into_iter().map(DomainName).collect();
        fed.spec.limits.partner_connection_limit = limit;
        let partners: Vec<_> = partners.into_iter().map(|(name, domain, tls, sasl, dialback, cl)| {
            let mut p = partner(&name, &domain);
            p.spec.tls_negotiation = tls;
            p.spec.sasl_negotiation = sasl;
            p.spec.support_dialback_negotiation = dialback;
            p.spec.connection_limit = cl;
            p
        }).collect();
        let policies = vec![policy("u", json!({"scope": "User", "users": users}))];
        if let Ok(c) = compile(&fed, &partners, &policies) {
            prop_assert!(CompiledPolicy::new(c.document).is_ok());
        }
    }
}
