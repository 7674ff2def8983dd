use super::*;
use crate::devca::{CertSpec, DevCa, Eku};

fn now() -> UnixTime {
    UnixTime::now()
}

fn store(ca: &DevCa) -> TrustStore {
    let mut s = TrustStore::new();
    s.add(&ca.cert_der).expect("CA loads");
    s
}

#[test]
fn dns_id_proves_its_domain_only() {
    let ca = DevCa::new("test CA").unwrap();
    let cert = ca.issue(&CertSpec::for_domain("partner.example")).unwrap();
    let s = store(&ca);
    assert_eq!(
        s.judge(
            std::slice::from_ref(&cert.cert_der),
            "partner.example",
            now()
        ),
        Ok(())
    );
    let wrong = s.judge(&[cert.cert_der], "other.example", now());
    assert!(
        matches!(&wrong, Err(CertProblem::WrongIdentity { presented, .. }) if presented == "DNS:partner.example"),
        "{wrong:?}"
    );
}

#[test]
fn xmpp_addr_proves_the_domain() {
    let ca = DevCa::new("test CA").unwrap();
    let spec = CertSpec {
        xmpp_addr: vec!["chat.example".into()],
        ..CertSpec::default()
    };
    let cert = ca.issue(&spec).unwrap();
    let ids = CertIdentities::from_der(&cert.cert_der).unwrap();
    assert_eq!(ids.xmpp_addr, vec!["chat.example".to_string()]);
    assert_eq!(
        store(&ca).judge(&[cert.cert_der], "chat.example", now()),
        Ok(())
    );
}

#[test]
fn common_name_is_never_an_identity() {
    let ca = DevCa::new("test CA").unwrap();
    let spec = CertSpec {
        dns: vec!["www.example".into()],
        common_name: Some("partner.example".into()),
        ..CertSpec::default()
    };
    let cert = ca.issue(&spec).unwrap();
    assert!(matches!(
        store(&ca).judge(&[cert.cert_der], "partner.example", now()),
        Err(CertProblem::WrongIdentity { .. })
    ));
}

#[test]
fn expired_and_foreign_certificates_are_untrusted() {
    let ca = DevCa::new("test CA").unwrap();
    let other_ca = DevCa::new("other CA").unwrap();
    let expired = ca
        .issue(&CertSpec {
            expired: true,
            ..CertSpec::for_domain("partner.example")
        })
        .unwrap();
    let foreign = other_ca
        .issue(&CertSpec::for_domain("partner.example"))
        .unwrap();
    let s = store(&ca);
    assert_eq!(
        s.judge(&[expired.cert_der], "partner.example", now()),
        Err(CertProblem::Untrusted("it has expired".into()))
    );
    assert_eq!(
        s.judge(&[foreign.cert_der], "partner.example", now()),
        Err(CertProblem::Untrusted(
            "it was not issued by a trusted CA".into()
        ))
    );
    assert_eq!(
        s.judge(&[], "partner.example", now()),
        Err(CertProblem::Missing)
    );
    // An impostor CA with the trusted CA's name: said in the same words.
    let impostor = DevCa::new("test CA")
        .unwrap()
        .issue(&CertSpec::for_domain("partner.example"))
        .unwrap();
    assert!(matches!(
        s.judge(&[impostor.cert_der], "partner.example", now()),
        Err(CertProblem::Untrusted(m)) if m.starts_with("it was not issued by a trusted CA")
    ));
}

#[test]
fn server_auth_only_and_no_eku_certificates_are_accepted() {
    let ca = DevCa::new("test CA").unwrap();
    for eku in [Eku::ServerOnly, Eku::None, Eku::ServerAndClient] {
        let cert = ca
            .issue(&CertSpec {
                eku,
                ..CertSpec::for_domain("partner.example")
            })
            .unwrap();
        assert_eq!(
            store(&ca).judge(&[cert.cert_der], "partner.example", now()),
            Ok(()),
            "{eku:?}"
        );
    }
}

#[test]
fn wildcards_match_exactly_one_leftmost_label() {
    assert!(dns_id_matches("*.example.com", "chat.example.com"));
    assert!(!dns_id_matches("*.example.com", "example.com"));
    assert!(!dns_id_matches("*.example.com", "a.b.example.com"));
    assert!(!dns_id_matches("*.com", "example.com"));
    assert!(!dns_id_matches("c*.example.com", "chat.example.com"));
    assert!(dns_id_matches("example.com", "example.com"));
}

#[test]
fn srv_ids_for_xmpp_server_services_prove_the_domain() {
    let ids = CertIdentities {
        srv: vec![
            ("_xmpp-server".into(), "a.example".into()),
            ("_xmpp-client".into(), "b.example".into()),
        ],
        ..CertIdentities::default()
    };
    assert!(ids.proves("a.example"));
    assert!(
        !ids.proves("b.example"),
        "a client SRV-ID does not prove a server"
    );
}
