//! The standard `app.kubernetes.io/*` labels on every object the operator creates; the
//! instance and managed-by labels are also how it finds its orphans.

use std::collections::BTreeMap;

/// `app.kubernetes.io/managed-by` of everything the operator creates, and its SSA field manager.
pub const MANAGER: &str = "xmppfed-operator";
pub const NAME: &str = "xmppfed";
pub const INSTANCE: &str = "app.kubernetes.io/instance";
pub const COMPONENT: &str = "app.kubernetes.io/component";
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// What a component is, as its label says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Proxy,
    Gateway,
    Policy,
    Certificates,
    Dns,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Proxy => "proxy",
            Component::Gateway => "gateway",
            Component::Policy => "policy",
            Component::Certificates => "certificates",
            Component::Dns => "dns",
        }
    }
}

/// Labels of every object of `component` for federation `instance`.
pub fn labels(instance: &str, component: Component) -> BTreeMap<String, String> {
    let mut l = selector(instance, component);
    l.insert(MANAGED_BY.into(), MANAGER.into());
    l.insert("app.kubernetes.io/part-of".into(), NAME.into());
    l
}

/// The stable subset used in Service and workload selectors (never changes for a pod).
pub fn selector(instance: &str, component: Component) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), NAME.into()),
        (INSTANCE.into(), instance.into()),
        (COMPONENT.into(), component.as_str().into()),
    ])
}

/// The selector that finds everything the operator made for `instance` (orphan deletion).
pub fn owned_by_selector(instance: &str) -> String {
    format!("{MANAGED_BY}={MANAGER},{INSTANCE}={instance}")
}
