//! One ServiceAccount, Role and RoleBinding per component. Each pod may read its federation's
//! policy ConfigMap — that one object, by `resourceNames` — and nothing else.

use super::{Inputs, Object};
use crate::labels::Component;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};

pub(super) fn build(inputs: &Inputs) -> Vec<Object> {
    let names = inputs.names();
    let mut out = Vec::new();
    for (name, component) in [
        (names.proxy(), Component::Proxy),
        (names.gateway(), Component::Gateway),
    ] {
        let sa = ServiceAccount {
            metadata: inputs.meta(name.clone(), component),
            // The token is mounted by the pod spec, which needs it for the ConfigMap watch.
            automount_service_account_token: Some(false),
            ..Default::default()
        };
        let role = Role {
            metadata: inputs.meta(name.clone(), component),
            rules: Some(vec![PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["configmaps".into()]),
                // list and watch with resourceNames work with a metadata.name field selector,
                // which is how the pods watch their ConfigMap.
                resource_names: Some(vec![names.policy()]),
                verbs: vec!["get".into(), "list".into(), "watch".into()],
                ..Default::default()
            }]),
        };
        let binding = RoleBinding {
            metadata: inputs.meta(name.clone(), component),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "Role".into(),
                name: name.clone(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: name.clone(),
                namespace: Some(names.namespace.clone()),
                ..Default::default()
            }]),
        };
        out.push(Object::from_typed(&sa));
        out.push(Object::from_typed(&role));
        out.push(Object::from_typed(&binding));
    }
    out
}
