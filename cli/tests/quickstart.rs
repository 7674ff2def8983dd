//! The README's quick start, tried as a new user would: a fresh clone of this repository, the
//! README's "main job" command run verbatim in it (standalone mode from `examples/`), and real
//! XMPP servers around it — the organisation's Prosody (`contoso.com`, from the examples) and a
//! partner's Prosody (`fabrikam.com`, an allowed partner in the examples) — with a real user on
//! each. A message from `bob@contoso.com` must reach `alice@fabrikam.com` through the gateway and
//! the edge. So the quick start cannot silently rot.
//!
//! The command binds the README's fixed ports (0.0.0.0:5269 and :5270, 127.0.0.1:15269 and
//! :8080), which other tests' servers may use at the same time, so it is `#[ignore]`d in the
//! normal run; `.ci/run` runs it on its own: `cargo test -p xmppfed --test quickstart --
//! --ignored`. What differs from a user's machine is only the environment: a DNS server for
//! partner lookups and the test CA, given through `XMPPFED_DNS_SERVER`, `XMPPFED_PEER_CA` and
//! `XMPPFED_INTERNAL_CA` (the same settings as `up`'s flags).
//!
//! Net 127.0.93.x: `.1` the Internet's DNS (fabrikam.com → its Prosody, contoso.com → the
//! edge), `.3` the internal DNS (fabrikam.com → the gateway), `.4` the internal Prosody
//! `contoso.com`, `.5` the partner's Prosody `fabrikam.com`.

use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use xmppfed_testkit::Pki;

mod support;

use support::{expect_line, lines};
use xmppfed_testkit::servers::{Dns, Prosody, ProsodyOptions, Srv, User, c2s_available};
use xmppfed_xmpp::devca::CertSpec;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 93, last)
}

/// The commands of the README's quick start block, without their comments.
fn quick_start_commands(readme: &str) -> Vec<String> {
    let section = readme
        .split("## Quick start")
        .nth(1)
        .expect("the README has a Quick start section");
    let block = section
        .split("```sh")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh block in the Quick start section");
    block
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn the_readme_has_two_commands_the_main_job_and_the_tests() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).expect("README");
    let commands = quick_start_commands(&readme);
    assert_eq!(
        commands,
        [
            "cargo run -p xmppfed -- up -f examples/",
            "cargo test --workspace"
        ],
        "the quick start changed: update this test and .ci/run together"
    );
    let ci = std::fs::read_to_string(Path::new(ROOT).join(".ci/run")).expect(".ci/run");
    assert!(
        ci.contains(&commands[1]),
        ".ci/run must run the README's test command"
    );
}

