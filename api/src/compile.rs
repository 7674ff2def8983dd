//! The policy compiler: (`XmppFederation`, its partners, its access policies) → one sealed
//! [`PolicyDocument`], plus the findings the operator turns into conditions.
//!
//! Pure and deterministic: objects are ordered by creation time then name before anything is
//! decided, so the same inputs always give the same document (and the same version hash) and ties
//! always go to the older object. It never panics on objects that skipped admission; what it
//! cannot use it leaves out and reports.

use crate::findings::{Finding, ObjectRef};
use crate::v1alpha1::{AccessScope, ExternalAccessPolicy, XmppAllowedPartner, XmppFederation};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;
use xmppfed_policy::document::*;
use xmppfed_policy::{NegotiationSettings, codec, normalize_domain, wildcard};

/// A federation that cannot be compiled at all.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct CompileError {
    pub field: String,
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> CompileError {
    CompileError {
        field: field.into(),
        message: message.into(),
    }
}

/// The outcome of compiling one federation.
#[derive(Debug, Clone)]
pub struct Compilation {
    /// Sealed: `version` is set.
    pub document: PolicyDocument,
    /// Conflicts, ties, unknown references and risky settings.
    pub findings: Vec<Finding>,
    /// Names of the partners in the document.
    pub accepted_partners: BTreeSet<String>,
    /// Names of the access policies in the document.
    pub accepted_policies: BTreeSet<String>,
}

pub(crate) fn namespace_of(meta: &ObjectMeta) -> String {
    meta.namespace
        .clone()
        .unwrap_or_else(|| "default".to_string())
}

pub(crate) fn object_ref(kind: &'static str, meta: &ObjectMeta) -> ObjectRef {
    ObjectRef {
        kind,
        namespace: namespace_of(meta),
        name: meta.name.clone().unwrap_or_default(),
    }
}

/// Older first, then by name: who wins a tie.
pub(crate) fn precedence_key(meta: &ObjectMeta) -> (Option<String>, String) {
    (
        meta.creation_timestamp.as_ref().map(|t| t.0.to_string()),
        meta.name.clone().unwrap_or_default(),
    )
}

/// Whether `selector` (absent or empty = everything) selects `labels`.
pub fn selects(
    selector: Option<&LabelSelector>,
    labels: &BTreeMap<String, String>,
) -> Result<bool, String> {
    match selector {
        None => Ok(true),
        Some(s) => Selector::try_from(s.clone())
            .map(|sel| sel.matches(labels))
            .map_err(|e| e.to_string()),
    }
}

fn to_u16(v: i32, field: &str) -> Result<u16, CompileError> {
    u16::try_from(v)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| err(field, format!("{v} is not a port number (1-65535)")))
}

fn to_positive_u32(v: i32, field: &str) -> Result<u32, CompileError> {
    u32::try_from(v)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| err(field, format!("{v} must be at least 1")))
}

fn positive_secs(d: &crate::v1alpha1::Duration, field: &str) -> Result<u64, CompileError> {
    match d.as_secs() {
        0 => Err(err(field, "must be at least 1s")),
        s => Ok(s),
    }
}

/// Parse a partner's `proxyFqdn` (`host` or `host:port`).
pub fn parse_host_port(s: &str) -> Result<HostPort, String> {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => {
            let port: u16 = p
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("port {p:?} is not a number from 1 to 65535"))?;
            (h, port)
        }
        None => (s, 5269),
    };
    let host = normalize_domain(host).map_err(|e| e.to_string())?;
    Ok(HostPort { host, port })
}

/// The objects of `namespace` that `selector` picks, in precedence order (older first).
pub(crate) fn select<'a, K: ResourceExt>(
    objects: &'a [K],
    namespace: &str,
    selector: Option<&LabelSelector>,
    field: &str,
) -> Result<Vec<&'a K>, CompileError> {
    let mut picked = Vec::new();
    for o in objects
        .iter()
        .filter(|o| namespace_of(o.meta()) == namespace)
    {
        if selects(selector, o.labels()).map_err(|e| err(field, e))? {
            picked.push(o);
        }
    }
    picked.sort_by_key(|o| precedence_key(o.meta()));
    Ok(picked)
}

