//! [`CompiledPolicy`]: a checked policy document with the indexes the stanza path uses.

use crate::codec::DecodeError;
use crate::document::{AccessRule, Partner, PolicyDocument};
use crate::domain::check_domain_syntax;
use crate::wildcard;
use std::collections::{HashMap, HashSet};

/// A policy document that passed every consistency check, indexed for O(1) lookups.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    doc: PolicyDocument,
    partner_by_domain: HashMap<String, usize>,
    served: HashSet<String>,
    /// User patterns whose domain part is literal, by that domain (indexes into
    /// `doc.access.user_patterns`, ascending).
    patterns_by_domain: HashMap<String, Vec<usize>>,
    /// User patterns with a wildcard in the domain part.
    patterns_any_domain: Vec<usize>,
}

/// Where a user's effective access policy came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessSource {
    /// An exact bare JID in a `User` policy.
    User,
    /// A glob pattern in a `User` policy.
    UserPattern,
    /// A `Domain` policy for the user's domain.
    Domain,
    /// The `Global` policy.
    Global,
    /// No policy applies: denied, as Lync's all-false default global policy.
    None,
}

/// The effective access policy of one local user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessDecision<'a> {
    pub rule: Option<&'a AccessRule>,
    pub source: AccessSource,
}

impl AccessDecision<'_> {
    /// Whether the user may exchange stanzas with XMPP partners.
    pub fn allows_xmpp(&self) -> bool {
        self.rule.is_some_and(AccessRule::allows_xmpp)
    }
    /// Name of the deciding policy, if any.
    pub fn policy(&self) -> Option<&str> {
        self.rule.map(|r| r.policy.as_str())
    }
}

fn invalid(msg: impl Into<String>) -> DecodeError {
    DecodeError::Invalid(msg.into())
}

impl CompiledPolicy {
    /// Check `doc` and build its indexes.
    pub fn new(doc: PolicyDocument) -> Result<Self, DecodeError> {
        if doc.served_domains.is_empty() {
            return Err(invalid("servedDomains is empty"));
        }
        let mut served = HashSet::with_capacity(doc.served_domains.len());
        for d in &doc.served_domains {
            check_domain_syntax(d).map_err(|e| invalid(format!("served domain {d:?}: {e}")))?;
            if !served.insert(d.clone()) {
                return Err(invalid(format!("served domain {d:?} is listed twice")));
            }
        }
        let l = &doc.limits;
        for (name, value) in [
            ("connectionLimit", u64::from(l.connection_limit)),
            (
                "partnerConnectionLimit",
                u64::from(l.partner_connection_limit),
            ),
            ("keepAliveIntervalSeconds", l.keep_alive_interval_seconds),
            (
                "streamEstablishmentTimeoutSeconds",
                l.stream_establishment_timeout_seconds,
            ),
            (
                "streamInactivityTimeoutSeconds",
                l.stream_inactivity_timeout_seconds,
            ),
            (
                "subscriptionRefreshIntervalSeconds",
                l.subscription_refresh_interval_seconds,
            ),
            ("maxStanzaBytes", u64::from(l.max_stanza_bytes)),
        ] {
            if value == 0 {
                return Err(invalid(format!("limits.{name} is 0")));
            }
        }
        for s in &doc.gateway.internal_servers {
            if let Some(d) = s.domains.iter().find(|d| !served.contains(*d)) {
                return Err(invalid(format!(
                    "internal server {} hosts {d:?}, which is not served",
                    s.host
                )));
            }
        }

        let mut partner_by_domain = HashMap::with_capacity(doc.partners.len() * 2);
        let mut names = HashSet::with_capacity(doc.partners.len());
        for (i, p) in doc.partners.iter().enumerate() {
            if !names.insert(p.name.as_str()) {
                return Err(invalid(format!("partner {:?} is listed twice", p.name)));
            }
            if p.connection_limit == 0 {
                return Err(invalid(format!(
                    "partner {:?} has connectionLimit 0",
                    p.name
                )));
            }
            if !p.negotiation().is_valid() {
                return Err(invalid(format!(
                    "partner {:?} has no usable authentication method",
                    p.name
                )));
            }
            for d in p.domains() {
                check_domain_syntax(d)
                    .map_err(|e| invalid(format!("partner {:?} domain {d:?}: {e}", p.name)))?;
                if served.contains(d) {
                    return Err(invalid(format!(
                        "partner {:?} claims served domain {d:?}",
                        p.name
                    )));
                }
                if let Some(prev) = partner_by_domain.insert(d.to_string(), i) {
                    return Err(invalid(format!(
                        "domain {d:?} belongs to both partner {:?} and {:?}",
                        doc.partners[prev].name, p.name
                    )));
                }
            }
        }

        let a = &doc.access;
        let rule_ok = |r: u32| (r as usize) < a.rules.len();
        if a.global.is_some_and(|r| !rule_ok(r)) {
            return Err(invalid(
                "access.global refers to a rule that does not exist",
            ));
        }
        for (d, r) in &a.domains {
            if !rule_ok(*r) {
                return Err(invalid(format!(
                    "access rule of domain {d:?} does not exist"
                )));
            }
        }
        for (u, r) in &a.users {
            if !rule_ok(*r) || !u.contains('@') {
                return Err(invalid(format!("access entry for user {u:?} is malformed")));
            }
        }
        let mut patterns_by_domain: HashMap<String, Vec<usize>> = HashMap::new();
        let mut patterns_any_domain = Vec::new();
        for (i, p) in a.user_patterns.iter().enumerate() {
            let Some((_, domain)) = p.pattern.rsplit_once('@') else {
                return Err(invalid(format!("user pattern {:?} has no '@'", p.pattern)));
            };
            if !rule_ok(p.rule) {
                return Err(invalid(format!(
                    "user pattern {:?} refers to a missing rule",
                    p.pattern
                )));
            }
            if wildcard::is_pattern(domain) {
                patterns_any_domain.push(i);
            } else {
                patterns_by_domain
                    .entry(domain.to_string())
                    .or_default()
                    .push(i);
            }
        }

        Ok(Self {
            doc,
            partner_by_domain,
            served,
            patterns_by_domain,
            patterns_any_domain,
        })
    }

