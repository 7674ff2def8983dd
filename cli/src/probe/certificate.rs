//! The certificate steps: the remote's chain, expiry, identity and purposes, and a check of
//! our own certificate (`--cert`) before it is used.

use super::Prober;
use super::report::{Status, Step, advice};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use xmppfed_proxy::dns::Target;
use xmppfed_xmpp::identity::{CertFacts, CertProblem};

/// Certificates expiring sooner than this are a warning.
const EXPIRY_WARNING_DAYS: i64 = 14;

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `2026-05-05` for a Unix time.
fn date(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| t.date().to_string())
        .unwrap_or_else(|_| format!("@{unix}"))
}

impl Prober {
    pub(super) fn check_our_certificate(&mut self) {
        let (Some(identity), Some(from)) = (&self.identity, &self.from) else {
            return;
        };
        let started = Instant::now();
        let Some(leaf) = identity.chain.first() else {
            return;
        };
        let facts = match CertFacts::from_der(leaf) {
            Ok(f) => f,
            Err(e) => {
                let step = Step::new(
                    "our-certificate",
                    Some(from.clone()),
                    started,
                    Status::Fail,
                    e.to_string(),
                )
                .because(advice(
                    "the certificate given with --cert cannot be read",
                    "pass a PEM certificate (chain) for your domain",
                ));
                self.push(step);
                return;
            }
        };
        let now = now_unix();
        let mut problems = Vec::new();
        if facts.identities.matching(from).is_none() {
            problems.push(format!(
                "it does not name {from} (it presents {})",
                facts.identities.describe()
            ));
        }
        if facts.not_after < now {
            problems.push(format!("it expired on {}", date(facts.not_after)));
        }
        if facts.not_before > now {
            problems.push(format!("it is not valid before {}", date(facts.not_before)));
        }
        let purposes = match facts.purposes {
            None => "any purpose".to_string(),
            Some(p) if p.client_auth || p.any => "clientAuth".to_string(),
            Some(_) => "no clientAuth (note: some older servers refuse such a client certificate with \"unsupported certificate purpose\"; public CAs stopped issuing clientAuth in 2026)".to_string(),
        };
        let step = if problems.is_empty() {
            let shown = facts
                .identities
                .matching(from)
                .map(|m| m.to_string())
                .unwrap_or_default();
            Step::new(
                "our-certificate",
                Some(from.clone()),
                started,
                Status::Ok,
                format!(
                    "{shown} names {from}; valid until {}; {purposes}",
                    date(facts.not_after)
                ),
            )
        } else {
            Step::new(
                "our-certificate",
                Some(from.clone()),
                started,
                Status::Warn,
                problems.join("; "),
            )
            .because(advice(
                format!("{} will refuse SASL EXTERNAL with this certificate", self.domain),
                format!(
                    "use a current certificate with {from} as subjectAltName DNS name (or SRV-ID _xmpp-server.{from})"
                ),
            ))
        };
        self.push(step);
    }

