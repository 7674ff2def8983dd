//! The CRD manifests in `crds/`, generated from the Rust types.
//!
//! Regenerate with `cargo run -p xmppfed -- crds --out-dir crds`; a test fails when the
//! committed files differ from what the types generate.

use crate::admission::Kind;

/// File name of a kind's CRD in `crds/`.
pub fn file_name(kind: Kind) -> String {
    let crd = kind.crd();
    format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural)
}

/// The YAML of a kind's CRD, with a header saying where it comes from.
pub fn render(kind: Kind) -> Result<String, serde_saphyr::ser::Error> {
    let body = serde_saphyr::to_string(&kind.crd())?;
    Ok(format!(
        "# Generated from the Rust types in api/src/v1alpha1 by `cargo run -p xmppfed -- crds --out-dir crds`.\n# Do not edit: change the types and regenerate.\n{body}"
    ))
}