/// The running command's process group, interrupted (as Ctrl-C does) and reaped on drop.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-INT", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "binds the README's fixed ports; .ci/run runs it alone with --ignored"]
async fn a_fresh_clone_runs_the_readme_command_and_a_message_reaches_a_real_partner() {
    if !c2s_available() {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("xmppfed-quickstart")
        .tempdir()
        .expect("tmp");
    let clone = dir.path().join("xmppfed");
    let status = Command::new("git")
        .args(["clone", "-q", ROOT])
        .arg(&clone)
        .status()
        .expect("git");
    assert!(status.success(), "git clone of the repository");
    let readme = std::fs::read_to_string(clone.join("README.md")).expect("README");
    let main_job = quick_start_commands(&readme)
        .into_iter()
        .next()
        .expect("a first command");

    let pki = Pki::new();
    let test_ca = pki.write_ca(dir.path());
    let internet = Dns::start(
        &dir.path().join("dns-internet").tap_mkdir(),
        ip(1),
        &[
            Srv("_xmpps-server._tcp.fabrikam.com", ".", 0),
            Srv("_xmpp-server._tcp.fabrikam.com", &ip(5).to_string(), 15269),
            Srv("_xmpps-server._tcp.contoso.com", ".", 0),
            Srv("_xmpp-server._tcp.contoso.com", "127.0.0.1", 5269),
        ],
    );
    let internal_dns = Dns::start(
        &dir.path().join("dns-internal").tap_mkdir(),
        ip(3),
        &[
            Srv("_xmpps-server._tcp.fabrikam.com", ".", 0),
            Srv("_xmpp-server._tcp.fabrikam.com", "127.0.0.1", 15269),
        ],
    );

    // The README's command, verbatim, in the fresh clone. The build shares this workspace's
    // target directory (dependencies are not rebuilt; the clone's own crates are).
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(ROOT).join("target"));
    let mut words = main_job.split_whitespace();
    let program = words.next().expect("a program");
    let child = Command::new(program)
        .args(words)
        .current_dir(&clone)
        .env("CARGO_TARGET_DIR", &target)
        .env("XMPPFED_DNS_SERVER", internet.addr.to_string())
        .env("XMPPFED_PEER_CA", &test_ca)
        .env("XMPPFED_INTERNAL_CA", &test_ca)
        .env("RUST_LOG", "info")
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the README's command starts");
    let mut up = Group(child);
    let out = lines(up.0.stdout.take().expect("stdout"));
    let err = lines(up.0.stderr.take().expect("stderr"));
    let mut seen = Vec::new();
    // The first run builds the clone's crates.
    let anchor = expect_line(&out, "trust anchor", Duration::from_secs(900), &mut seen);
    expect_line(&out, "watching", Duration::from_secs(30), &mut seen);
    let dev_ca = clone.join(
        anchor
            .split_whitespace()
            .nth(2)
            .expect("the trust anchor's path"),
    );
    assert!(dev_ca.exists(), "{anchor}");

    // The partner trusts the edge's development CA (as `up` tells users), and the test CA.
    let partner_ca = dir.path().join("partner-ca.pem");
    std::fs::write(
        &partner_ca,
        [
            std::fs::read_to_string(&test_ca).expect("test CA"),
            std::fs::read_to_string(&dev_ca).expect("dev CA"),
        ]
        .concat(),
    )
    .expect("CA bundle");
    let prosody = |domain: &str, last: u8, dns, ca: &Path| {
        let (cert, key) = pki.write(dir.path(), domain, &CertSpec::for_domain(domain));
        Prosody::start(
            dir.path(),
            &ProsodyOptions {
                domain,
                ip: ip(last),
                dns,
                cert: &cert,
                key: &key,
                ca,
                secure_auth: false,
                require_encryption: true,
                bidi: false,
            },
        )
    };
    let internal = prosody("contoso.com", 4, internal_dns.addr, &test_ca);
    let partner = prosody("fabrikam.com", 5, internet.addr, &partner_ca);
    let bob = internal.register("bob");
    let alice = partner.register("alice");

    let mut receiver = User::start(
        &test_ca,
        &alice,
        partner.c2s,
        &[&format!("expect-message:{bob}")],
    );
    assert!(
        receiver
            .line("LOGGED IN", Duration::from_secs(20))
            .await
            .is_some(),
        "alice logs in"
    );
    let body = "hello from the README's quick start";
    let sender = User::start(
        &test_ca,
        &bob,
        internal.c2s,
        &[&format!("send:{alice}:{body}"), "sleep:2"],
    );
    let got = receiver.line("MESSAGE", Duration::from_secs(30)).await;
    let errors: Vec<String> = err.try_iter().collect();
    assert!(
        got.as_deref()
            .is_some_and(|l| l.contains(&format!("from={bob}"))
                && l.contains(body)
                && l.contains("type=chat")),
        "alice got {got:?}\nbob: {}\nup stdout:\n{}\nup stderr:\n{}\n{}\n{}",
        sender.finish().await,
        seen.join("\n"),
        errors.join("\n"),
        xmppfed_testkit::servers::log_tail("internal prosody", &internal.log(), 30),
        xmppfed_testkit::servers::log_tail("partner prosody", &partner.log(), 30),
    );
    drop(up);
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).expect("mkdir");
        self
    }
}