    pub(super) fn judge_certificate(
        &mut self,
        shown: &str,
        chain: &[rustls_pki_types::CertificateDer<'static>],
        target: &Target,
    ) {
        let d = self.domain.clone();
        let started = Instant::now();
        let t = Some(shown.to_string());
        let Some(leaf) = chain.first() else {
            self.push(
                Step::new(
                    "certificate-chain",
                    t,
                    started,
                    Status::Fail,
                    "no certificate was presented",
                )
                .because(advice(
                    format!("{d}'s server completed TLS without a certificate"),
                    format!("configure a certificate for {d} on its server"),
                )),
            );
            return;
        };
        let facts = match CertFacts::from_der(leaf) {
            Ok(f) => f,
            Err(e) => {
                self.push(
                    Step::new("certificate-chain", t, started, Status::Fail, e.to_string())
                        .because(advice(
                            "the server's certificate cannot be parsed",
                            format!("reissue {d}'s certificate with a standard tool or CA"),
                        )),
                );
                return;
            }
        };
        let now = now_unix();
        let verdict = self.trust.judge(
            chain,
            &d,
            rustls_pki_types::UnixTime::since_unix_epoch(Duration::from_secs(
                u64::try_from(now).unwrap_or(0),
            )),
        );
        let subject = if facts.subject.is_empty() {
            "(empty subject)".to_string()
        } else {
            facts.subject.clone()
        };
        let who = format!("{subject}, issued by {}", facts.issuer);
        let chain_step = match &verdict {
            Ok(()) | Err(CertProblem::WrongIdentity { .. }) => Step::new(
                "certificate-chain",
                t.clone(),
                started,
                Status::Ok,
                format!(
                    "{who}; {} certificate(s) sent, trusted through {}",
                    chain.len(),
                    self.anchors
                ),
            ),
            Err(CertProblem::Untrusted(why)) => {
                let missing_intermediate =
                    chain.len() == 1 && facts.subject != facts.issuer && why.contains("trusted CA");
                let cause = if why.contains("expired") {
                    format!("{d}'s certificate has expired (see certificate-expiry)")
                } else if why.contains("not valid yet") {
                    format!("{d}'s certificate is not valid yet (or this machine's clock is wrong)")
                } else if missing_intermediate {
                    format!(
                        "issued by {}, which is not among {}; the server sent only its own certificate, so if that issuer is an intermediate CA the chain is incomplete",
                        facts.issuer, self.anchors
                    )
                } else {
                    format!(
                        "issued by {}, a CA we do not trust (not among {})",
                        facts.issuer, self.anchors
                    )
                };
                Step::new("certificate-chain", t.clone(), started, Status::Fail, format!("{who}: {why}"))
                    .because(advice(
                        cause,
                        format!(
                            "if it is a private CA you mean to trust, pass its certificate with --ca (xmppfed up: --peer-ca); otherwise {d} must use a certificate from a public CA and send the intermediate certificates with it"
                        ),
                    ))
            }
            Err(other) => Step::new(
                "certificate-chain",
                t.clone(),
                started,
                Status::Fail,
                format!("{who}: {other}"),
            )
            .because(advice(
                "the certificate chain could not be checked",
                format!("reissue {d}'s certificate"),
            )),
        };
        self.push(chain_step);

        // Expiry.
        let days_left = (facts.not_after - now).div_euclid(86_400);
        let until = date(facts.not_after);
        let expiry = if facts.not_before > now {
            Step::new(
                "certificate-expiry",
                t.clone(),
                started,
                Status::Fail,
                format!("not valid before {}", date(facts.not_before)),
            )
            .because(advice(
                "the certificate is not valid yet, or a clock (here or on the server) is wrong",
                "check both clocks (NTP); wait for the validity to start or use the previous certificate",
            ))
        } else if facts.not_after < now {
            Step::new(
                "certificate-expiry",
                t.clone(),
                started,
                Status::Fail,
                format!("expired on {until} ({} days ago)", -days_left),
            )
            .because(advice(
                format!("{d}'s certificate has expired; every server that checks certificates refuses it"),
                format!("renew {d}'s certificate and reload its server (with ACME: check that renewal runs)"),
            ))
        } else if days_left < EXPIRY_WARNING_DAYS {
            Step::new(
                "certificate-expiry",
                t.clone(),
                started,
                Status::Warn,
                format!("expires on {until}, in {days_left} day(s)"),
            )
            .because(advice(
                format!("{d}'s certificate is about to expire; automatic renewal normally runs about 30 days ahead, so it may be failing"),
                format!("renew {d}'s certificate now and reload its server"),
            ))
        } else {
            Step::new(
                "certificate-expiry",
                t.clone(),
                started,
                Status::Ok,
                format!("valid until {until} ({days_left} days left)"),
            )
        };
        self.push(expiry);

        // Identity.
        let identity = match facts.identities.matching(&d) {
            Some(m) => Step::new(
                "certificate-identity",
                t.clone(),
                started,
                Status::Ok,
                format!("{m} matches {d}"),
            ),
            None => {
                let host_hint = if target.host != d
                    && target.host.parse::<std::net::IpAddr>().is_err()
                {
                    format!(
                        " (a certificate for the SRV target host {} alone is not enough: the XMPP domain must be in it)",
                        target.host
                    )
                } else {
                    String::new()
                };
                Step::new(
                    "certificate-identity",
                    t.clone(),
                    started,
                    Status::Fail,
                    format!("presents {}, none of which is {d}", facts.identities.describe()),
                )
                .because(advice(
                    format!(
                        "the certificate does not name {d}: servers accept {d} only as a DNS-ID, an SRV-ID _xmpp-server.{d} or an xmppAddr in subjectAltName (the subject CN is never used; a wildcard covers one label){host_hint}"
                    ),
                    format!(
                        "reissue the certificate with {d} as a subjectAltName DNS name (or SRV-ID _xmpp-server.{d})"
                    ),
                ))
            }
        };
        self.push(identity);

        // Purposes.
        let purpose = match facts.purposes {
            None => Step::new(
                "certificate-purpose",
                t,
                started,
                Status::Ok,
                "no extendedKeyUsage extension: any purpose",
            ),
            Some(p) if p.server_auth || p.any => {
                let detail = if p.client_auth || p.any {
                    "serverAuth and clientAuth".to_string()
                } else {
                    format!(
                        "serverAuth; no clientAuth — fine for streams to {d} (note: public CAs stopped issuing clientAuth in 2026, and some older servers refuse such a certificate when {d}'s server connects to them; xmppfed accepts it)"
                    )
                };
                Step::new("certificate-purpose", t, started, Status::Ok, detail)
            }
            Some(p) => Step::new(
                "certificate-purpose",
                t,
                started,
                Status::Fail,
                format!(
                    "extendedKeyUsage without serverAuth{}",
                    if p.client_auth { " (clientAuth only)" } else { "" }
                ),
            )
            .because(advice(
                format!("servers connecting to {d} check that its certificate may identify a TLS server (serverAuth)"),
                format!("reissue {d}'s certificate with serverAuth in extendedKeyUsage (every public CA includes it)"),
            )),
        };
        self.push(purpose);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Options;
    use xmppfed_xmpp::devca::{CertSpec, DevCa, Eku};

    #[test]
    fn dates_are_iso() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(1_778_000_000), "2026-05-05");
    }

