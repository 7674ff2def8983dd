//! `xmppfed probe --policy <path> <domain>`: which partner entry of a policy applies to a
//! domain and what its settings mean — without touching the network.
//!
//! `<path>` is either the CR YAML users `kubectl apply` (a file or a directory, read and
//! compiled exactly as `xmppfed validate -f` / `up -f` do), or a compiled policy document
//! (`policy.json`, or gzip-compressed `policy.json.gz`, as the operator writes it into its
//! ConfigMap), recognised by its `format` field or gzip magic. Partner domains are exact: the
//! API has no wildcard partner domains, so a lookup is [`CompiledPolicy::partner_for`] of the
//! normalised domain, matching a partner's `domain` or one of its `additionalDomains`. Near
//! misses (a subdomain of a partner, a partner object the federation does not apply) are notes.

use crate::manifests::{Compiled, compile_sources, read_sources};
use crate::probe::domain_arg;
use anyhow::{Context, Result, anyhow};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use xmppfed_policy::{AuthMethod, CompiledPolicy, Negotiation, PartnerType, Severity};

/// What `xmppfed probe --policy` was asked.
#[derive(Debug, Clone)]
pub struct ExplainOptions {
    pub policy: PathBuf,
    pub domain: String,
    pub from: Option<String>,
    /// Which XmppFederation of the manifests (needed when there are several).
    pub federation: Option<String>,
}

/// What would happen to the domain's streams.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// An allowed partner entry applies.
    Partner,
    /// Not a partner: refused with `<policy-violation/>`.
    Refused,
    /// One of the federation's own domains.
    Local,
}

/// Where the policy came from.
#[derive(Serialize, Debug, Clone)]
pub struct PolicyInfo {
    pub path: String,
    /// `manifests` or `policy-document`.
    pub kind: &'static str,
    /// `namespace/name` of the XmppFederation.
    pub federation: String,
    pub version: String,
    pub served_domains: Vec<String>,
}

/// The partner entry that applies, with what its settings mean.
#[derive(Serialize, Debug, Clone)]
pub struct PartnerInfo {
    /// Name of the `XmppAllowedPartner`.
    pub name: String,
    /// `domain` or `additionalDomains`.
    pub matched_by: &'static str,
    pub domains: Vec<String>,
    pub partner_type: String,
    pub partner_type_means: String,
    pub tls_negotiation: String,
    pub sasl_negotiation: String,
    pub support_dialback_negotiation: bool,
    /// Row of Lync's negotiation matrix.
    pub matrix_row: u8,
    /// Authentication methods allowed, strongest first.
    pub authentication: Vec<String>,
    pub authentication_means: String,
    /// Risky combinations of the settings.
    pub warnings: Vec<String>,
    pub keep_alive: bool,
    pub keep_alive_means: String,
    pub route: String,
    pub connection_limit: u32,
    pub connection_limit_means: String,
}

/// The answer of `xmppfed probe --policy`.
#[derive(Serialize, Debug, Clone)]
pub struct Explanation {
    pub domain: String,
    pub from: Option<String>,
    pub policy: PolicyInfo,
    pub verdict: Verdict,
    pub summary: String,
    pub partner: Option<PartnerInfo>,
    pub notes: Vec<String>,
}

impl Explanation {
    /// 0 when a partner entry applies; 1 when the domain would be refused or is our own.
    pub fn exit_code(&self) -> u8 {
        match self.verdict {
            Verdict::Partner => 0,
            Verdict::Refused | Verdict::Local => 1,
        }
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let p = &self.policy;
        let _ = writeln!(
            out,
            "policy {} ({}): federation {}, version {}",
            p.path, p.kind, p.federation, p.version
        );
        let _ = writeln!(out, "{}", self.summary);
        if let Some(partner) = &self.partner {
            let rows = [
                ("domains", partner.domains.join(", ")),
                (
                    "partner type",
                    format!("{}: {}", partner.partner_type, partner.partner_type_means),
                ),
                (
                    "negotiation",
                    format!(
                        "tlsNegotiation {}, saslNegotiation {}, supportDialbackNegotiation {} (Lync matrix row {})",
                        partner.tls_negotiation,
                        partner.sasl_negotiation,
                        partner.support_dialback_negotiation,
                        partner.matrix_row
                    ),
                ),
                (
                    "authentication",
                    format!(
                        "{}: {}",
                        partner.authentication.join(", "),
                        partner.authentication_means
                    ),
                ),
                (
                    "keepalive",
                    format!(
                        "{}: {}",
                        if partner.keep_alive { "on" } else { "off" },
                        partner.keep_alive_means
                    ),
                ),
                ("route", partner.route.clone()),
                (
                    "connections",
                    format!(
                        "{}: {}",
                        partner.connection_limit, partner.connection_limit_means
                    ),
                ),
            ];
            for (label, value) in rows {
                let _ = writeln!(out, "  {label:<15} {value}");
            }
            for w in &partner.warnings {
                let _ = writeln!(out, "  warning: {w}");
            }
        }
        for n in &self.notes {
            let _ = writeln!(out, "  note: {n}");
        }
        out
    }
}