pub(crate) fn negotiation_of(p: &XmppAllowedPartner) -> NegotiationSettings {
    let s = &p.spec;
    NegotiationSettings::new(
        s.tls_negotiation,
        s.sasl_negotiation,
        s.support_dialback_negotiation,
    )
}

/// The Lync-matrix findings of a partner's negotiation settings (risky rows, invalid rows).
pub fn negotiation_findings(p: &XmppAllowedPartner) -> Vec<Finding> {
    let me = object_ref("XmppAllowedPartner", &p.metadata);
    negotiation_of(p)
        .findings()
        .into_iter()
        .map(|f| Finding {
            severity: f.severity,
            object: me.clone(),
            field: if f.reason == "DialbackInoperative" {
                "spec.supportDialbackNegotiation".into()
            } else {
                "spec.saslNegotiation".into()
            },
            reason: f.reason,
            message: f.message,
        })
        .collect()
}

/// Compile `federation` with the partners and access policies of its namespace that its
/// selectors pick (others in `partners`/`policies` are ignored).
pub fn compile(
    federation: &XmppFederation,
    partners: &[XmppAllowedPartner],
    policies: &[ExternalAccessPolicy],
) -> Result<Compilation, CompileError> {
    let spec = &federation.spec;
    let namespace = namespace_of(&federation.metadata);
    let mut findings = Vec::new();

    // Served domains, as written (first = default edge host) and as a sorted set.
    let mut served = BTreeSet::new();
    let mut first_domain = None;
    for (i, d) in spec.domains.iter().enumerate() {
        let n = normalize_domain(d.as_str())
            .map_err(|e| err(format!("spec.domains[{i}]"), e.to_string()))?;
        first_domain.get_or_insert_with(|| n.clone());
        served.insert(n);
    }
    let Some(first_domain) = first_domain else {
        return Err(err("spec.domains", "at least one domain is required"));
    };

    let hostname = match &spec.edge.hostname {
        Some(h) => {
            normalize_domain(h.as_str()).map_err(|e| err("spec.edge.hostname", e.to_string()))?
        }
        None => format!("xmpp.{first_domain}"),
    };
    let edge = Edge {
        hostname,
        starttls_port: to_u16(spec.edge.ports.starttls, "spec.edge.ports.starttls")?,
        direct_tls_port: to_u16(spec.edge.ports.direct_tls, "spec.edge.ports.directTls")?,
    };

    let mut internal_servers = Vec::new();
    for (i, s) in spec.gateway.internal_servers.iter().enumerate() {
        let field = format!("spec.gateway.internalServers[{i}]");
        let domains = if s.domains.is_empty() {
            served.iter().cloned().collect()
        } else {
            let mut ds = BTreeSet::new();
            for (j, d) in s.domains.iter().enumerate() {
                let n = normalize_domain(d.as_str())
                    .map_err(|e| err(format!("{field}.domains[{j}]"), e.to_string()))?;
                if !served.contains(&n) {
                    return Err(err(
                        format!("{field}.domains[{j}]"),
                        format!(
                            "{n} is not one of spec.domains; an internal server can only host served domains"
                        ),
                    ));
                }
                ds.insert(n);
            }
            ds.into_iter().collect()
        };
        internal_servers.push(InternalServer {
            domains,
            host: normalize_domain(s.host.as_str())
                .map_err(|e| err(format!("{field}.host"), e.to_string()))?,
            port: to_u16(s.port, &format!("{field}.port"))?,
            tls: s.tls,
            ca_secret_name: s.ca_secret_name.clone(),
        });
    }
    if internal_servers.is_empty() {
        return Err(err(
            "spec.gateway.internalServers",
            "at least one internal server is required",
        ));
    }

    let l = &spec.limits;
    let limits = Limits {
        connection_limit: to_positive_u32(l.connection_limit, "spec.limits.connectionLimit")?,
        partner_connection_limit: to_positive_u32(
            l.partner_connection_limit,
            "spec.limits.partnerConnectionLimit",
        )?,
        keep_alive_interval_seconds: positive_secs(
            &l.keep_alive_interval,
            "spec.limits.keepAliveInterval",
        )?,
        stream_establishment_timeout_seconds: positive_secs(
            &l.stream_establishment_timeout,
            "spec.limits.streamEstablishmentTimeout",
        )?,
        stream_inactivity_timeout_seconds: positive_secs(
            &l.stream_inactivity_timeout,
            "spec.limits.streamInactivityTimeout",
        )?,
        subscription_refresh_interval_seconds: positive_secs(
            &l.subscription_refresh_interval,
            "spec.limits.subscriptionRefreshInterval",
        )?,
        max_stanza_bytes: to_positive_u32(l.max_stanza_bytes, "spec.limits.maxStanzaBytes")?,
    };

    let (partner_list, accepted_partners) = compile_partners(
        federation,
        &namespace,
        &served,
        limits.partner_connection_limit,
        partners,
        &mut findings,
    )?;
    let (access, accepted_policies) =
        compile_access(federation, &namespace, &served, policies, &mut findings)?;

    let document = PolicyDocument {
        format: FORMAT.to_string(),
        version: String::new(),
        federation: FederationId {
            namespace,
            name: federation.name_any(),
        },
        served_domains: served.into_iter().collect(),
        edge,
        gateway: Gateway {
            internal_link_port: to_u16(
                spec.gateway.internal_link_port,
                "spec.gateway.internalLinkPort",
            )?,
            log_message_bodies: spec.gateway.log_message_bodies,
            internal_servers,
        },
        limits,
        unlisted_partners: UnlistedPartners::Deny,
        partners: partner_list,
        access,
    };
    let document =
        codec::seal(document).map_err(|e| err("", format!("cannot serialise the policy: {e}")))?;
    Ok(Compilation {
        document,
        findings,
        accepted_partners,
        accepted_policies,
    })
}

