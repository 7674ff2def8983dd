//! The policy ConfigMap the proxies and gateways watch, and the generated dialback Secret.

use super::{Inputs, Object};
use crate::labels::Component;
use base64::Engine;
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

/// A fresh dialback secret: 32 random bytes from the system RNG, base64url. Called once, when
/// the Secret does not exist yet; the operator never replaces an existing one (rotating it
/// silently would break dialback between replicas mid-flight).
pub fn generate_dialback_value() -> Result<String, ring::error::Unspecified> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_long_and_different() {
        let a = generate_dialback_value().unwrap();
        let b = generate_dialback_value().unwrap();
        assert_eq!(a.len(), 43, "32 bytes, base64url without padding");
        assert_ne!(a, b);
    }
}
