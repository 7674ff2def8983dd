//! `xmppfed up` as a user runs it: the real binary on `examples/` (copied, so the test can edit
//! them), on loopback ports. It must start and say where it listens, serve the compiled policy,
//! apply a manifest change live, keep the running policy when a change is invalid, and stop
//! cleanly on Ctrl-C (SIGINT).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::{Running, expect_line, lines};

/// How long `up` may take to print an expected line.
const WAIT: Duration = Duration::from_secs(20);

/// This test's own loopback address: with it, fixed ports below the kernel's ephemeral range
/// (32768+) cannot clash with another test's listener or with any outgoing connection, as a
/// port picked by binding port 0 and closing again could.
const UP_IP: [u8; 4] = [127, 0, 107, 2];

fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n")
        .map(|(_, body)| body.trim().to_string())
}

fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn copy_examples(to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for entry in std::fs::read_dir(from).expect("examples/") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, to.join(path.file_name().expect("name"))).expect("copy");
    }
}

#[test]
fn up_runs_the_examples_applies_changes_keeps_the_last_good_policy_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).expect("mkdir");
    copy_examples(&manifests);
    let http = SocketAddr::from((UP_IP, 19090));
    let gateway_http = SocketAddr::from((UP_IP, 19091));
    let child = Command::new(env!("CARGO_BIN_EXE_xmppfed"))
        .arg("up")
        .arg("-f")
        .arg(&manifests)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args([
            "--starttls-listen",
            &SocketAddr::from((UP_IP, 15269)).to_string(),
        ])
        .args([
            "--direct-tls-listen",
            &SocketAddr::from((UP_IP, 15270)).to_string(),
        ])
        .args([
            "--gateway-listen",
            &SocketAddr::from((UP_IP, 23456)).to_string(),
        ])
        .args(["--http-listen", &http.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("xmppfed up starts");
    let mut up = Running(child);
    let out = lines(up.0.stdout.take().expect("stdout"));
    let err = lines(up.0.stderr.take().expect("stderr"));
    let mut seen = Vec::new();

    let first = expect_line(&out, "federation xmpp/contoso", WAIT, &mut seen);
    let version = first.rsplit(' ').next().expect("version").to_string();
    assert!(first.contains("5 partner(s)"), "{first}");
    expect_line(&out, "partners connect to", WAIT, &mut seen);
    expect_line(&out, "trust anchor", WAIT, &mut seen);
    expect_line(&out, "watching", WAIT, &mut seen);
    for addr in [http, gateway_http] {
        wait_until("the policy served", || {
            http_get(addr, "/policy-version").as_deref() == Some(version.as_str())
        });
    }
    // The gateway linked to the proxy: it is ready.
    wait_until("the gateway ready", || {
        http_get(gateway_http, "/readyz").is_some_and(|b| b.contains("proxy links: 1"))
    });

    // A new partner, live.
    let mut partners = std::fs::read_to_string(manifests.join("partners.yaml")).expect("read");
    partners.push_str(
        "---\napiVersion: xmppfed.io/v1alpha1\nkind: XmppAllowedPartner\nmetadata:\n  name: tailspin\n  namespace: xmpp\nspec:\n  domain: tailspin.example\n",
    );
    std::fs::write(manifests.join("partners.yaml"), &partners).expect("write");
    let applied = expect_line(&out, "policy sha256:", WAIT, &mut seen);
    assert!(applied.contains("6 partner(s)"), "{applied}");
    let second = applied.split(' ').nth(1).expect("version").to_string();
    assert_ne!(second, version);
    for addr in [http, gateway_http] {
        wait_until("the new policy served", || {
            http_get(addr, "/policy-version").as_deref() == Some(second.as_str())
        });
    }

    // An invalid change: reported, and the running policy stays.
    std::fs::write(
        manifests.join("broken.yaml"),
        "apiVersion: xmppfed.io/v1alpha1\nkind: XmppAllowedPartner\nmetadata:\n  name: broken\n  namespace: xmpp\nspec:\n  domain: NOT-LOWER.example\n",
    )
    .expect("write");
    let mut errors = Vec::new();
    let problem = expect_line(&err, "spec.domain", WAIT, &mut errors);
    assert!(problem.contains("broken.yaml"), "{problem}");
    expect_line(&err, &format!("keeping policy {second}"), WAIT, &mut errors);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        http_get(http, "/policy-version").as_deref(),
        Some(second.as_str())
    );

    // Ctrl-C: drains and exits 0.
    let pid = up.0.id().to_string();
    let status = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    expect_line(&out, "stopped", WAIT, &mut seen);
    let exit = up.0.wait().expect("exit status");
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn up_refuses_invalid_manifests_before_starting_anything() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("fed.yaml"),
        "apiVersion: xmppfed.io/v1alpha1\nkind: XmppFederation\nmetadata:\n  name: f\n  namespace: x\nspec:\n  domains: [Example.COM]\n  gateway: {internalServers: [{host: chat.example.com}]}\n  tls: {secretName: edge-tls}\n",
    )
    .expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_xmppfed"))
        .args(["up", "-f"])
        .arg(dir.path())
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("spec.domains"), "{stderr}");
    assert!(stderr.contains("nothing started"), "{stderr}");
    assert!(!dir.path().join("state").exists(), "nothing written");
}
