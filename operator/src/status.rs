//! Pure: what the operator observed → the status it writes. No API calls and no clock (the
//! caller passes `now`), so every rule here is a unit test.
//!
//! The federation's conditions follow kstatus: `Ready` is the summary (True only when the
//! edge serves, the certificate is not failing and every pod runs the current policy),
//! `Progressing` and `Degraded` are the abnormal-true conditions, and every condition carries
//! `observedGeneration`. `lastTransitionTime` moves only when a condition's status changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use std::collections::{BTreeMap, BTreeSet};
use xmppfed_api::findings::{Finding, ObjectRef};
use xmppfed_api::v1alpha1::conditions::*;
use xmppfed_api::v1alpha1::{
    ExternalAccessPolicyStatus, XmppAllowedPartnerStatus, XmppFederationStatus,
};
use xmppfed_policy::Severity;

/// A condition's three states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    True,
    False,
    Unknown,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::True => "True",
            State::False => "False",
            State::Unknown => "Unknown",
        }
    }
}

/// A condition before timestamps: what the rules decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cond {
    pub type_: &'static str,
    pub state: State,
    pub reason: &'static str,
    pub message: String,
}

fn cond(
    type_: &'static str,
    state: State,
    reason: &'static str,
    message: impl Into<String>,
) -> Cond {
    Cond {
        type_,
        state,
        reason,
        message: message.into(),
    }
}

/// Stamps conditions, keeping `lastTransitionTime` of those whose status did not change.
pub fn stamp(
    new: Vec<Cond>,
    previous: &[Condition],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    new.into_iter()
        .map(|c| {
            let since = previous
                .iter()
                .find(|p| p.type_ == c.type_ && p.status == c.state.as_str())
                .map(|p| p.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: c.type_.into(),
                status: c.state.as_str().into(),
                reason: c.reason.into(),
                message: c.message,
                observed_generation: generation,
                last_transition_time: since,
            }
        })
        .collect()
}

/// Whether two condition lists say the same (timestamps aside): no status write when not.
pub fn same_conditions(a: &[Condition], b: &[Condition]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.type_ == y.type_
                && x.status == y.status
                && x.reason == y.reason
                && x.message == y.message
                && x.observed_generation == y.observed_generation
        })
}

/// Where the edge certificate stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateState {
    /// `tls.secretName`: the user's Secret; `exists` says whether it is there.
    UserSecret { name: String, exists: bool },
    /// cert-manager's `Certificate` and its `Ready` condition (None: not reported yet).
    Issued {
        ready: Option<bool>,
        reason: String,
        message: String,
    },
    /// `tls.issuerRef` is set but cert-manager's CRDs are not installed.
    CertManagerNotInstalled,
}

/// Where the DNS records stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsState {
    /// `dns.provider: None`.
    NotManaged,
    /// `dns.provider: ExternalDNS` but external-dns's `DNSEndpoint` CRD is not installed.
    ExternalDnsNotInstalled,
    /// The `DNSEndpoint` is applied; the host records need the load balancer's address.
    Published { host_records: bool },
}

/// Replicas of one workload, from its status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replicas {
    pub desired: i32,
    pub ready: i32,
    pub updated: i32,
}

impl Replicas {
    fn rolled_out(&self) -> bool {
        self.ready >= self.desired && self.updated >= self.desired
    }
}

/// The policy version a running pod reported (None: it did not answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPolicy {
    pub pod: String,
    pub version: Option<String>,
}

/// Everything the federation's status is computed from.
#[derive(Debug, Clone)]
pub struct FederationObservation {
    pub generation: Option<i64>,
    /// The compiled policy's version, or why the federation does not compile.
    pub policy: Result<PolicyOutcome, String>,
    pub certificate: CertificateState,
    pub dns: DnsState,
    pub proxy: Replicas,
    pub gateway: Replicas,
    pub load_balancer: Vec<String>,
    pub pods: Vec<PodPolicy>,
    /// An object the operator could not apply (the reconcile fails and retries).
    pub apply_error: Option<String>,
}

/// A federation that compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyOutcome {
    pub version: String,
    pub partners: usize,
    /// Error findings about objects this federation selects (left out of the policy).
    pub rejected: Vec<String>,
}

