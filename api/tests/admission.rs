//! Every admission rule of the three CRDs, evaluated locally as the API server would.

use serde_json::{Value, json};
use xmppfed_api::admission::{Admission, Admitted};
use xmppfed_api::v1alpha1::*;
use xmppfed_policy::{Negotiation, NegotiationSettings};

fn admission() -> Admission {
    Admission::new()
}

fn partner(spec: Value) -> Value {
    json!({"apiVersion": "xmppfed.io/v1alpha1", "kind": "XmppAllowedPartner",
           "metadata": {"name": "fabrikam", "namespace": "xmpp"}, "spec": spec})
}

fn federation(spec: Value) -> Value {
    json!({"apiVersion": "xmppfed.io/v1alpha1", "kind": "XmppFederation",
           "metadata": {"name": "contoso", "namespace": "xmpp"}, "spec": spec})
}

fn policy(spec: Value) -> Value {
    json!({"apiVersion": "xmppfed.io/v1alpha1", "kind": "ExternalAccessPolicy",
           "metadata": {"name": "p", "namespace": "xmpp"}, "spec": spec})
}

fn minimal_federation() -> Value {
    json!({
        "domains": ["contoso.com"],
        "tls": {"issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer"}},
        "gateway": {"internalServers": [{"host": "prosody.chat.svc.cluster.local"}]}
    })
}

/// The violations of `object`, as "field: message" strings; empty when admitted.
fn errors(object: &Value) -> Vec<String> {
    match admission().admit(object, None) {
        Ok(_) => vec![],
        Err(v) => v.iter().map(ToString::to_string).collect(),
    }
}

fn assert_rejected(object: &Value, field: &str, needle: &str) {
    let errs = errors(object);
    assert!(
        errs.iter()
            .any(|e| e.starts_with(field) && e.contains(needle)),
        "expected {field}: …{needle}…, got {errs:#?}"
    );
}

#[test]
fn minimal_objects_are_admitted_with_lync_defaults() {
    let Admitted::Federation(f) = admission()
        .admit(&federation(minimal_federation()), None)
        .unwrap()
    else {
        panic!("wrong kind")
    };
    let l = &f.spec.limits;
    assert_eq!(
        (
            l.connection_limit,
            l.partner_connection_limit,
            l.max_stanza_bytes
        ),
        (1000, 20, 262144)
    );
    assert_eq!(
        [
            l.keep_alive_interval,
            l.stream_establishment_timeout,
            l.stream_inactivity_timeout,
            l.subscription_refresh_interval
        ]
        .map(|d| d.as_secs()),
        [300, 60, 600, 28800]
    );
    assert_eq!(
        (
            f.spec.edge.replicas,
            f.spec.edge.srv_priority,
            f.spec.edge.srv_weight
        ),
        (2, 0, 5)
    );
    assert_eq!(
        (f.spec.edge.ports.starttls, f.spec.edge.ports.direct_tls),
        (5269, 5270)
    );
    assert_eq!(f.spec.gateway.internal_link_port, 23456);
    assert!(!f.spec.gateway.log_message_bodies);
    assert_eq!(f.spec.dns.provider, DnsProvider::ExternalDNS);
    assert_eq!(f.spec.unlisted_partners, UnlistedPartners::Deny);
    assert!(!f.spec.tls.include_wildcard && !f.spec.tls.client_auth_usage);

    let Admitted::Partner(p) = admission()
        .admit(&partner(json!({"domain": "fabrikam.com"})), None)
        .unwrap()
    else {
        panic!("wrong kind")
    };
    assert_eq!(
        p.spec.partner_type,
        xmppfed_policy::PartnerType::PublicUnverified
    );
    assert_eq!(
        (p.spec.tls_negotiation, p.spec.sasl_negotiation),
        (Negotiation::Required, Negotiation::Required)
    );
    assert!(p.spec.support_dialback_negotiation && p.spec.enable_keep_alive);

    let Admitted::AccessPolicy(a) = admission()
        .admit(&policy(json!({"scope": "Global"})), None)
        .unwrap()
    else {
        panic!("wrong kind")
    };
    assert!(!a.spec.enable_federation_access && !a.spec.enable_xmpp_access);
}

