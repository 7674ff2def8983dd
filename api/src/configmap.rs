//! The policy document as the ConfigMap the operator writes and the proxies and gateways watch.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use xmppfed_policy::codec::{self, ConfigMapPayload, DecodeError, EncodeError};
use xmppfed_policy::{CompiledPolicy, PolicyDocument};

/// Name of the policy ConfigMap of a federation.
pub fn policy_config_map_name(federation: &str) -> String {
    format!("{federation}-policy")
}

/// Build the policy ConfigMap (without owner references or labels: the operator adds those).
pub fn to_config_map(
    doc: &PolicyDocument,
    name: &str,
    namespace: &str,
) -> Result<ConfigMap, EncodeError> {
    let payload = codec::encode(doc)?;
    Ok(ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            annotations: Some(payload.annotations),
            ..Default::default()
        },
        data: (!payload.data.is_empty()).then_some(payload.data),
        binary_data: (!payload.binary_data.is_empty()).then(|| {
            payload
                .binary_data
                .into_iter()
                .map(|(k, v)| (k, ByteString(v)))
                .collect()
        }),
        immutable: None,
    })
}

/// Decode and check the policy held by a ConfigMap.
pub fn from_config_map(cm: &ConfigMap) -> Result<CompiledPolicy, DecodeError> {
    let payload = ConfigMapPayload {
        data: cm.data.clone().unwrap_or_default(),
        binary_data: cm
            .binary_data
            .as_ref()
            .map(|b| b.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
            .unwrap_or_default(),
        annotations: cm.metadata.annotations.clone().unwrap_or_default(),
    };
    codec::decode(&payload)
}