/// The federation's status.
pub fn federation_status(
    o: &FederationObservation,
    previous: Option<&XmppFederationStatus>,
    now: &Time,
) -> XmppFederationStatus {
    let previous_conditions = previous.map(|p| p.conditions.as_slice()).unwrap_or(&[]);
    let previous_applied = previous.and_then(|p| p.applied_policy_version.clone());

    let certificate = certificate_condition(&o.certificate);
    let dns = dns_condition(&o.dns, o.load_balancer.is_empty());
    let (policy_applied, applied_version) = match &o.policy {
        Ok(p) => policy_applied(&p.version, &o.pods, previous_applied),
        Err(_) => (
            cond(
                POLICY_APPLIED,
                State::Unknown,
                "InvalidSpec",
                "the federation does not compile; the pods keep their last good policy",
            ),
            previous_applied,
        ),
    };

    let workloads_ready = o.proxy.ready >= 1 && o.gateway.ready >= 1;
    let rolling = !o.proxy.rolled_out() || !o.gateway.rolled_out();

    let ready = if let Err(e) = &o.policy {
        cond(READY, State::False, "InvalidSpec", e.clone())
    } else if let Some(e) = &o.apply_error {
        cond(READY, State::False, "ApplyFailed", e.clone())
    } else if certificate.state == State::False {
        cond(
            READY,
            State::False,
            "CertificateNotReady",
            certificate.message.clone(),
        )
    } else if !workloads_ready {
        cond(
            READY,
            State::False,
            "WaitingForPods",
            format!(
                "ready proxies {}/{}, ready gateways {}/{}",
                o.proxy.ready, o.proxy.desired, o.gateway.ready, o.gateway.desired
            ),
        )
    } else if policy_applied.state != State::True {
        cond(
            READY,
            State::False,
            "PolicyNotApplied",
            policy_applied.message.clone(),
        )
    } else {
        cond(
            READY,
            State::True,
            "Serving",
            format!(
                "{} proxies and {} gateways ready with policy {}",
                o.proxy.ready,
                o.gateway.ready,
                applied_version.as_deref().unwrap_or("")
            ),
        )
    };

    let progressing = if o.policy.is_ok() && rolling {
        cond(
            PROGRESSING,
            State::True,
            "RollingOut",
            format!(
                "proxies {}/{} updated and ready, gateways {}/{}",
                o.proxy.ready.min(o.proxy.updated),
                o.proxy.desired,
                o.gateway.ready.min(o.gateway.updated),
                o.gateway.desired
            ),
        )
    } else if o.policy.is_ok() && policy_applied.state == State::False {
        cond(
            PROGRESSING,
            State::True,
            "PolicyRollingOut",
            policy_applied.message.clone(),
        )
    } else {
        cond(PROGRESSING, State::False, "Complete", "nothing to roll out")
    };

    let degraded = match (&o.policy, &o.apply_error) {
        (Err(e), _) => cond(DEGRADED, State::True, "InvalidSpec", e.clone()),
        (_, Some(e)) => cond(DEGRADED, State::True, "ApplyFailed", e.clone()),
        (Ok(p), None) if !p.rejected.is_empty() => cond(
            DEGRADED,
            State::True,
            "ObjectsRejected",
            format!("left out of the policy: {}", p.rejected.join("; ")),
        ),
        _ if certificate.state == State::False => cond(
            DEGRADED,
            State::True,
            certificate.reason,
            certificate.message.clone(),
        ),
        _ if workloads_ready
            && (o.proxy.ready < o.proxy.desired || o.gateway.ready < o.gateway.desired)
            && !rolling =>
        {
            cond(
                DEGRADED,
                State::True,
                "ReplicasUnavailable",
                "some replicas are not ready",
            )
        }
        _ => cond(DEGRADED, State::False, "AsExpected", "no problems found"),
    };

    let conditions = stamp(
        vec![
            ready,
            progressing,
            degraded,
            certificate,
            dns,
            policy_applied,
        ],
        previous_conditions,
        o.generation,
        now,
    );
    XmppFederationStatus {
        observed_generation: o.generation,
        conditions,
        endpoints: o.load_balancer.clone(),
        partners: o
            .policy
            .as_ref()
            .ok()
            .map(|p| i32::try_from(p.partners).unwrap_or(i32::MAX))
            .or_else(|| previous.and_then(|p| p.partners)),
        policy_version: o
            .policy
            .as_ref()
            .ok()
            .map(|p| p.version.clone())
            .or_else(|| previous.and_then(|p| p.policy_version.clone())),
        applied_policy_version: applied_version,
    }
}