#[test]
fn every_row_of_the_lync_matrix() {
    for s in NegotiationSettings::all() {
        let object = partner(json!({
            "domain": "fabrikam.com",
            "tlsNegotiation": s.tls.as_str(),
            "saslNegotiation": s.sasl.as_str(),
            "supportDialbackNegotiation": s.dialback,
        }));
        let errs = errors(&object);
        let row = s.matrix_row();
        if [6, 12, 14, 16, 18].contains(&row) {
            assert_eq!(errs.len(), 1, "row {row} must be rejected once: {errs:?}");
            let e = &errs[0];
            assert!(
                e.contains("supportDialbackNegotiation: false"),
                "row {row}: {e}"
            );
            assert!(
                e.contains(&format!("row {row}")) || e.contains("rows"),
                "row {row}: {e}"
            );
            let field = if s.sasl == Negotiation::NotSupported {
                "saslNegotiation"
            } else {
                "tlsNegotiation"
            };
            assert!(e.contains(field), "row {row} must name {field}: {e}");
            assert!(e.starts_with("spec."), "row {row}: field path: {e}");
        } else {
            assert!(
                errs.is_empty(),
                "row {row} is valid in Lync's matrix: {errs:?}"
            );
        }
    }
}

#[test]
fn typed_validate_cel_agrees_for_the_matrix() {
    for s in NegotiationSettings::all() {
        let mut p = XmppAllowedPartner::new(
            "p",
            XmppAllowedPartnerSpec {
                domain: "fabrikam.com".into(),
                additional_domains: vec![],
                description: None,
                partner_type: Default::default(),
                tls_negotiation: s.tls,
                sasl_negotiation: s.sasl,
                support_dialback_negotiation: s.dialback,
                enable_keep_alive: true,
                connection_limit: None,
                proxy_fqdn: None,
            },
        );
        p.metadata.namespace = Some("xmpp".into());
        assert_eq!(
            p.validate_cel().is_ok(),
            s.is_valid(),
            "row {}",
            s.matrix_row()
        );
    }
}

#[test]
fn partner_domain_syntax() {
    for (bad, needle) in [
        ("Fabrikam.com", "must be lower-case"),
        ("fabrikam.com.", "must not end with a dot"),
        ("fab_rikam.com", "must be a DNS name"),
        ("-fabrikam.com", "must be a DNS name"),
        ("fabrikam..com", "must be a DNS name"),
        ("bücher.example", "must be a DNS name"),
    ] {
        let errs = errors(&partner(json!({"domain": bad})));
        assert_eq!(errs.len(), 1, "{bad}: exactly one message: {errs:?}");
        assert!(
            errs[0].starts_with("spec.domain") && errs[0].contains(needle),
            "{bad}: {errs:?}"
        );
    }
    let long = format!("{}.com", vec!["a".repeat(63); 4].join("."));
    assert_rejected(&partner(json!({"domain": long})), "spec.domain", "Too long");
    assert!(errors(&partner(json!({"domain": "xn--bcher-kva.example"}))).is_empty());
    assert_rejected(
        &partner(json!({"domain": "a.com", "additionalDomains": ["B.com"]})),
        "spec.additionalDomains[0]",
        "lower-case",
    );
    assert_rejected(
        &partner(json!({"domain": "a.com", "additionalDomains": ["a.com"]})),
        "spec.additionalDomains",
        "must not repeat domain",
    );
    assert_rejected(
        &partner(json!({"domain": "a.com", "additionalDomains": ["b.com", "b.com"]})),
        "spec.additionalDomains[1]",
        "Duplicate",
    );
}

