//! Rules that need several objects: what the operator reports as conditions and what
//! `xmppfed validate` checks among the manifests it was given.

use crate::compile::{compile, namespace_of, negotiation_findings, object_ref, select};
use crate::findings::{Finding, ObjectRef};
use crate::v1alpha1::{ExternalAccessPolicy, XmppAllowedPartner, XmppFederation};
use kube::ResourceExt;
use std::collections::BTreeSet;

/// The objects to check together (typically one namespace, or everything a pipeline renders).
#[derive(Debug, Default, Clone)]
pub struct ObjectSet {
    pub federations: Vec<XmppFederation>,
    pub partners: Vec<XmppAllowedPartner>,
    pub policies: Vec<ExternalAccessPolicy>,
}

/// Every cross-object finding, deduplicated, errors first.
pub fn check(objects: &ObjectSet) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut selected_partners: BTreeSet<ObjectRef> = BTreeSet::new();
    let mut selected_policies: BTreeSet<ObjectRef> = BTreeSet::new();

    for p in &objects.partners {
        findings.extend(negotiation_findings(p));
    }

    for fed in &objects.federations {
        let me = object_ref("XmppFederation", &fed.metadata);
        let ns = namespace_of(&fed.metadata);
        // A selector that does not parse selects nothing; compile() reports it below.
        let partners = select(
            &objects.partners,
            &ns,
            fed.spec.partner_selector.as_ref(),
            "",
        )
        .unwrap_or_default();
        selected_partners.extend(
            partners
                .iter()
                .map(|p| object_ref("XmppAllowedPartner", &p.metadata)),
        );
        let policies = select(
            &objects.policies,
            &ns,
            fed.spec.access_policy_selector.as_ref(),
            "",
        )
        .unwrap_or_default();
        selected_policies.extend(
            policies
                .iter()
                .map(|p| object_ref("ExternalAccessPolicy", &p.metadata)),
        );
        match compile(fed, &objects.partners, &objects.policies) {
            Ok(c) => {
                if c.accepted_partners.is_empty() {
                    findings.push(Finding::warning(
                        me.clone(),
                        "",
                        "NoPartners",
                        "no XmppAllowedPartner is applied: every server will be refused (unlisted partners are denied)",
                    ));
                }
                findings.extend(c.findings);
            }
            Err(e) => findings.push(Finding::error(
                me.clone(),
                e.field,
                "InvalidFederation",
                e.message,
            )),
        }
    }

    let unreferenced = |kind: &'static str, name: String, ns: String| {
        Finding::warning(
            ObjectRef {
                kind,
                namespace: ns.clone(),
                name,
            },
            "",
            "NoFederation",
            format!(
                "no XmppFederation in namespace {ns} selects it (none among the objects checked): it has no effect until one does"
            ),
        )
    };
    for p in &objects.partners {
        let r = object_ref("XmppAllowedPartner", &p.metadata);
        if !selected_partners.contains(&r) {
            findings.push(unreferenced(r.kind, p.name_any(), r.namespace));
        }
    }
    for p in &objects.policies {
        let r = object_ref("ExternalAccessPolicy", &p.metadata);
        if !selected_policies.contains(&r) {
            findings.push(unreferenced(r.kind, p.name_any(), r.namespace));
        }
    }

    let mut seen = BTreeSet::new();
    findings.retain(|f| {
        seen.insert((
            f.object.clone(),
            f.field.clone(),
            f.reason,
            f.message.clone(),
        ))
    });
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.object.cmp(&b.object))
            .then(a.field.cmp(&b.field))
    });
    findings
}
