//! xmppfed-operator: reconciles `XmppFederation` into proxy and gateway workloads, certificates,
//! DNS records and the policy ConfigMap. It builds on `xmppfed-api`: the CRD types,
//! `compile::compile` for the policy document, `crosscheck::check` for the findings it reports as
//! conditions, and `configmap::to_config_map` for the object it writes.
//!
//! The reconcile pipeline (stackable style): look up referenced objects → validate (pure) →
//! [`build`] desired objects (pure, golden-tested) → server-side apply with one field manager →
//! delete orphans by label → status.

pub mod apply;
pub mod build;
pub mod controller;
pub mod labels;
pub mod metrics;
pub mod names;
pub mod rbac;
pub mod reconcile;
pub mod status;