#[test]
fn partner_domain_is_immutable() {
    let a = admission();
    let old = partner(json!({"domain": "fabrikam.com"}));
    let renamed = partner(json!({"domain": "fabrikam.org"}));
    let errs = a.admit(&renamed, Some(&old)).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].field, "spec.domain");
    assert!(errs[0].message.contains("immutable"));
    // Other fields may change.
    let changed = partner(json!({"domain": "fabrikam.com", "partnerType": "Federated"}));
    assert!(a.admit(&changed, Some(&old)).is_ok());
}

#[test]
fn partner_limits_and_static_route() {
    assert_rejected(
        &partner(json!({"domain": "a.com", "connectionLimit": 0})),
        "spec.connectionLimit",
        "greater than or equal to 1",
    );
    assert_rejected(
        &partner(json!({"domain": "a.com", "partnerType": "Trusted"})),
        "spec.partnerType",
        "supported values: \"Federated\"",
    );
    for good in ["xmpp.fabrikam.com", "xmpp.fabrikam.com:5269", "10.0.0.7:1"] {
        assert!(
            errors(&partner(json!({"domain": "a.com", "proxyFqdn": good}))).is_empty(),
            "{good}"
        );
    }
    for bad in [
        "xmpp.fabrikam.com:0",
        "xmpp.fabrikam.com:65536",
        "XMPP.fabrikam.com",
        "xmpp.fabrikam.com.:5269",
        "host:port",
        "[::1]:5269",
    ] {
        assert_rejected(
            &partner(json!({"domain": "a.com", "proxyFqdn": bad})),
            "spec.proxyFqdn",
            "must be host or host:port",
        );
    }
}

#[test]
fn unknown_fields_and_wrong_types_are_named() {
    assert_rejected(
        &partner(json!({"domain": "a.com", "tlsNegociation": "Optional"})),
        "spec.tlsNegociation",
        "unknown field",
    );
    assert_rejected(
        &partner(json!({"domain": "a.com", "supportDialbackNegotiation": "yes"})),
        "spec.supportDialbackNegotiation",
        "must be of type boolean",
    );
    assert_rejected(&partner(json!({})), "spec.domain", "Required value");
    assert_rejected(
        &json!({"apiVersion": "xmppfed.io/v1", "kind": "XmppAllowedPartner", "metadata": {"name": "x"}, "spec": {"domain": "a.com"}}),
        "apiVersion",
        "v1alpha1",
    );
    let mut p = partner(json!({"domain": "a.com"}));
    p["metadata"]["name"] = json!("Fabrikam");
    assert_rejected(&p, "metadata.name", "RFC 1123");
    p["metadata"]["name"] = json!("fabrikam");
    p["metadata"]["labels"] = json!({"tier": "gold!"});
    assert_rejected(&p, "metadata.labels.tier", "label value");
}