/// Loads the policy at `opts.policy` and explains `opts.domain` under it. `Err` is bad input.
pub fn explain(opts: &ExplainOptions) -> Result<Explanation> {
    let domain = domain_arg(&opts.domain, "the domain")?;
    let from = opts
        .from
        .as_deref()
        .map(|f| domain_arg(f, "--from"))
        .transpose()?;
    let path = opts.policy.display().to_string();
    let (policy, kind, manifests) = load(&opts.policy, opts.federation.as_deref())?;
    let doc = policy.document();
    let info = PolicyInfo {
        path,
        kind,
        federation: format!("{}/{}", doc.federation.namespace, doc.federation.name),
        version: doc.version.clone(),
        served_domains: doc.served_domains.clone(),
    };
    let mut explanation = explain_compiled(&policy, info, &domain, from.as_deref());
    if let Some(m) = manifests {
        explanation
            .notes
            .extend(manifest_notes(&m, &policy, &domain));
    }
    Ok(explanation)
}

/// A compiled policy document, or manifests compiled now.
fn load(
    path: &Path,
    federation: Option<&str>,
) -> Result<(CompiledPolicy, &'static str, Option<Compiled>)> {
    if !path.is_dir() {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let is_document = bytes.starts_with(&[0x1f, 0x8b])
            || serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .is_some_and(|v| v.get("format").is_some());
        if is_document {
            if federation.is_some() {
                anyhow::bail!(
                    "--federation chooses among manifests; {} is a compiled policy document of one federation",
                    path.display()
                );
            }
            let policy = xmppfed_policy::decode_bytes(&bytes)
                .with_context(|| format!("{} is not a usable policy document", path.display()))?;
            return Ok((policy, "policy-document", None));
        }
    }
    let sources = read_sources(&[path.to_path_buf()])?;
    let compiled = compile_sources(&sources, federation)
        .map_err(|lines| anyhow!("the manifests have errors:\n{}", lines.join("\n")))?;
    let policy = CompiledPolicy::new(compiled.compilation.document.clone())
        .map_err(|e| anyhow!("the compiled policy is refused: {e}"))?;
    Ok((policy, "manifests", Some(compiled)))
}

/// The explanation of `domain` (normalised) under `policy`. Pure.
pub fn explain_compiled(
    policy: &CompiledPolicy,
    info: PolicyInfo,
    domain: &str,
    from: Option<&str>,
) -> Explanation {
    let doc = policy.document();
    let mut notes = Vec::new();
    if let Some(f) = from {
        notes.push(if policy.serves(f) {
            format!("{f} (--from) is one of this federation's domains")
        } else {
            format!(
                "{f} (--from) is not one of this federation's domains ({}): an edge with this policy does not speak for it",
                doc.served_domains.join(", ")
            )
        });
    }
    let (verdict, summary, partner) = if policy.serves(domain) {
        let server = doc
            .gateway
            .internal_servers
            .iter()
            .find(|s| s.domains.iter().any(|d| d == domain))
            .map(|s| format!(" (internal server {}:{}, TLS {})", s.host, s.port, s.tls))
            .unwrap_or_default();
        (
            Verdict::Local,
            format!(
                "{domain}: served by this federation itself{server}, not a partner; a stream claiming to come from {domain} is refused with <policy-violation/>"
            ),
            None,
        )
    } else if let Some(p) = policy.partner_for(domain) {
        let matched_by = if p.domain == domain {
            "domain"
        } else {
            "additionalDomains"
        };
        let how = if matched_by == "domain" {
            "its primary domain"
        } else {
            "one of its additionalDomains"
        };
        let n = p.negotiation();
        let methods = n.allowed_methods();
        let means: Vec<String> = methods.iter().map(|m| method_means(*m, domain)).collect();
        let warnings = n
            .findings()
            .into_iter()
            .filter(|f| f.severity == Severity::Warning)
            .map(|f| f.message)
            .collect();
        let limits = &doc.limits;
        let info = PartnerInfo {
            name: p.name.clone(),
            matched_by,
            domains: p.domains().map(str::to_string).collect(),
            partner_type: p.partner_type.to_string(),
            partner_type_means: partner_type_means(p.partner_type).to_string(),
            tls_negotiation: p.tls.to_string(),
            sasl_negotiation: p.sasl.to_string(),
            support_dialback_negotiation: p.dialback,
            matrix_row: n.matrix_row(),
            authentication: methods.iter().map(|m| m.as_str().to_string()).collect(),
            authentication_means: format!(
                "{}; {}. We authenticate to {domain} the same way, strongest first",
                tls_means(p.tls),
                means.join("; otherwise ")
            ),
            warnings,
            keep_alive: p.keep_alive,
            keep_alive_means: if p.keep_alive {
                format!(
                    "our streams to {domain} send a whitespace keepalive every {} s and stay open",
                    limits.keep_alive_interval_seconds
                )
            } else {
                format!(
                    "our streams to {domain} close after {} s without traffic",
                    limits.stream_inactivity_timeout_seconds
                )
            },
            route: match &p.proxy {
                Some(hp) => format!(
                    "static route {}:{} (proxyFqdn): no SRV lookup, STARTTLS",
                    hp.host, hp.port
                ),
                None => format!(
                    "SRV _xmpps-server._tcp.{domain} (direct TLS) and _xmpp-server._tcp.{domain} (STARTTLS), A/AAAA on 5269 when neither exists"
                ),
            },
            connection_limit: p.connection_limit,
            connection_limit_means: format!(
                "simultaneous inbound streams from this partner (more are refused with <conflict/>); all partners together: {}",
                limits.connection_limit
            ),
        };
        (
            Verdict::Partner,
            format!("{domain}: allowed partner {:?} ({how})", p.name),
            Some(info),
        )
    } else {
        (
            Verdict::Refused,
            format!(
                "{domain}: not an allowed partner; its streams are refused with <policy-violation/> (\"{domain} is not an allowed partner of this federation\"), and stanzas local users send to it bounce with <not-allowed/> (unlistedPartners: Deny)"
            ),
            None,
        )
    };
    if verdict != Verdict::Partner {
        notes.extend(near_misses(policy, domain));
    }
    Explanation {
        domain: domain.to_string(),
        from: from.map(str::to_string),
        policy: info,
        verdict,
        summary,
        partner,
        notes,
    }
}