fn certificate_condition(c: &CertificateState) -> Cond {
    match c {
        CertificateState::UserSecret { name, exists: true } => cond(
            CERTIFICATE_READY,
            State::True,
            "UserProvided",
            format!("using Secret {name} (tls.secretName)"),
        ),
        CertificateState::UserSecret {
            name,
            exists: false,
        } => cond(
            CERTIFICATE_READY,
            State::False,
            "SecretNotFound",
            format!("tls.secretName: Secret {name} does not exist in this namespace"),
        ),
        CertificateState::Issued {
            ready: Some(true),
            message,
            ..
        } => cond(CERTIFICATE_READY, State::True, "Issued", message.clone()),
        CertificateState::Issued {
            ready: Some(false),
            message,
            ..
        } => cond(
            CERTIFICATE_READY,
            State::False,
            "NotIssued",
            format!("cert-manager: {message}"),
        ),
        CertificateState::Issued { ready: None, .. } => cond(
            CERTIFICATE_READY,
            State::Unknown,
            "Pending",
            "cert-manager has not reported on the Certificate yet",
        ),
        CertificateState::CertManagerNotInstalled => cond(
            CERTIFICATE_READY,
            State::Unknown,
            "CertManagerNotInstalled",
            "tls.issuerRef is set but cert-manager's CRDs are not installed; install cert-manager or set tls.secretName",
        ),
    }
}

fn dns_condition(d: &DnsState, no_address: bool) -> Cond {
    match d {
        DnsState::NotManaged => cond(
            DNS_PUBLISHED,
            State::Unknown,
            "NotManaged",
            "dns.provider is None: publish the SRV records yourself",
        ),
        DnsState::ExternalDnsNotInstalled => cond(
            DNS_PUBLISHED,
            State::Unknown,
            "ExternalDNSNotInstalled",
            "dns.provider is ExternalDNS but the DNSEndpoint CRD is not installed; install external-dns with the crd source or set dns.provider: None",
        ),
        DnsState::Published { host_records: true } => cond(
            DNS_PUBLISHED,
            State::True,
            "Published",
            "SRV and host records handed to external-dns",
        ),
        DnsState::Published {
            host_records: false,
        } => cond(
            DNS_PUBLISHED,
            State::False,
            if no_address {
                "WaitingForLoadBalancer"
            } else {
                "HostRecordsMissing"
            },
            "SRV records handed to external-dns; the edge host's A/AAAA follow once the load balancer has an address",
        ),
    }
}

/// `PolicyApplied` and the version every reporting pod runs.
fn policy_applied(
    current: &str,
    pods: &[PodPolicy],
    previous: Option<String>,
) -> (Cond, Option<String>) {
    let versions: BTreeSet<&str> = pods.iter().filter_map(|p| p.version.as_deref()).collect();
    let all_answered = pods.iter().all(|p| p.version.is_some());
    let common = (all_answered && versions.len() == 1)
        .then(|| versions.iter().next().map(|v| v.to_string()))
        .flatten();
    let applied = common.clone().or(previous);
    if pods.is_empty() {
        return (
            cond(
                POLICY_APPLIED,
                State::Unknown,
                "NoPods",
                "no running proxy or gateway pod to confirm the policy",
            ),
            applied,
        );
    }
    if common.as_deref() == Some(current) {
        return (
            cond(
                POLICY_APPLIED,
                State::True,
                "AllPodsLoaded",
                format!("{} pod(s) run policy {current}", pods.len()),
            ),
            applied,
        );
    }
    let lagging: Vec<String> = pods
        .iter()
        .filter(|p| p.version.as_deref() != Some(current))
        .take(5)
        .map(|p| match &p.version {
            Some(v) => format!("{} runs {v}", p.pod),
            None => format!("{} did not answer", p.pod),
        })
        .collect();
    (
        cond(
            POLICY_APPLIED,
            State::False,
            "RolloutPending",
            format!("waiting for policy {current}: {}", lagging.join(", ")),
        ),
        applied,
    )
}