fn compile_partners(
    federation: &XmppFederation,
    namespace: &str,
    served: &BTreeSet<String>,
    default_limit: u32,
    partners: &[XmppAllowedPartner],
    findings: &mut Vec<Finding>,
) -> Result<(Vec<Partner>, BTreeSet<String>), CompileError> {
    let candidates = select(
        partners,
        namespace,
        federation.spec.partner_selector.as_ref(),
        "spec.partnerSelector",
    )?;

    let mut claimed: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::new();
    let mut accepted = BTreeSet::new();
    let fed_name = federation.name_any();
    'partners: for p in candidates {
        let me = object_ref("XmppAllowedPartner", &p.metadata);
        let name = p.name_any();
        let s = &p.spec;
        let negotiation = negotiation_of(p);
        findings.extend(negotiation_findings(p));
        if !negotiation.is_valid() {
            continue;
        }

        let mut domains = Vec::new();
        let fields = std::iter::once(("spec.domain".to_string(), &s.domain)).chain(
            s.additional_domains
                .iter()
                .enumerate()
                .map(|(i, d)| (format!("spec.additionalDomains[{i}]"), d)),
        );
        for (field, d) in fields {
            let n = match normalize_domain(d.as_str()) {
                Ok(n) => n,
                Err(e) => {
                    findings.push(Finding::error(
                        me.clone(),
                        field,
                        "InvalidDomain",
                        e.to_string(),
                    ));
                    continue 'partners;
                }
            };
            if served.contains(&n) {
                findings.push(Finding::error(
                    me.clone(),
                    field,
                    "DomainConflict",
                    format!("{n} is a domain served by XmppFederation {fed_name} itself, not a partner's"),
                ));
                continue 'partners;
            }
            if let Some(owner) = claimed.get(&n) {
                findings.push(Finding::error(
                    me.clone(),
                    field,
                    "DomainConflict",
                    format!("{n} is already claimed by XmppAllowedPartner {owner}, which is older and takes precedence; this partner is not applied"),
                ));
                continue 'partners;
            }
            if !domains.contains(&n) {
                domains.push(n);
            }
        }
        let proxy = match &s.proxy_fqdn {
            None => None,
            Some(v) => match parse_host_port(v) {
                Ok(hp) => Some(hp),
                Err(e) => {
                    findings.push(Finding::error(
                        me.clone(),
                        "spec.proxyFqdn",
                        "InvalidProxyFqdn",
                        e,
                    ));
                    continue;
                }
            },
        };
        let connection_limit = match s.connection_limit {
            None => default_limit,
            Some(n) => match u32::try_from(n) {
                Ok(n) if n > 0 => n,
                _ => {
                    findings.push(Finding::error(
                        me.clone(),
                        "spec.connectionLimit",
                        "InvalidLimit",
                        "must be at least 1",
                    ));
                    continue;
                }
            },
        };
        for d in &domains {
            claimed.insert(d.clone(), name.clone());
        }
        let mut domains = domains.into_iter();
        let Some(primary) = domains.next() else {
            continue;
        };
        let mut additional: Vec<String> = domains.collect();
        additional.sort();
        out.push(Partner {
            name: name.clone(),
            domain: primary,
            additional_domains: additional,
            partner_type: s.partner_type,
            tls: s.tls_negotiation,
            sasl: s.sasl_negotiation,
            dialback: s.support_dialback_negotiation,
            keep_alive: s.enable_keep_alive,
            connection_limit,
            proxy,
        });
        accepted.insert(name);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((out, accepted))
}

