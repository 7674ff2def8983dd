//! Admission of xmppfed objects offline, as the API server admits them: metadata checks,
//! structural schema validation with pruning, defaulting, then the CEL rules of the CRD.
//!
//! `xmppfed validate` and the tests use this, so every rule that the API server would apply to
//! a manifest is exercised without a cluster.

use crate::schema_check::{Violation, prune_and_validate};
use crate::v1alpha1::{ExternalAccessPolicy, XmppAllowedPartner, XmppFederation};
use crate::{API_VERSION, GROUP};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::core::cel::{CompiledSchema, Validator, apply_defaults, compile_schema};
use serde_json::Value;

/// The three kinds of the xmppfed API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    XmppFederation,
    XmppAllowedPartner,
    ExternalAccessPolicy,
}

impl Kind {
    pub const ALL: [Kind; 3] = [
        Kind::XmppFederation,
        Kind::XmppAllowedPartner,
        Kind::ExternalAccessPolicy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::XmppFederation => "XmppFederation",
            Kind::XmppAllowedPartner => "XmppAllowedPartner",
            Kind::ExternalAccessPolicy => "ExternalAccessPolicy",
        }
    }

    pub fn from_name(kind: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    pub fn crd(self) -> CustomResourceDefinition {
        match self {
            Kind::XmppFederation => XmppFederation::crd(),
            Kind::XmppAllowedPartner => XmppAllowedPartner::crd(),
            Kind::ExternalAccessPolicy => ExternalAccessPolicy::crd(),
        }
    }
}

/// An object that passed admission, typed.
#[derive(Debug, Clone, PartialEq)]
pub enum Admitted {
    Federation(Box<XmppFederation>),
    Partner(Box<XmppAllowedPartner>),
    AccessPolicy(Box<ExternalAccessPolicy>),
}

/// Validates objects of the three kinds; build once and reuse (CEL rules are compiled here).
pub struct Admission {
    kinds: Vec<(Kind, Value, CompiledSchema)>,
    validator: Validator,
}

impl Default for Admission {
    fn default() -> Self {
        Self::new()
    }
}

impl Admission {
    pub fn new() -> Self {
        let kinds = Kind::ALL
            .into_iter()
            .map(|kind| {
                let crd = kind.crd();
                let schema = crd.spec.versions[0]
                    .schema
                    .as_ref()
                    .and_then(|s| s.open_api_v3_schema.as_ref())
                    .map(|s| serde_json::to_value(s).unwrap_or(Value::Null))
                    .unwrap_or(Value::Null);
                let compiled = compile_schema(&schema);
                (kind, schema, compiled)
            })
            .collect();
        Self {
            kinds,
            validator: Validator::new(),
        }
    }

    fn entry(&self, kind: Kind) -> (&Value, &CompiledSchema) {
        let (_, schema, compiled) = self
            .kinds
            .iter()
            .find(|(k, _, _)| *k == kind)
            .expect("every kind is compiled in Admission::new");
        (schema, compiled)
    }

    /// Admit `object` (a whole manifest) as a create. With `old`, as an update of `old` (transition
    /// rules such as the immutability of a partner's `domain` apply).
    pub fn admit(&self, object: &Value, old: Option<&Value>) -> Result<Admitted, Vec<Violation>> {
        let kind = check_type_meta(object)?;
        let (schema, compiled) = self.entry(kind);
        let mut obj = object.clone();
        let mut violations = check_metadata(&obj);
        violations.extend(validate_root(schema, &mut obj));
        if !violations.is_empty() {
            return Err(violations);
        }
        let obj = apply_defaults(schema, &obj);
        let old = old.map(|o| {
            let mut o = o.clone();
            let _ = validate_root(schema, &mut o);
            apply_defaults(schema, &o)
        });
        if let Err(errors) = self
            .validator
            .validate_compiled(compiled, &obj, old.as_ref())
        {
            return Err(errors
                .iter()
                .map(|e| Violation::new(e.field_path.clone(), e.message.clone()))
                .collect());
        }
        let typed = match kind {
            Kind::XmppFederation => {
                serde_json::from_value(obj).map(|o| Admitted::Federation(Box::new(o)))
            }
            Kind::XmppAllowedPartner => {
                serde_json::from_value(obj).map(|o| Admitted::Partner(Box::new(o)))
            }
            Kind::ExternalAccessPolicy => {
                serde_json::from_value(obj).map(|o| Admitted::AccessPolicy(Box::new(o)))
            }
        };
        typed.map_err(|e| {
            vec![Violation::new(
                "",
                format!("does not decode after validation: {e}"),
            )]
        })
    }
}

