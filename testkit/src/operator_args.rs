//! Keeps the operator and the binaries in step: the arguments the operator's golden
//! Deployment/StatefulSet give a container must be accepted by that binary's flag parser.

use std::path::Path;
use std::process::Command;

/// The `command` and `args` of the container named `container` in the operator's golden
/// objects for the examples (`operator/tests/golden/contoso.yaml`).
pub fn golden_container_args(container: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../operator/tests/golden/contoso.yaml");
    let text = std::fs::read_to_string(&path).expect("operator golden file");
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).expect("golden YAML");
    docs.iter()
        .filter_map(|d| d["spec"]["template"]["spec"]["containers"].as_array())
        .flatten()
        .find(|c| c["name"] == container)
        .and_then(|c| c["args"].as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_else(|| panic!("no container {container} in {}", path.display()))
}

/// Runs `binary` with `args` outside a pod: it must get past its flag parser (clap exits 2
/// on an unknown flag or a bad value) and stop at the first file it cannot read instead.
pub fn assert_flags_accepted(binary: &str, args: &[String]) {
    let out = Command::new(binary)
        .args(args)
        .env_clear()
        .output()
        .expect("run the binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(2),
        "the binary refused the operator's flags:\n{stderr}"
    );
    assert!(
        !out.status.success(),
        "it cannot run without its files: {stderr}"
    );
    assert!(
        stderr.contains("/etc/xmppfed/") || stderr.contains("No such file"),
        "expected to stop at a missing mounted file, got:\n{stderr}"
    );
}