fn compile_access(
    federation: &XmppFederation,
    namespace: &str,
    served: &BTreeSet<String>,
    policies: &[ExternalAccessPolicy],
    findings: &mut Vec<Finding>,
) -> Result<(AccessTable, BTreeSet<String>), CompileError> {
    let candidates = select(
        policies,
        namespace,
        federation.spec.access_policy_selector.as_ref(),
        "spec.accessPolicySelector",
    )?;

    // Decide per scope first (older wins), then number the rules by policy name.
    let mut global: Option<String> = None;
    let mut domains: BTreeMap<String, String> = BTreeMap::new();
    let mut users: BTreeMap<String, String> = BTreeMap::new();
    // pattern → (precedence rank, policy)
    let mut patterns: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut accepted = BTreeSet::new();

    for (rank, p) in candidates.iter().enumerate() {
        let me = object_ref("ExternalAccessPolicy", &p.metadata);
        let name = p.name_any();
        let s = &p.spec;
        if s.enable_xmpp_access && !s.enable_federation_access {
            findings.push(Finding::warning(
                me.clone(),
                "spec.enableXmppAccess",
                "XmppAccessWithoutFederation",
                "enableXmppAccess has no effect while enableFederationAccess is false: XMPP access needs both",
            ));
        }
        let mut used = false;
        match s.scope {
            AccessScope::Global => {
                if let Some(winner) = &global {
                    findings.push(Finding::error(
                        me.clone(),
                        "spec.scope",
                        "DuplicateGlobalPolicy",
                        format!("XmppFederation {} already has the Global policy {winner} (older); only one Global policy applies, this one is ignored", federation.name_any()),
                    ));
                } else {
                    global = Some(name.clone());
                    used = true;
                }
            }
            AccessScope::Domain => {
                for (i, d) in s.domains.iter().flatten().enumerate() {
                    let field = format!("spec.domains[{i}]");
                    let n = match normalize_domain(d.as_str()) {
                        Ok(n) if served.contains(&n) => n,
                        Ok(n) => {
                            findings.push(Finding::warning(
                                me.clone(),
                                field,
                                "UnknownDomain",
                                format!("{n} is not served by XmppFederation {}; this entry has no effect there", federation.name_any()),
                            ));
                            continue;
                        }
                        Err(e) => {
                            findings.push(Finding::error(
                                me.clone(),
                                field,
                                "InvalidDomain",
                                e.to_string(),
                            ));
                            continue;
                        }
                    };
                    match domains.get(&n) {
                        Some(winner) if winner != &name => findings.push(Finding::warning(
                            me.clone(),
                            field,
                            "Tie",
                            format!("domain {n} is also assigned by policy {winner}, which is older and takes precedence"),
                        )),
                        _ => {
                            domains.insert(n, name.clone());
                            used = true;
                        }
                    }
                }
            }
            AccessScope::User => {
                for (i, u) in s.users.iter().flatten().enumerate() {
                    let field = format!("spec.users[{i}]");
                    let entry = u.as_str().to_lowercase();
                    let Some((_, domain)) = entry.rsplit_once('@') else {
                        findings.push(Finding::error(
                            me.clone(),
                            field,
                            "InvalidUser",
                            "must be local@domain",
                        ));
                        continue;
                    };
                    if !wildcard::is_pattern(domain) && !served.contains(domain) {
                        findings.push(Finding::warning(
                            me.clone(),
                            field.clone(),
                            "UnknownDomain",
                            format!("{domain} is not served by XmppFederation {}; {entry} can never be a local user there", federation.name_any()),
                        ));
                    }
                    let (table_winner, is_pattern) = if wildcard::is_pattern(&entry) {
                        (patterns.get(&entry).map(|(_, w)| w.clone()), true)
                    } else {
                        (users.get(&entry).cloned(), false)
                    };
                    match table_winner {
                        Some(winner) if winner != name => findings.push(Finding::warning(
                            me.clone(),
                            field,
                            "Tie",
                            format!("{entry} is also assigned by policy {winner}, which is older and takes precedence"),
                        )),
                        Some(_) => {}
                        None => {
                            if is_pattern {
                                patterns.insert(entry, (rank, name.clone()));
                            } else {
                                users.insert(entry, name.clone());
                            }
                            used = true;
                        }
                    }
                }
            }
        }
        if used {
            accepted.insert(name);
        }
    }

    let rules: Vec<AccessRule> = candidates
        .iter()
        .filter(|p| accepted.contains(&p.name_any()))
        .map(|p| {
            let rule = AccessRule {
                policy: p.name_any(),
                federation_access: p.spec.enable_federation_access,
                xmpp_access: p.spec.enable_xmpp_access,
            };
            (rule.policy.clone(), rule)
        })
        // Keyed by name: sorted and unique.
        .collect::<BTreeMap<_, _>>()
        .into_values()
        .collect();
    let index: BTreeMap<&str, u32> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| (r.policy.as_str(), i as u32))
        .collect();
    let idx = |name: &String| index.get(name.as_str()).copied();

    let mut ordered_patterns: Vec<(String, usize, String)> = patterns
        .into_iter()
        .map(|(pat, (rank, policy))| (pat, rank, policy))
        .collect();
    // Most specific first; among equals the older policy, then the pattern text.
    ordered_patterns.sort_by(|a, b| {
        wildcard::specificity(&b.0)
            .cmp(&wildcard::specificity(&a.0))
            .then(a.1.cmp(&b.1))
            .then(a.0.cmp(&b.0))
    });

    let table = AccessTable {
        global: global.as_ref().and_then(idx),
        domains: domains
            .iter()
            .filter_map(|(d, p)| Some((d.clone(), idx(p)?)))
            .collect(),
        users: users
            .iter()
            .filter_map(|(u, p)| Some((u.clone(), idx(p)?)))
            .collect(),
        user_patterns: ordered_patterns
            .iter()
            .filter_map(|(pattern, _, p)| {
                Some(UserPattern {
                    pattern: pattern.clone(),
                    rule: idx(p)?,
                })
            })
            .collect(),
        rules,
    };
    Ok((table, accepted))
}
