//! The `xmppfed` binary as a pipeline runs it.

use std::process::Command;

fn xmppfed(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xmppfed"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("run xmppfed");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn validate_passes_the_examples() {
    let (code, out) = xmppfed(&["validate", "-f", "examples/"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("checked 10 xmppfed object(s) in 3 file(s): 0 error(s)"),
        "{out}"
    );
}

#[test]
fn validate_fails_on_errors_and_names_file_object_and_field() {
    let dir = std::env::temp_dir().join(format!("xmppfed-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: xmppfed.io/v1alpha1\nkind: XmppAllowedPartner\nmetadata: {name: gmail, namespace: xmpp}\nspec:\n  domain: Gmail.com\n",
    )
    .unwrap();
    let (code, out) = xmppfed(&["validate", "-f", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "bad.yaml#1: error: XmppAllowedPartner xmpp/gmail: spec.domain: must be lower-case"
        ),
        "{out}"
    );

    // Warnings only: exit 0.
    let lonely = dir.join("lonely.yaml");
    std::fs::write(&lonely, "apiVersion: xmppfed.io/v1alpha1\nkind: XmppAllowedPartner\nmetadata: {name: gmail}\nspec: {domain: gmail.com}\n").unwrap();
    let (code, out) = xmppfed(&["validate", "-f", lonely.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("warning"), "{out}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn compile_prints_a_sealed_document() {
    let (code, out) = xmppfed(&["compile", "-f", "examples/"]);
    assert_eq!(code, 0, "{out}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["format"], "xmppfed.io/policy/v1");
    assert!(doc["version"].as_str().unwrap().starts_with("sha256:"));
}

#[test]
fn missing_files_are_a_usage_error() {
    let (code, out) = xmppfed(&["validate", "-f", "does/not/exist.yaml"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("cannot read does/not/exist.yaml"), "{out}");
}