#[test]
fn federation_rules() {
    let ok = federation(minimal_federation());
    assert!(errors(&ok).is_empty(), "{:?}", errors(&ok));

    let mut f = minimal_federation();
    f["domains"] = json!([]);
    assert_rejected(&federation(f), "spec.domains", "at least 1 item");

    let mut f = minimal_federation();
    f["domains"] = json!(["contoso.com", "Contoso.org"]);
    assert_rejected(&federation(f), "spec.domains[1]", "lower-case");

    let mut f = minimal_federation();
    f["tls"] = json!({"issuerRef": {"name": "le"}, "secretName": "edge-tls"});
    assert_rejected(&federation(f), "spec.tls", "exactly one of tls.issuerRef");
    let mut f = minimal_federation();
    f["tls"] = json!({});
    assert_rejected(&federation(f), "spec.tls", "exactly one of tls.issuerRef");

    let mut f = minimal_federation();
    f["gateway"] = json!({"internalServers": []});
    assert_rejected(
        &federation(f),
        "spec.gateway.internalServers",
        "at least 1 item",
    );
    let mut f = minimal_federation();
    f.as_object_mut().unwrap().remove("gateway");
    assert_rejected(&federation(f), "spec.gateway", "Required value");

    for field in ["connectionLimit", "partnerConnectionLimit"] {
        let mut f = minimal_federation();
        f["limits"] = json!({ field: 0 });
        assert_rejected(
            &federation(f),
            &format!("spec.limits.{field}"),
            "greater than or equal to 1",
        );
    }
    let mut f = minimal_federation();
    f["limits"] = json!({"maxStanzaBytes": 9999});
    assert_rejected(&federation(f), "spec.limits.maxStanzaBytes", "10000");

    for bad in ["0s", "500ms", "5", "ten minutes", "-5m"] {
        let mut f = minimal_federation();
        f["limits"] = json!({"keepAliveInterval": bad});
        assert_rejected(
            &federation(f),
            "spec.limits.keepAliveInterval",
            "at least 1s",
        );
    }
    for good in ["1s", "10m", "8h", "1h30m", "90s"] {
        let mut f = minimal_federation();
        f["limits"] = json!({"streamInactivityTimeout": good});
        assert!(errors(&federation(f)).is_empty(), "{good}");
    }

    let mut f = minimal_federation();
    f["edge"] = json!({"ports": {"starttls": 5269, "directTls": 5269}});
    assert_rejected(&federation(f), "spec.edge.ports", "must differ");
    let mut f = minimal_federation();
    f["edge"] = json!({"replicas": 0, "srvWeight": 70000});
    let errs = errors(&federation(f));
    assert!(
        errs.iter().any(|e| e.starts_with("spec.edge.replicas")),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|e| e.starts_with("spec.edge.srvWeight")),
        "{errs:?}"
    );
    let mut f = minimal_federation();
    f["dns"] = json!({"provider": "Route53"});
    assert_rejected(
        &federation(f),
        "spec.dns.provider",
        "\"ExternalDNS\", \"None\"",
    );
}

#[test]
fn access_policy_scope_and_subjects() {
    assert!(
        errors(&policy(
            json!({"scope": "Global", "enableFederationAccess": true, "enableXmppAccess": true})
        ))
        .is_empty()
    );
    assert!(
        errors(&policy(
            json!({"scope": "Domain", "domains": ["contoso.com"]})
        ))
        .is_empty()
    );
    assert!(
        errors(&policy(
            json!({"scope": "User", "users": ["alice@contoso.com", "dev-*@contoso.com"]})
        ))
        .is_empty()
    );

    assert_rejected(
        &policy(json!({"scope": "Global", "users": ["alice@contoso.com"]})),
        "spec.users",
        "only allowed with scope: User",
    );
    assert_rejected(
        &policy(json!({"scope": "Domain", "domains": ["contoso.com"], "users": ["a@contoso.com"]})),
        "spec.users",
        "only allowed with scope: User",
    );
    assert_rejected(
        &policy(json!({"scope": "User"})),
        "spec.users",
        "at least one entry in users",
    );
    assert_rejected(
        &policy(json!({"scope": "User", "users": []})),
        "spec.users",
        "at least one entry in users",
    );
    assert_rejected(
        &policy(json!({"scope": "Global", "domains": ["contoso.com"]})),
        "spec.domains",
        "only allowed with scope: Domain",
    );
    assert_rejected(
        &policy(json!({"scope": "Domain"})),
        "spec.domains",
        "at least one entry in domains",
    );
    assert_rejected(
        &policy(json!({"scope": "Site"})),
        "spec.scope",
        "supported values",
    );
    assert_rejected(&policy(json!({})), "spec.scope", "Required value");

    for (bad, needle) in [
        ("alice", "bare JID"),
        ("alice@contoso.com/phone", "bare JID"),
        ("Alice@contoso.com", "lower-case"),
        ("a b@contoso.com", "bare JID"),
    ] {
        let errs = errors(&policy(json!({"scope": "User", "users": [bad]})));
        assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
        assert!(
            errs[0].starts_with("spec.users[0]") && errs[0].contains(needle),
            "{bad}: {errs:?}"
        );
    }
}