    pub fn document(&self) -> &PolicyDocument {
        &self.doc
    }

    pub fn into_document(self) -> PolicyDocument {
        self.doc
    }

    /// The content hash (`sha256:…`).
    pub fn version(&self) -> &str {
        &self.doc.version
    }

    /// The partner owning a normalised domain.
    pub fn partner_for(&self, domain: &str) -> Option<&Partner> {
        self.partner_by_domain
            .get(domain)
            .map(|&i| &self.doc.partners[i])
    }

    /// Whether a normalised domain is one of ours.
    pub fn serves(&self, domain: &str) -> bool {
        self.served.contains(domain)
    }

    /// The effective access policy of a local user, by normalised bare JID:
    /// exact user entry > most specific user pattern > domain > global > none.
    pub fn access_for(&self, bare_jid: &str) -> AccessDecision<'_> {
        let a = &self.doc.access;
        let decision = |r: u32, source| AccessDecision {
            rule: a.rules.get(r as usize),
            source,
        };
        if let Some(&r) = a.users.get(bare_jid) {
            return decision(r, AccessSource::User);
        }
        let domain = bare_jid.rsplit_once('@').map_or(bare_jid, |(_, d)| d);
        let literal = self
            .patterns_by_domain
            .get(domain)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        // Both lists are ascending; the lowest index that matches is the most specific pattern.
        let first_match = |list: &[usize]| {
            list.iter()
                .copied()
                .find(|&i| wildcard::matches(&a.user_patterns[i].pattern, bare_jid))
        };
        let best = match (first_match(literal), first_match(&self.patterns_any_domain)) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        if let Some(i) = best {
            return decision(a.user_patterns[i].rule, AccessSource::UserPattern);
        }
        if let Some(&r) = a.domains.get(domain) {
            return decision(r, AccessSource::Domain);
        }
        if let Some(r) = a.global {
            return decision(r, AccessSource::Global);
        }
        AccessDecision {
            rule: None,
            source: AccessSource::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::seal;
    use crate::codec::tests::sample;
    use crate::document::{AccessRule, AccessTable, UserPattern};

    fn rule(name: &str, fed: bool, xmpp: bool) -> AccessRule {
        AccessRule {
            policy: name.into(),
            federation_access: fed,
            xmpp_access: xmpp,
        }
    }

    fn with_access(access: AccessTable) -> CompiledPolicy {
        let mut doc = sample(2);
        doc.served_domains = vec!["example.com".into(), "example.org".into()];
        doc.access = access;
        CompiledPolicy::new(seal(doc).unwrap()).unwrap()
    }

    #[test]
    fn looks_up_partners_by_every_domain() {
        let p = CompiledPolicy::new(seal(sample(3)).unwrap()).unwrap();
        assert_eq!(
            p.partner_for("partner-00001.example").unwrap().name,
            "partner-00001"
        );
        assert_eq!(
            p.partner_for("chat.partner-00002.example").unwrap().name,
            "partner-00002"
        );
        assert!(p.partner_for("unknown.example").is_none());
        assert!(p.serves("example.com"));
        assert!(!p.serves("partner-00001.example"));
    }

    #[test]
    fn resolves_user_then_pattern_then_domain_then_global() {
        let p = with_access(AccessTable {
            rules: vec![
                rule("global", true, false),
                rule("org", true, true),
                rule("devs", true, true),
                rule("alice", false, false),
                rule("all", true, true),
            ],
            global: Some(0),
            domains: [("example.org".to_string(), 1)].into(),
            users: [("alice@example.com".to_string(), 3)].into(),
            user_patterns: vec![
                UserPattern {
                    pattern: "dev-*@example.com".into(),
                    rule: 2,
                },
                UserPattern {
                    pattern: "*@*.net".into(),
                    rule: 4,
                },
                UserPattern {
                    pattern: "*@example.com".into(),
                    rule: 4,
                },
            ],
        });
        let d = p.access_for("alice@example.com");
        assert_eq!(
            (d.source, d.policy(), d.allows_xmpp()),
            (AccessSource::User, Some("alice"), false)
        );
        let d = p.access_for("dev-bob@example.com");
        assert_eq!(
            (d.source, d.policy()),
            (AccessSource::UserPattern, Some("devs"))
        );
        let d = p.access_for("carol@example.com");
        assert_eq!(
            (d.source, d.policy()),
            (AccessSource::UserPattern, Some("all"))
        );
        let d = p.access_for("dave@example.org");
        assert_eq!(
            (d.source, d.policy(), d.allows_xmpp()),
            (AccessSource::Domain, Some("org"), true)
        );
        let d = p.access_for("erin@sub.example.net");
        assert_eq!(d.source, AccessSource::UserPattern);
        let d = p.access_for("frank@elsewhere.example");
        assert_eq!((d.source, d.allows_xmpp()), (AccessSource::Global, false));
    }

    #[test]
    fn no_policy_means_no_access() {
        let p = with_access(AccessTable::default());
        let d = p.access_for("alice@example.com");
        assert_eq!(d.source, AccessSource::None);
        assert!(!d.allows_xmpp());
    }

    #[test]
    fn xmpp_access_needs_federation_access_too() {
        assert!(!rule("x", false, true).allows_xmpp());
        assert!(!rule("x", true, false).allows_xmpp());
        assert!(rule("x", true, true).allows_xmpp());
    }

    #[test]
    fn inconsistent_documents_are_refused() {
        let mut doc = sample(2);
        doc.partners[1].domain = doc.partners[0].domain.clone();
        let err = CompiledPolicy::new(doc).unwrap_err().to_string();
        assert!(err.contains("belongs to both"), "{err}");

        let mut doc = sample(1);
        doc.partners[0].additional_domains = vec!["example.com".into()];
        let err = CompiledPolicy::new(doc).unwrap_err().to_string();
        assert!(err.contains("claims served domain"), "{err}");

        let mut doc = sample(1);
        doc.limits.max_stanza_bytes = 0;
        assert!(
            CompiledPolicy::new(doc)
                .unwrap_err()
                .to_string()
                .contains("maxStanzaBytes")
        );

        let mut doc = sample(1);
        doc.partners[0].domain = "Partner.Example".into();
        assert!(CompiledPolicy::new(doc).is_err());

        let mut doc = sample(1);
        doc.access.global = Some(7);
        assert!(CompiledPolicy::new(doc).is_err());

        let mut doc = sample(1);
        doc.partners[0].sasl = crate::Negotiation::NotSupported;
        doc.partners[0].dialback = false;
        assert!(
            CompiledPolicy::new(doc)
                .unwrap_err()
                .to_string()
                .contains("no usable authentication")
        );
    }
}