/// What the federations of a namespace decided about one partner or access policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Federations whose policy includes the object.
    pub federations: BTreeSet<String>,
    pub errors: Vec<(&'static str, String)>,
    pub warnings: Vec<(&'static str, String)>,
}

/// Verdicts for every object named in `accepted` or `findings`.
pub fn verdicts(
    accepted: &[(String, ObjectRef)],
    findings: &[Finding],
) -> BTreeMap<ObjectRef, Verdict> {
    let mut out: BTreeMap<ObjectRef, Verdict> = BTreeMap::new();
    for (federation, object) in accepted {
        out.entry(object.clone())
            .or_default()
            .federations
            .insert(federation.clone());
    }
    for f in findings {
        let v = out.entry(f.object.clone()).or_default();
        let text = if f.field.is_empty() {
            f.message.clone()
        } else {
            format!("{}: {}", f.field, f.message)
        };
        let list = match f.severity {
            Severity::Error => &mut v.errors,
            Severity::Warning => &mut v.warnings,
        };
        if !list.iter().any(|(_, t)| *t == text) {
            list.push((f.reason, text));
        }
    }
    out
}

fn accepted_condition(v: &Verdict, kind_hint: &str) -> Cond {
    if let Some((reason, _)) = v.errors.first() {
        let all: Vec<&str> = v.errors.iter().map(|(_, t)| t.as_str()).collect();
        return cond(ACCEPTED, State::False, reason, all.join("; "));
    }
    if v.federations.is_empty() {
        return cond(
            ACCEPTED,
            State::False,
            "NotSelected",
            format!("no XmppFederation in this namespace selects this {kind_hint}"),
        );
    }
    let names: Vec<&str> = v.federations.iter().map(String::as_str).collect();
    cond(
        ACCEPTED,
        State::True,
        "InPolicy",
        format!("in the policy of {}", names.join(", ")),
    )
}

/// A partner's status: `Accepted`, and `Warning` for risky negotiation settings.
pub fn partner_status(
    v: &Verdict,
    generation: Option<i64>,
    previous: Option<&XmppAllowedPartnerStatus>,
    now: &Time,
) -> XmppAllowedPartnerStatus {
    let warning = match v.warnings.first() {
        Some((reason, _)) => {
            let all: Vec<&str> = v.warnings.iter().map(|(_, t)| t.as_str()).collect();
            cond(WARNING, State::True, reason, all.join("; "))
        }
        None => cond(WARNING, State::False, "NoRisk", "no risky settings"),
    };
    let previous_conditions = previous.map(|p| p.conditions.as_slice()).unwrap_or(&[]);
    XmppAllowedPartnerStatus {
        observed_generation: generation,
        conditions: stamp(
            vec![accepted_condition(v, "partner"), warning],
            previous_conditions,
            generation,
            now,
        ),
        federations: v.federations.iter().cloned().collect(),
        // Reported by the proxies under their own field manager: server-side apply leaves
        // fields this manager does not send to their owners.
        streams: None,
        last_error: None,
    }
}

/// An access policy's status: `Accepted` (ties, unknown domains and users reported here).
pub fn access_policy_status(
    v: &Verdict,
    generation: Option<i64>,
    previous: Option<&ExternalAccessPolicyStatus>,
    now: &Time,
) -> ExternalAccessPolicyStatus {
    let mut conds = vec![accepted_condition(v, "access policy")];
    if let Some((reason, _)) = v.warnings.first() {
        let all: Vec<&str> = v.warnings.iter().map(|(_, t)| t.as_str()).collect();
        conds.push(cond(WARNING, State::True, reason, all.join("; ")));
    }
    let previous_conditions = previous.map(|p| p.conditions.as_slice()).unwrap_or(&[]);
    ExternalAccessPolicyStatus {
        observed_generation: generation,
        conditions: stamp(conds, previous_conditions, generation, now),
        federations: v.federations.iter().cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).expect("time"))
    }

    fn healthy() -> FederationObservation {
        FederationObservation {
            generation: Some(3),
            policy: Ok(PolicyOutcome {
                version: "v2".into(),
                partners: 4,
                rejected: vec![],
            }),
            certificate: CertificateState::Issued {
                ready: Some(true),
                reason: "Ready".into(),
                message: "Certificate is up to date".into(),
            },
            dns: DnsState::Published { host_records: true },
            proxy: Replicas {
                desired: 2,
                ready: 2,
                updated: 2,
            },
            gateway: Replicas {
                desired: 1,
                ready: 1,
                updated: 1,
            },
            load_balancer: vec!["192.0.2.10".into()],
            pods: vec![
                PodPolicy {
                    pod: "p-0".into(),
                    version: Some("v2".into()),
                },
                PodPolicy {
                    pod: "g-0".into(),
                    version: Some("v2".into()),
                },
            ],
            apply_error: None,
        }
    }

    fn get<'a>(s: &'a XmppFederationStatus, t: &str) -> &'a Condition {
        s.conditions
            .iter()
            .find(|c| c.type_ == t)
            .expect("condition present")
    }

    #[test]
    fn a_healthy_federation_is_ready_and_says_so_with_its_generation() {
        let s = federation_status(&healthy(), None, &at(100));
        let ready = get(&s, READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "Serving")
        );
        assert_eq!(ready.observed_generation, Some(3));
        assert_eq!(get(&s, PROGRESSING).status, "False");
        assert_eq!(get(&s, DEGRADED).status, "False");
        assert_eq!(get(&s, POLICY_APPLIED).status, "True");
        assert_eq!(s.applied_policy_version.as_deref(), Some("v2"));
        assert_eq!(s.policy_version.as_deref(), Some("v2"));
        assert_eq!(s.partners, Some(4));
        assert_eq!(s.observed_generation, Some(3));
    }

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let first = federation_status(&healthy(), None, &at(100));
        let same = federation_status(&healthy(), Some(&first), &at(200));
        assert_eq!(get(&same, READY).last_transition_time, at(100));
        assert!(same_conditions(&first.conditions, &same.conditions));

        let mut o = healthy();
        o.pods[1].version = Some("v1".into());
        let changed = federation_status(&o, Some(&same), &at(300));
        assert_eq!(get(&changed, READY).last_transition_time, at(300));
        assert_eq!(get(&changed, READY).reason, "PolicyNotApplied");
        assert_eq!(
            get(&changed, CERTIFICATE_READY).last_transition_time,
            at(100)
        );
        assert!(!same_conditions(&same.conditions, &changed.conditions));
    }

    #[test]
    fn a_lagging_pod_keeps_the_last_common_version_and_is_named() {
        let first = federation_status(&healthy(), None, &at(1));
        let mut o = healthy();
        o.policy = Ok(PolicyOutcome {
            version: "v3".into(),
            partners: 5,
            rejected: vec![],
        });
        o.pods[0].version = Some("v3".into());
        let s = federation_status(&o, Some(&first), &at(2));
        let applied = get(&s, POLICY_APPLIED);
        assert_eq!(
            (applied.status.as_str(), applied.reason.as_str()),
            ("False", "RolloutPending")
        );
        assert!(
            applied.message.contains("g-0 runs v2"),
            "{}",
            applied.message
        );
        assert_eq!(s.applied_policy_version.as_deref(), Some("v2"));
        assert_eq!(get(&s, PROGRESSING).reason, "PolicyRollingOut");
    }

    #[test]
    fn an_invalid_federation_is_degraded_and_keeps_its_last_policy_version() {
        let first = federation_status(&healthy(), None, &at(1));
        let mut o = healthy();
        o.policy = Err("spec.domains[0]: not a domain".into());
        let s = federation_status(&o, Some(&first), &at(2));
        assert_eq!(get(&s, READY).reason, "InvalidSpec");
        let degraded = get(&s, DEGRADED);
        assert_eq!(degraded.status, "True");
        assert!(degraded.message.contains("spec.domains[0]"));
        assert_eq!(s.policy_version.as_deref(), Some("v2"));
        assert_eq!(s.partners, Some(4));
    }

    #[test]
    fn missing_optional_crds_are_unknown_not_failures() {
        let mut o = healthy();
        o.certificate = CertificateState::CertManagerNotInstalled;
        o.dns = DnsState::ExternalDnsNotInstalled;
        let s = federation_status(&o, None, &at(1));
        let c = get(&s, CERTIFICATE_READY);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("Unknown", "CertManagerNotInstalled")
        );
        assert_eq!(get(&s, DNS_PUBLISHED).reason, "ExternalDNSNotInstalled");
        assert_eq!(
            get(&s, READY).status,
            "True",
            "the edge serves with what it has"
        );
    }

    #[test]
    fn a_missing_user_secret_fails_readiness_and_names_the_field() {
        let mut o = healthy();
        o.certificate = CertificateState::UserSecret {
            name: "edge-tls".into(),
            exists: false,
        };
        let s = federation_status(&o, None, &at(1));
        assert_eq!(get(&s, READY).reason, "CertificateNotReady");
        assert!(
            get(&s, CERTIFICATE_READY)
                .message
                .contains("tls.secretName")
        );
        assert_eq!(get(&s, DEGRADED).reason, "SecretNotFound");
    }

    #[test]
    fn pods_still_starting_are_progressing_not_degraded() {
        let mut o = healthy();
        o.proxy = Replicas {
            desired: 2,
            ready: 0,
            updated: 2,
        };
        o.pods.clear();
        let s = federation_status(&o, None, &at(1));
        assert_eq!(get(&s, READY).reason, "WaitingForPods");
        assert_eq!(get(&s, PROGRESSING).reason, "RollingOut");
        assert_eq!(get(&s, DEGRADED).status, "False");
        assert_eq!(get(&s, POLICY_APPLIED).reason, "NoPods");
    }

    #[test]
    fn dns_waits_for_the_load_balancer() {
        let mut o = healthy();
        o.dns = DnsState::Published {
            host_records: false,
        };
        o.load_balancer.clear();
        let s = federation_status(&o, None, &at(1));
        assert_eq!(get(&s, DNS_PUBLISHED).reason, "WaitingForLoadBalancer");
    }

    fn obj(name: &str) -> ObjectRef {
        ObjectRef {
            kind: "XmppAllowedPartner",
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    #[test]
    fn partner_verdicts_combine_federations_errors_and_warnings() {
        let findings = vec![
            Finding::error(obj("b"), "spec.domain", "DomainConflict", "claimed by a"),
            Finding::warning(
                obj("a"),
                "spec.tlsNegotiation",
                "RiskyNegotiation",
                "TLS optional",
            ),
        ];
        let accepted = vec![("fed".to_string(), obj("a"))];
        let v = verdicts(&accepted, &findings);

        let a = partner_status(&v[&obj("a")], Some(1), None, &at(1));
        assert_eq!(a.federations, vec!["fed".to_string()]);
        assert_eq!(a.conditions[0].reason, "InPolicy");
        assert_eq!(
            (
                a.conditions[1].status.as_str(),
                a.conditions[1].reason.as_str()
            ),
            ("True", "RiskyNegotiation")
        );

        let b = partner_status(&v[&obj("b")], Some(1), None, &at(1));
        assert_eq!(
            (
                b.conditions[0].status.as_str(),
                b.conditions[0].reason.as_str()
            ),
            ("False", "DomainConflict")
        );
        assert!(b.conditions[0].message.starts_with("spec.domain: "));

        let c = partner_status(&Verdict::default(), Some(1), None, &at(1));
        assert_eq!(c.conditions[0].reason, "NotSelected");
    }

    #[test]
    fn partner_status_leaves_what_the_proxies_report_to_them() {
        let previous = XmppAllowedPartnerStatus {
            streams: Some(3),
            last_error: Some("tls failed".into()),
            ..Default::default()
        };
        let s = partner_status(&Verdict::default(), None, Some(&previous), &at(1));
        assert_eq!(
            (s.streams, s.last_error),
            (None, None),
            "not sent, so not taken over"
        );
    }
}
