//! The policy ConfigMap the proxies and gateways watch, and the generated dialback Secret.

use super::{Inputs, Object};
use crate::labels::Component;
use k8s_openapi::api::core::v1::Secret;
use std::collections::BTreeMap;
use xmppfed_policy::codec::EncodeError;

/// Key of the generated dialback secret.
pub const DIALBACK_KEY: &str = "secret";

/// Fails when the document cannot be encoded (e.g. larger than a ConfigMap holds): an
/// empty ConfigMap must never replace the last good policy.
pub(super) fn config_map(inputs: &Inputs) -> Result<Object, EncodeError> {
    let names = inputs.names();
    let mut cm =
        xmppfed_api::configmap::to_config_map(inputs.policy, &names.policy(), &names.namespace)?;
    let annotations = cm.metadata.annotations.take();
    cm.metadata = inputs.meta(names.policy(), Component::Policy);
    cm.metadata.annotations = annotations;
    Ok(Object::from_typed(&cm))
}

/// The generated dialback Secret holding `value`; `None` when the user references their own.
pub fn dialback_secret(inputs: &Inputs, value: &str) -> Option<Object> {
    if inputs.federation.spec.dialback.secret_ref.is_some() {
        return None;
    }
    let names = inputs.names();
    let secret = Secret {
        metadata: inputs.meta(names.dialback(), Component::Policy),
        string_data: Some(BTreeMap::from([(DIALBACK_KEY.into(), value.into())])),
        type_: Some("Opaque".into()),
        ..Default::default()
    };
    Some(Object::from_typed(&secret))
}
