//! xmppfed-operator: reconciles `XmppFederation` into proxy and gateway workloads, certificates,
//! DNS records and the policy ConfigMap (issue 5). It builds on `xmppfed-api`: the CRD types,
//! `compile::compile` for the policy document, `crosscheck::check` for the findings it reports as
//! conditions, and `configmap::to_config_map` for the object it writes.