/// Partners whose domains are parents or children of `domain`.
fn near_misses(policy: &CompiledPolicy, domain: &str) -> Vec<String> {
    let mut notes = Vec::new();
    let mut parent = domain;
    while let Some((_, rest)) = parent.split_once('.') {
        if !rest.contains('.') {
            break;
        }
        if let Some(p) = policy.partner_for(rest) {
            notes.push(format!(
                "{domain} is a subdomain of {rest} (partner {:?}), but subdomains are separate XMPP domains (MUC, upload, pubsub services): add {domain} to that partner's spec.additionalDomains if it should federate",
                p.name
            ));
            break;
        }
        parent = rest;
    }
    let suffix = format!(".{domain}");
    for p in &policy.document().partners {
        for d in p.domains().filter(|d| d.ends_with(&suffix)) {
            notes.push(format!(
                "partner {:?} lists {d}, a subdomain of {domain}; the parent domain itself is not listed",
                p.name
            ));
        }
    }
    notes
}

/// Partner objects in the manifests that list `domain` but are not in the policy.
fn manifest_notes(m: &Compiled, policy: &CompiledPolicy, domain: &str) -> Vec<String> {
    let applied = policy.partner_for(domain).map(|p| p.name.as_str());
    let fed = &policy.document().federation;
    m.partners
        .iter()
        .filter(|p| {
            std::iter::once(&p.spec.domain)
                .chain(&p.spec.additional_domains)
                .any(|d| d.as_str().eq_ignore_ascii_case(domain))
        })
        .filter(|p| {
            let ns = p.metadata.namespace.as_deref().unwrap_or("default");
            applied != p.metadata.name.as_deref() || ns != fed.namespace
        })
        .map(|p| {
            let name = format!(
                "{}/{}",
                p.metadata.namespace.as_deref().unwrap_or("default"),
                p.metadata.name.as_deref().unwrap_or("?")
            );
            let why: Vec<String> = m
                .compilation
                .findings
                .iter()
                .filter(|f| {
                    f.object.kind == "XmppAllowedPartner"
                        && format!("{}/{}", f.object.namespace, f.object.name) == name
                })
                .map(|f| format!("{}: {}", f.field, f.message))
                .collect();
            format!(
                "XmppAllowedPartner {name} lists {domain} but federation {}/{} does not apply it{}",
                fed.namespace,
                fed.name,
                if why.is_empty() {
                    " (another namespace, or not selected by spec.partnerSelector)".to_string()
                } else {
                    format!(": {}", why.join("; "))
                }
            )
        })
        .collect()
}

fn partner_type_means(t: PartnerType) -> &'static str {
    match t {
        PartnerType::Federated => {
            "partner users may subscribe and write to local users without prior authorisation, and see status notes"
        }
        PartnerType::PublicVerified => {
            "partner users may subscribe and write without prior authorisation; status notes are never sent"
        }
        PartnerType::PublicUnverified => {
            "a partner user reaches a local user only after that local user wrote first; no status notes"
        }
    }
}

