//! The committed CRDs in `crds/` match the types, and every CEL rule in them is usable by an API
//! server: it compiles and its estimated cost is within the per-rule budget.

use kube::core::cel::{CompiledSchema, compile_schema, estimate_rule_cost};
use std::path::PathBuf;
use xmppfed_api::admission::Kind;
use xmppfed_api::crdgen;

fn crds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds")
}

#[test]
fn committed_crds_match_the_types() {
    for kind in Kind::ALL {
        let path = crds_dir().join(crdgen::file_name(kind));
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        let generated = crdgen::render(kind).unwrap();
        assert!(
            committed == generated,
            "{} is out of date with the Rust types: run `cargo run -p xmppfed -- crds --out-dir crds` and commit the result",
            path.display()
        );
    }
}

/// The Helm chart installs byte-identical copies (`charts/xmppfed/files/crds/`), so `helm
/// install` and `kubectl apply -f crds/` give the same API.
#[test]
fn the_chart_carries_the_same_crds() {
    let chart = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/xmppfed/files/crds");
    for kind in Kind::ALL {
        let name = crdgen::file_name(kind);
        let copy = std::fs::read_to_string(chart.join(&name)).unwrap_or_default();
        let generated = crdgen::render(kind).unwrap();
        assert!(
            copy == generated,
            "charts/xmppfed/files/crds/{name} differs from crds/{name}: run `cargo run -p xmppfed -- crds --out-dir crds && cp crds/*.yaml charts/xmppfed/files/crds/`"
        );
    }
    let files = std::fs::read_dir(&chart).map(|d| d.count()).unwrap_or(0);
    assert_eq!(
        files,
        Kind::ALL.len(),
        "no other files in {}",
        chart.display()
    );
}

fn schema_of(kind: Kind) -> serde_json::Value {
    let crd = kind.crd();
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

/// Visit every compiled node: (path, node, the node's compiled rules).
fn walk<'a>(path: String, node: &'a CompiledSchema, out: &mut Vec<(String, &'a CompiledSchema)>) {
    out.push((path.clone(), node));
    for (k, child) in &node.properties {
        walk(format!("{path}.{k}"), child, out);
    }
    if let Some(items) = &node.items {
        walk(format!("{path}[]"), items, out);
    }
    if let Some(ap) = &node.additional_properties {
        walk(format!("{path}.*"), ap, out);
    }
}

#[test]
fn every_cel_rule_compiles_and_fits_the_cost_budget() {
    let mut rules = 0;
    for kind in Kind::ALL {
        let compiled = compile_schema(&schema_of(kind));
        let mut nodes = Vec::new();
        walk(kind.as_str().to_string(), &compiled, &mut nodes);
        for (path, node) in nodes {
            for v in &node.validations {
                let result = v
                    .as_ref()
                    .unwrap_or_else(|e| panic!("{path}: rule does not compile: {e}"));
                let warnings = estimate_rule_cost(&result.rule.rule, node);
                assert!(warnings.is_empty(), "{path}: {:?}", warnings);
                rules += 1;
            }
        }
    }
    // Domain names (several places), durations, negotiation, scopes, tls, ports, users...
    assert!(
        rules >= 30,
        "only {rules} rules found: did the schema lose its validations?"
    );
}

#[test]
fn kinds_have_short_names_category_and_status() {
    for kind in Kind::ALL {
        let crd = kind.crd();
        assert_eq!(crd.spec.group, "xmppfed.io");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert!(
            crd.spec
                .names
                .categories
                .as_ref()
                .unwrap()
                .contains(&"xmpp".to_string())
        );
        assert!(!crd.spec.names.short_names.as_ref().unwrap().is_empty());
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(v.subresources.as_ref().unwrap().status.is_some());
        let columns: Vec<&str> = v
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert!(columns.contains(&"Age"), "{columns:?}");
    }
}

/// Every property in every schema has a description, so `kubectl explain` is useful.
#[test]
fn every_field_is_documented() {
    fn visit(path: &str, schema: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
            for (k, v) in props {
                let p = format!("{path}.{k}");
                if v.get("description").is_none()
                    && !["apiVersion", "kind", "metadata"].contains(&k.as_str())
                {
                    missing.push(p.clone());
                }
                visit(&p, v, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            visit(&format!("{path}[]"), items, missing);
        }
    }
    let mut missing = Vec::new();
    for kind in Kind::ALL {
        visit(kind.as_str(), &schema_of(kind), &mut missing);
    }
    assert!(
        missing.is_empty(),
        "fields without a doc comment: {missing:#?}"
    );
}