    /// The certificate steps for `spec` issued by `issuer`, judged against `trusted`.
    fn judge(trusted: &DevCa, issuer: &DevCa, spec: &CertSpec) -> Vec<Step> {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, &trusted.cert_pem).unwrap();
        let mut prober = Prober::new(&Options {
            domain: "partner.example".into(),
            from: None,
            ca: vec![ca],
            cert: None,
            key: None,
            dialback_secret: None,
            // Never asked: no step here needs DNS.
            dns_server: Some("127.0.0.1:9".parse().unwrap()),
            timeout: Duration::from_secs(1),
        })
        .unwrap();
        let leaf = issuer.issue(spec).unwrap();
        let target = Target {
            host: "xmpp.partner.example".into(),
            port: 5269,
            direct_tls: false,
        };
        prober.judge_certificate("192.0.2.1:5269 (STARTTLS)", &[leaf.cert_der], &target);
        prober.steps
    }

    fn find<'a>(steps: &'a [Step], name: &str) -> &'a Step {
        steps.iter().find(|s| s.name == name).unwrap()
    }

    #[test]
    fn an_expired_certificate_fails_chain_and_expiry_with_the_date() {
        let ca = DevCa::new("probe CA").unwrap();
        let spec = CertSpec {
            expired: true,
            ..CertSpec::for_domain("partner.example")
        };
        let steps = judge(&ca, &ca, &spec);
        let chain = find(&steps, "certificate-chain");
        assert_eq!(chain.status, Status::Fail);
        assert!(
            chain.cause.as_deref().unwrap().contains("has expired"),
            "{chain:?}"
        );
        let expiry = find(&steps, "certificate-expiry");
        assert_eq!(expiry.status, Status::Fail);
        assert!(
            expiry.detail.starts_with("expired on 2021-01-01"),
            "{expiry:?}"
        );
        // The name is still right: only the dates are wrong.
        assert_eq!(find(&steps, "certificate-identity").status, Status::Ok);
    }

    #[test]
    fn a_foreign_ca_and_a_missing_name_are_told_apart() {
        let ours = DevCa::new("our CA").unwrap();
        let theirs = DevCa::new("their CA").unwrap();
        let steps = judge(&ours, &theirs, &CertSpec::for_domain("partner.example"));
        let chain = find(&steps, "certificate-chain");
        assert_eq!(chain.status, Status::Fail);
        assert!(
            chain.cause.as_deref().unwrap().contains("CN=their CA"),
            "{chain:?}"
        );
        assert!(chain.fix.as_deref().unwrap().contains("--ca"), "{chain:?}");

        let steps = judge(&ours, &ours, &CertSpec::for_domain("xmpp.partner.example"));
        assert_eq!(find(&steps, "certificate-chain").status, Status::Ok);
        let identity = find(&steps, "certificate-identity");
        assert_eq!(identity.status, Status::Fail);
        let cause = identity.cause.as_deref().unwrap();
        assert!(
            cause.contains("SRV target host xmpp.partner.example alone is not enough"),
            "{cause}"
        );
    }

    #[test]
    fn purposes_server_only_is_a_note_and_no_eku_means_any() {
        let ca = DevCa::new("probe CA").unwrap();
        let server_only = CertSpec {
            eku: Eku::ServerOnly,
            ..CertSpec::for_domain("partner.example")
        };
        let steps = judge(&ca, &ca, &server_only);
        let purpose = find(&steps, "certificate-purpose");
        assert_eq!(purpose.status, Status::Ok);
        assert!(purpose.detail.contains("no clientAuth"), "{purpose:?}");
        let none = CertSpec {
            eku: Eku::None,
            ..CertSpec::for_domain("partner.example")
        };
        let steps = judge(&ca, &ca, &none);
        assert_eq!(
            find(&steps, "certificate-purpose").detail,
            "no extendedKeyUsage extension: any purpose"
        );
        assert!(steps.iter().all(|s| s.status == Status::Ok), "{steps:?}");
    }
}
