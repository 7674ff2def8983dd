//! Real servers as test fixtures: dnsmasq for SRV records and Debian's Prosody, each started
//! in its own directory and stopped (and reaped) when dropped. The recipe and its quirks are
//! in `tests/fixtures/RECIPE.md`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// Whether the real servers are installed. CI installs them and sets
/// `XMPPFED_REQUIRE_INTEROP=1`, so a missing server fails there instead of skipping.
pub fn servers_available() -> bool {
    let present = ["/usr/bin/prosody", "/usr/sbin/dnsmasq"]
        .iter()
        .all(|p| Path::new(p).exists());
    if !present {
        assert!(
            std::env::var_os("XMPPFED_REQUIRE_INTEROP").is_none(),
            "prosody/dnsmasq are not installed but XMPPFED_REQUIRE_INTEROP is set"
        );
        eprintln!(
            "skipping: prosody and dnsmasq are not installed (run .ci/run, which installs them)"
        );
    }
    present
}

fn wait_listening(addr: SocketAddr, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    panic!(
        "{what} did not listen on {addr}:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// A dnsmasq answering only the records it is given (everything else NXDOMAIN).
pub struct Dns {
    child: Child,
    pub addr: SocketAddr,
}

/// `(service name, target, port)`; a target of `.` means "service not offered".
pub struct Srv<'a>(pub &'a str, pub &'a str, pub u16);

impl Dns {
    pub fn start(dir: &Path, ip: Ipv4Addr, srv: &[Srv]) -> Self {
        let addr = SocketAddr::new(ip.into(), 53);
        let mut cmd = Command::new("dnsmasq");
        cmd.args([
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--user=root",
            "--local=/#/",
            "--log-queries",
        ])
        .arg(format!("--listen-address={ip}"))
        .arg("--port=53")
        .arg(format!("--pid-file={}", dir.join("dns.pid").display()))
        .arg(format!("--log-facility={}", dir.join("dns.log").display()));
        for Srv(name, target, port) in srv {
            if *target == "." {
                cmd.arg(format!("--srv-host={name},."));
            } else {
                cmd.arg(format!("--srv-host={name},{target},{port}"));
            }
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq starts");
        // dnsmasq answers within milliseconds; give it a moment to bind.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && std::fs::metadata(dir.join("dns.pid")).is_err() {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(100));
        Self { child, addr }
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One Prosody instance.
pub struct Prosody {
    child: Child,
    pub dir: PathBuf,
    pub domain: String,
    pub s2s: SocketAddr,
    pub direct_tls: SocketAddr,
}

pub struct ProsodyOptions<'a> {
    pub domain: &'a str,
    pub ip: Ipv4Addr,
    pub dns: SocketAddr,
    /// PEM certificate and key prosody presents.
    pub cert: &'a Path,
    pub key: &'a Path,
    pub ca: &'a Path,
    /// `s2s_secure_auth`: certificates only (true) or dialback allowed (false).
    pub secure_auth: bool,
}

impl Prosody {
    pub fn start(base: &Path, o: &ProsodyOptions) -> Self {
        let dir = base.join(format!("prosody-{}", o.domain));
        std::fs::create_dir_all(dir.join("data")).expect("prosody dir");
        for (src, name) in [(o.cert, "cert.pem"), (o.key, "key.pem"), (o.ca, "ca.pem")] {
            std::fs::copy(src, dir.join(name)).expect("copy PEM");
        }
        let d = dir.display().to_string();
        let template =
            std::fs::read_to_string(format!("{FIXTURES}/prosody.cfg.lua.tmpl")).expect("template");
        let config = template
            .replace("@DIR@", &d)
            .replace("@DOMAIN@", o.domain)
            .replace("@ADDR@", &o.ip.to_string())
            .replace("@S2S_PORT@", "15269")
            .replace("@S2S_TLS_PORT@", "15270")
            .replace("@C2S_PORT@", "15222")
            .replace("@CERT@", &format!("{d}/cert.pem"))
            .replace("@KEY@", &format!("{d}/key.pem"))
            .replace("@CA_FILE@", &format!("{d}/ca.pem"))
            .replace("@DNS@", &format!("{}@{}", o.dns.ip(), o.dns.port()))
            .replace(
                "@SECURE_AUTH@",
                if o.secure_auth { "true" } else { "false" },
            )
            .replace("@INSECURE_DOMAINS@", "");
        let cfg = dir.join("prosody.cfg.lua");
        std::fs::write(&cfg, config).expect("config");
        // The prosody user must reach its directory.
        let mut p = dir.as_path();
        while let Some(parent) = p.parent() {
            if parent == Path::new("/tmp") || parent == Path::new("/") {
                break;
            }
            let _ = Command::new("chmod").arg("755").arg(parent).status();
            p = parent;
        }
        let ok = Command::new("chown")
            .args(["-R", "prosody:prosody"])
            .arg(&dir)
            .status()
            .expect("chown");
        assert!(ok.success());
        let child = Command::new("setpriv")
            .args([
                "--reuid=prosody",
                "--regid=prosody",
                "--init-groups",
                "/usr/bin/prosody",
                "--config",
            ])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prosody starts");
        let s2s = SocketAddr::new(o.ip.into(), 15269);
        wait_listening(s2s, "prosody", &dir.join("prosody.log"));
        Self {
            child,
            dir,
            domain: o.domain.to_string(),
            s2s,
            direct_tls: SocketAddr::new(o.ip.into(), 15270),
        }
    }

    /// Runs `prosodyctl shell …` (e.g. `xmpp ping from to`) and returns what it printed.
    pub fn shell(&self, args: &[&str]) -> String {
        let out = Command::new("prosodyctl")
            .arg("--config")
            .arg(self.dir.join("prosody.cfg.lua"))
            .arg("shell")
            .args(args)
            .output()
            .expect("prosodyctl runs");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prosody.log")).unwrap_or_default()
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