fn tls_means(tls: Negotiation) -> &'static str {
    match tls {
        Negotiation::Required => "TLS is required",
        Negotiation::Optional => "TLS when offered",
        Negotiation::NotSupported => "TLS is never used",
    }
}

fn method_means(m: AuthMethod, domain: &str) -> String {
    match m {
        AuthMethod::SaslOverTls => format!(
            "SASL EXTERNAL: {domain} proves itself with a certificate naming it, from a CA the edge trusts"
        ),
        AuthMethod::TlsDialback => format!(
            "dialback inside TLS: the edge checks {domain}'s key with {domain}'s authoritative server (found through its SRV records)"
        ),
        AuthMethod::TcpDialback => {
            format!("dialback without TLS: {domain}'s stanzas travel unencrypted")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn examples() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
    }

    fn explain_examples(domain: &str) -> Explanation {
        explain(&ExplainOptions {
            policy: examples(),
            domain: domain.into(),
            from: None,
            federation: None,
        })
        .expect("the examples compile")
    }

    #[test]
    fn a_listed_partner_with_its_settings() {
        let e = explain_examples("fabrikam.com");
        assert_eq!(e.verdict, Verdict::Partner);
        assert_eq!(e.exit_code(), 0);
        let p = e.partner.as_ref().expect("partner");
        assert_eq!((p.name.as_str(), p.matched_by), ("fabrikam", "domain"));
        assert_eq!(p.matrix_row, 2);
        assert_eq!(p.authentication, vec!["SASL over TLS".to_string()]);
        assert_eq!(p.connection_limit, 20);
        assert!(
            p.route.starts_with("SRV _xmpps-server._tcp.fabrikam.com"),
            "{}",
            p.route
        );
        assert_eq!(e.policy.kind, "manifests");
        assert_eq!(e.policy.federation, "xmpp/contoso");
    }

    #[test]
    fn additional_domains_and_static_routes() {
        let e = explain_examples("northwindtraders.example");
        let p = e.partner.as_ref().expect("partner");
        assert_eq!(
            (p.name.as_str(), p.matched_by),
            ("northwind", "additionalDomains")
        );
        assert!(
            p.route.contains("xmpp-gw.northwind.example:5269"),
            "{}",
            p.route
        );
        let legacy = explain_examples("Adatum.Example");
        let p = legacy.partner.as_ref().expect("partner");
        assert_eq!(legacy.domain, "adatum.example");
        assert!(!p.keep_alive);
        assert!(p.authentication.contains(&"TCP Dialback".to_string()));
    }

    #[test]
    fn unlisted_subdomain_and_local_domains_are_refused_with_reasons() {
        let e = explain_examples("conference.fabrikam.com");
        assert_eq!((e.verdict, e.exit_code()), (Verdict::Refused, 1));
        assert!(e.summary.contains("<policy-violation/>"), "{}", e.summary);
        assert!(
            e.notes
                .iter()
                .any(|n| n.contains("subdomain of fabrikam.com")),
            "{:?}",
            e.notes
        );
        let local = explain_examples("contoso.com");
        assert_eq!(local.verdict, Verdict::Local);
        assert!(
            local.summary.contains("prosody.chat.svc.cluster.local"),
            "{}",
            local.summary
        );
    }

    #[test]
    fn a_compiled_document_reads_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let sources = read_sources(&[examples()]).unwrap();
        let compiled = compile_sources(&sources, None).unwrap_or_else(|e| panic!("{e:?}"));
        let path = dir.path().join("policy.json");
        std::fs::write(
            &path,
            serde_json::to_vec(&compiled.compilation.document).unwrap(),
        )
        .unwrap();
        let e = explain(&ExplainOptions {
            policy: path,
            domain: "litware.example".into(),
            from: Some("contoso.net".into()),
            federation: None,
        })
        .unwrap();
        assert_eq!(e.policy.kind, "policy-document");
        assert_eq!(e.partner.as_ref().map(|p| p.name.as_str()), Some("litware"));
        assert!(e.notes[0].contains("contoso.net (--from) is one of this federation's domains"));
    }

    #[test]
    fn unreadable_or_invalid_input_is_an_error() {
        let bad = explain(&ExplainOptions {
            policy: "/does/not/exist.yaml".into(),
            domain: "fabrikam.com".into(),
            from: None,
            federation: None,
        });
        assert!(bad.is_err());
        let bad = explain(&ExplainOptions {
            policy: examples(),
            domain: "not a domain".into(),
            from: None,
            federation: None,
        });
        assert!(bad.is_err());
    }
}
