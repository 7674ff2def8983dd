//! The operator's own RBAC, as code: the ClusterRole it needs (one rule per need, each
//! explained) and the Role for its leader-election Lease. The Helm chart and `e2e/` install
//! exactly these, and a test checks that every request a reconcile makes is granted.

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// One rule and why the operator needs it.
pub struct Need {
    pub why: &'static str,
    pub group: &'static str,
    pub resources: &'static [&'static str],
    pub verbs: &'static [&'static str],
}

/// Objects the operator server-side applies, lists by label (orphans) and deletes. Applying
/// an object that does not exist yet needs `create` as well as `patch`.
const MANAGE: &[&str] = &["get", "list", "watch", "create", "patch", "delete"];

pub const CLUSTER_NEEDS: &[Need] = &[
    Need {
        why: "read the three xmppfed kinds (watched cluster-wide)",
        group: "xmppfed.io",
        resources: &[
            "xmppfederations",
            "xmppallowedpartners",
            "externalaccesspolicies",
        ],
        verbs: &["get", "list", "watch"],
    },
    Need {
        why: "write their status (server-side apply)",
        group: "xmppfed.io",
        resources: &[
            "xmppfederations/status",
            "xmppallowedpartners/status",
            "externalaccesspolicies/status",
        ],
        verbs: &["get", "patch"],
    },
    Need {
        why: "the policy ConfigMap, Services and ServiceAccounts of each federation",
        group: "",
        resources: &["configmaps", "services", "serviceaccounts"],
        verbs: MANAGE,
    },
    Need {
        why: "create the generated dialback and link Secrets once; read the certificate Secrets the pods mount, to roll the pods when a certificate is renewed (by name: no list or watch of Secrets)",
        group: "",
        resources: &["secrets"],
        verbs: &["get", "create"],
    },
    Need {
        why: "find running proxy and gateway pods and ask which policy they loaded",
        group: "",
        resources: &["pods"],
        verbs: &["list"],
    },
    Need {
        why: "GET /policy-version of those pods through the API server",
        group: "",
        resources: &["pods/proxy"],
        verbs: &["get"],
    },
    Need {
        why: "the proxy Deployment and the gateway StatefulSet",
        group: "apps",
        resources: &["deployments", "statefulsets"],
        verbs: MANAGE,
    },
    Need {
        why: "PodDisruptionBudgets of both",
        group: "policy",
        resources: &["poddisruptionbudgets"],
        verbs: MANAGE,
    },
    Need {
        why: "the pods' Roles and RoleBindings (each grants only its policy ConfigMap, which the operator may read itself, so no escalate/bind)",
        group: "rbac.authorization.k8s.io",
        resources: &["roles", "rolebindings"],
        verbs: MANAGE,
    },
    Need {
        why: "each federation's NetworkPolicies (when enabled)",
        group: "networking.k8s.io",
        resources: &["networkpolicies"],
        verbs: MANAGE,
    },
    Need {
        why: "the edge and internal-link certificates and the link CA issuers (when cert-manager is installed)",
        group: "cert-manager.io",
        resources: &["certificates", "issuers"],
        verbs: MANAGE,
    },
    Need {
        why: "SRV and host records (when external-dns's DNSEndpoint CRD is installed)",
        group: "externaldns.k8s.io",
        resources: &["dnsendpoints"],
        verbs: MANAGE,
    },
    Need {
        why: "Events on the federations",
        group: "events.k8s.io",
        resources: &["events"],
        verbs: &["create", "patch"],
    },
];

/// In the operator's own namespace only.
pub const LEADER_ELECTION_NEEDS: &[Need] = &[Need {
    why: "the leader-election Lease",
    group: "coordination.k8s.io",
    resources: &["leases"],
    verbs: &["get", "list", "watch", "create", "update", "patch"],
}];

fn rules(needs: &[Need]) -> Vec<PolicyRule> {
    needs
        .iter()
        .map(|n| PolicyRule {
            api_groups: Some(vec![n.group.into()]),
            resources: Some(n.resources.iter().map(|r| r.to_string()).collect()),
            verbs: n.verbs.iter().map(|v| v.to_string()).collect(),
            ..Default::default()
        })
        .collect()
}

pub fn cluster_role(name: &str) -> ClusterRole {
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        rules: Some(rules(CLUSTER_NEEDS)),
        ..Default::default()
    }
}

pub fn leader_election_role(name: &str, namespace: &str) -> Role {
    Role {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        rules: Some(rules(LEADER_ELECTION_NEEDS)),
    }
}

/// Both roles as one YAML stream (`xmppfed-operator --print-rbac`), each rule preceded by
/// a comment that says why: what the Helm chart's templates are checked against.
pub fn render(cluster_role_name: &str, namespace: &str) -> String {
    fn section(out: &mut String, head: &str, needs: &[Need]) {
        out.push_str(head);
        out.push_str("rules:\n");
        for n in needs {
            let list = |xs: &[&str]| {
                xs.iter()
                    .map(|x| format!("\"{x}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            out.push_str(&format!(
                "  # {}\n  - apiGroups: [\"{}\"]\n    resources: [{}]\n    verbs: [{}]\n",
                n.why,
                n.group,
                list(n.resources),
                list(n.verbs)
            ));
        }
    }
    let mut out = String::new();
    section(
        &mut out,
        &format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {cluster_role_name}\n"
        ),
        CLUSTER_NEEDS,
    );
    section(
        &mut out,
        &format!(
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: {cluster_role_name}-leader-election\n  namespace: {namespace}\n"
        ),
        LEADER_ELECTION_NEEDS,
    );
    out
}

/// Whether `needs` grant `verb` on `group`/`resource`.
pub fn grants(needs: &[Need], group: &str, resource: &str, verb: &str) -> bool {
    needs
        .iter()
        .any(|n| n.group == group && n.resources.contains(&resource) && n.verbs.contains(&verb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_can_never_be_listed_or_watched() {
        for verb in ["list", "watch", "patch", "update", "delete"] {
            assert!(!grants(CLUSTER_NEEDS, "", "secrets", verb), "{verb}");
        }
        assert!(grants(CLUSTER_NEEDS, "", "secrets", "create"));
    }

    #[test]
    fn rendered_roles_parse_back_to_the_typed_rules() {
        let yaml = render("xmppfed-operator", "xmppfed-system");
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&yaml).expect("valid YAML");
        assert_eq!(docs.len(), 2);
        let typed = serde_json::to_value(cluster_role("xmppfed-operator")).expect("json");
        assert_eq!(docs[0]["rules"], typed["rules"]);
        assert!(yaml.contains("# the leader-election Lease"));
        let typed = serde_json::to_value(leader_election_role(
            "xmppfed-operator-leader-election",
            "xmppfed-system",
        ))
        .expect("json");
        assert_eq!(docs[1]["rules"], typed["rules"]);
        assert_eq!(docs[1]["metadata"], typed["metadata"]);
    }

    #[test]
    fn no_wildcards_and_no_escalation_verbs() {
        for n in CLUSTER_NEEDS.iter().chain(LEADER_ELECTION_NEEDS) {
            for v in n.verbs {
                assert!(
                    !["*", "escalate", "bind", "impersonate"].contains(v),
                    "{}",
                    n.why
                );
            }
            assert!(!n.resources.contains(&"*") && n.group != "*", "{}", n.why);
        }
    }
}