/// Validate the root object: `apiVersion`, `kind` and `metadata` are the API server's own (the
/// CRD schema does not describe them); everything else goes through the CRD schema.
fn validate_root(schema: &Value, obj: &mut Value) -> Vec<Violation> {
    let Some(map) = obj.as_object_mut() else {
        return vec![Violation::new("", "must be an object")];
    };
    let own: Vec<(String, Value)> = ["apiVersion", "kind", "metadata"]
        .into_iter()
        .filter_map(|k| map.remove(k).map(|v| (k.to_string(), v)))
        .collect();
    let violations = prune_and_validate(schema, obj, "");
    if let Some(map) = obj.as_object_mut() {
        map.extend(own);
    }
    violations
}

/// `apiVersion` and `kind` must name one of our kinds.
pub fn check_type_meta(object: &Value) -> Result<Kind, Vec<Violation>> {
    let api_version = object.get("apiVersion").and_then(Value::as_str);
    let kind = object.get("kind").and_then(Value::as_str);
    let (Some(api_version), Some(kind_name)) = (api_version, kind) else {
        return Err(vec![Violation::new("", "apiVersion and kind are required")]);
    };
    let Some(kind) = Kind::from_name(kind_name) else {
        return Err(vec![Violation::new(
            "kind",
            format!("{kind_name:?} is not a kind of {GROUP}"),
        )]);
    };
    if api_version != API_VERSION {
        return Err(vec![Violation::new(
            "apiVersion",
            format!(
                "Unsupported value: {api_version:?}: {kind_name} is served as {:?}",
                API_VERSION
            ),
        )]);
    }
    Ok(kind)
}

/// The object-metadata checks of the API server that matter for manifests.
fn check_metadata(object: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    let Some(meta) = object.get("metadata").and_then(Value::as_object) else {
        out.push(Violation::new(
            "metadata.name",
            "Required value: name or generateName is required",
        ));
        return out;
    };
    match meta.get("name") {
        Some(Value::String(name)) => {
            if let Err(msg) = dns_subdomain(name) {
                out.push(Violation::new(
                    "metadata.name",
                    format!("Invalid value: {name:?}: {msg}"),
                ));
            }
        }
        Some(other) => out.push(Violation::new(
            "metadata.name",
            format!("Invalid value: {other}: must be a string"),
        )),
        None if meta.get("generateName").is_some_and(Value::is_string) => {}
        None => out.push(Violation::new(
            "metadata.name",
            "Required value: name or generateName is required",
        )),
    }
    if let Some(ns) = meta.get("namespace") {
        match ns.as_str() {
            Some(ns) if dns_label(ns).is_ok() => {}
            _ => out.push(Violation::new(
                "metadata.namespace",
                format!("Invalid value: {ns}: must be a DNS label (lower-case letters, digits, '-', at most 63)"),
            )),
        }
    }
    if let Some(labels) = meta.get("labels") {
        match labels.as_object() {
            Some(labels) => {
                for (k, v) in labels {
                    if let Err(msg) = label_key(k) {
                        out.push(Violation::new(
                            format!("metadata.labels.{k}"),
                            format!("Invalid key: {msg}"),
                        ));
                    }
                    match v.as_str() {
                        Some(v) if label_value(v) => {}
                        _ => out.push(Violation::new(
                            format!("metadata.labels.{k}"),
                            format!("Invalid value: {v}: a label value is at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"),
                        )),
                    }
                }
            }
            None => out.push(Violation::new(
                "metadata.labels",
                "must be a map of strings",
            )),
        }
    }
    out
}

fn dns_label(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err("must be a DNS label: at most 63 lower-case letters, digits or '-', starting and ending with a letter or digit".into())
    }
}

/// RFC 1123 subdomain, as Kubernetes requires of object names.
pub fn dns_subdomain(s: &str) -> Result<(), String> {
    let msg = "must be a lower-case RFC 1123 subdomain: letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters";
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if ok { Ok(()) } else { Err(msg.into()) }
}

fn label_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && v.as_bytes()[0].is_ascii_alphanumeric()
            && v.as_bytes()[v.len() - 1].is_ascii_alphanumeric())
}

fn label_key(k: &str) -> Result<(), String> {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix {
        dns_subdomain(p).map_err(|m| format!("prefix {p:?} {m}"))?;
    }
    if name.is_empty() || !label_value(name) {
        return Err(format!(
            "name part {name:?} must be 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}
