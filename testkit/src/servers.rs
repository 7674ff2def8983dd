//! Real servers as test fixtures: dnsmasq for SRV records and Debian's Prosody, each started
//! in its own directory and stopped (and reaped) when dropped. The recipe and its quirks are
//! in `testkit/fixtures/RECIPE.md`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");

/// Whether the real servers are installed. CI installs them and sets
/// `XMPPFED_REQUIRE_INTEROP=1`, so a missing server fails there instead of skipping.
pub fn servers_available() -> bool {
    installed(&["/usr/bin/prosody", "/usr/sbin/dnsmasq"])
}

/// As [`servers_available`], for tests that also need ejabberd and a real c2s client.
pub fn ejabberd_available() -> bool {
    installed(&["/usr/sbin/ejabberdctl", "/usr/sbin/dnsmasq", PYTHON]) && slixmpp_available()
}

/// As [`servers_available`], for tests with real c2s users (slixmpp).
pub fn c2s_available() -> bool {
    servers_available() && installed(&[PYTHON]) && slixmpp_available()
}

fn slixmpp_available() -> bool {
    let ok = Command::new(PYTHON)
        .args(["-c", "import slixmpp"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    installed_or_skip(ok, "python3-slixmpp")
}

fn installed(paths: &[&str]) -> bool {
    let missing: Vec<&str> = paths
        .iter()
        .copied()
        .filter(|p| !Path::new(p).exists())
        .collect();
    installed_or_skip(missing.is_empty(), &missing.join(", "))
}

fn installed_or_skip(present: bool, what: &str) -> bool {
    if !present {
        assert!(
            std::env::var_os("XMPPFED_REQUIRE_INTEROP").is_none(),
            "{what} not installed but XMPPFED_REQUIRE_INTEROP is set"
        );
        eprintln!("skipping: {what} not installed (run .ci/run, which installs it)");
    }
    present
}

/// Debian's python, which has python3-slixmpp (a pyenv `python3` on PATH may not).
const PYTHON: &str = "/usr/bin/python3";

/// A real XMPP client (slixmpp) of a partner's server: logs in as `jid`, sends `body` to
/// `peer` and, when `wait_reply`, waits for one message back. Returns what it printed.
pub async fn chat(
    ca: &Path,
    jid: &str,
    c2s: SocketAddr,
    peer: &str,
    body: &str,
    wait_reply: bool,
) -> tokio::process::Child {
    tokio::process::Command::new(PYTHON)
        .arg(format!("{FIXTURES}/c2s_chat.py"))
        .arg(ca)
        .args([jid, USER_PASSWORD])
        .arg(c2s.ip().to_string())
        .arg(c2s.port().to_string())
        .args([peer, body, if wait_reply { "reply" } else { "send" }])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("c2s client starts")
}

/// What a [`chat`] client printed, once it has finished (at most 40 s).
pub async fn chat_output(child: tokio::process::Child) -> String {
    match tokio::time::timeout(Duration::from_secs(40), child.wait_with_output()).await {
        Ok(Ok(out)) => format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Ok(Err(e)) => format!("client failed: {e}"),
        Err(_) => "client did not finish in 40 s".to_string(),
    }
}

/// Whether any line of a server's log contains `needle`.
pub fn grep(log: &str, needle: &str) -> bool {
    log.lines().any(|l| l.contains(needle))
}

/// The last `n` lines of a server's log, for assertion messages.
pub fn log_tail(server: &str, log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    format!(
        "{server} log tail:\n{}",
        lines[lines.len().saturating_sub(n)..].join("\n")
    )
}

/// The password of every c2s test user.
pub const USER_PASSWORD: &str = "secret-of-the-test-user";

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
    pub c2s: SocketAddr,
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
    /// `s2s_require_encryption`: false lets streams run without TLS.
    pub require_encryption: bool,
    /// Load mod_s2s_bidi (XEP-0288).
    pub bidi: bool,
}

impl Prosody {
    pub fn start(base: &Path, o: &ProsodyOptions) -> Self {
        let dir = base.join(format!("prosody-{}-{}", o.domain, o.ip));
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
            .replace("@INSECURE_DOMAINS@", "")
            .replace("@EXTRA_MODULES@", if o.bidi { "\"s2s_bidi\";" } else { "" })
            .replace(
                "@REQUIRE_ENCRYPTION@",
                if o.require_encryption {
                    "true"
                } else {
                    "false"
                },
            );
        let cfg = dir.join("prosody.cfg.lua");
        std::fs::write(&cfg, config).expect("config");
        allow_traversal(&dir);
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
            c2s: SocketAddr::new(o.ip.into(), 15222),
        }
    }

    /// Creates the c2s user `<name>@<domain>` with [`USER_PASSWORD`]; returns its JID.
    pub fn register(&self, name: &str) -> String {
        let out = Command::new("prosodyctl")
            .arg("--config")
            .arg(self.dir.join("prosody.cfg.lua"))
            .args(["register", name, &self.domain, USER_PASSWORD])
            .output()
            .expect("prosodyctl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!("{name}@{}", self.domain)
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

/// One ejabberd instance (Debian's 23.01), as RECIPE.md §5 sets it up: its own Erlang node
/// name and distribution port (no epmd), DNS through `ERL_INETRC` to the test's dnsmasq
/// (SRV targets must be IP literals: ejabberd resolves target hosts with libc).
pub struct Ejabberd {
    child: Child,
    pub dir: PathBuf,
    pub domain: String,
    pub s2s: SocketAddr,
    pub c2s: SocketAddr,
}

pub struct EjabberdOptions<'a> {
    pub domain: &'a str,
    pub ip: Ipv4Addr,
    pub dns: SocketAddr,
    pub cert: &'a Path,
    pub key: &'a Path,
    pub ca: &'a Path,
    /// Load `mod_s2s_dialback` (dialback fallback); without it, certificates only.
    pub dialback: bool,
}

impl Ejabberd {
    pub fn start(base: &Path, o: &EjabberdOptions) -> Self {
        let dir = base.join(format!("ejabberd-{}-{}", o.domain, o.ip));
        let conf = dir.join("conf");
        for sub in ["conf", "spool", "logs"] {
            std::fs::create_dir_all(dir.join(sub)).expect("ejabberd dir");
        }
        let mut pem = std::fs::read(o.cert).expect("cert");
        pem.extend(std::fs::read(o.key).expect("key"));
        std::fs::write(conf.join("cert.pem"), pem).expect("cert.pem");
        std::fs::copy(o.ca, conf.join("ca.pem")).expect("ca.pem");
        let c = conf.display().to_string();
        let render = |template: &str| -> String {
            std::fs::read_to_string(format!("{FIXTURES}/{template}"))
                .expect("template")
                .replace("@DOMAIN@", o.domain)
                .replace("@ADDR@", &o.ip.to_string())
                .replace("@S2S_PORT@", "15269")
                .replace("@S2S_TLS_PORT@", "15270")
                .replace("@C2S_PORT@", "15222")
                .replace("@CERTFILE@", &format!("{c}/cert.pem"))
                .replace("@CA_FILE@", &format!("{c}/ca.pem"))
                .replace(
                    "@DIALBACK@",
                    if o.dialback {
                        "mod_s2s_dialback: {}"
                    } else {
                        ""
                    },
                )
                .replace("@LOGLEVEL@", "info")
                .replace("@DNS_IP_TUPLE@", &o.dns.ip().to_string().replace('.', ","))
                .replace("@DNS_PORT@", &o.dns.port().to_string())
        };
        std::fs::write(conf.join("ejabberd.yml"), render("ejabberd.yml.tmpl")).expect("yml");
        std::fs::write(conf.join("inetrc"), render("ejabberd-inetrc.tmpl")).expect("inetrc");
        // ejabberdctl ignores ERLANG_NODE and INET_DIST_INTERFACE from the environment.
        let [_, _, n, last] = o.ip.octets();
        std::fs::write(
            conf.join("ejabberdctl.cfg"),
            format!(
                "ERLANG_NODE=ejabberd@{ip}\nINET_DIST_INTERFACE={ip}\nERL_DIST_PORT={port}\nEJABBERD_PID_PATH={d}/ejabberd.pid\nEJABBERD_BYPASS_WARNINGS=true\n",
                ip = o.ip,
                port = 40000 + u32::from(n) * 10 + u32::from(last % 10),
                d = dir.display()
            ),
        )
        .expect("ejabberdctl.cfg");
        allow_traversal(&dir);
        let ok = Command::new("chown")
            .args(["-R", "ejabberd:ejabberd"])
            .arg(&dir)
            .status()
            .expect("chown");
        assert!(ok.success());
        let mut cmd = Self::ctl_command(&dir);
        cmd.arg("foreground")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group: ejabberdctl (bash) runs beam as a child, and both must go.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().expect("ejabberd starts");
        let s2s = SocketAddr::new(o.ip.into(), 15269);
        wait_listening(s2s, "ejabberd", &dir.join("logs/ejabberd.log"));
        Self {
            child,
            dir,
            domain: o.domain.to_string(),
            s2s,
            c2s: SocketAddr::new(o.ip.into(), 15222),
        }
    }

    fn ctl_command(dir: &Path) -> Command {
        let mut cmd = Command::new("env");
        cmd.arg("-i")
            .arg("PATH=/usr/sbin:/usr/bin:/sbin:/bin")
            .arg(format!("HOME={}", dir.display()))
            .args([
                "setpriv",
                "--reuid=ejabberd",
                "--regid=ejabberd",
                "--init-groups",
                "/usr/sbin/ejabberdctl",
                "--config-dir",
            ])
            .arg(dir.join("conf"))
            .arg("--spool")
            .arg(dir.join("spool"))
            .arg("--logs")
            .arg(dir.join("logs"));
        cmd
    }

    /// Runs `ejabberdctl <args>` against this instance; returns what it printed.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = Self::ctl_command(&self.dir)
            .args(args)
            .output()
            .expect("ejabberdctl runs");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Creates the c2s user `<name>@<domain>` with [`USER_PASSWORD`]; returns its JID.
    pub fn register(&self, name: &str) -> String {
        let out = self.ctl(&["register", name, &self.domain, USER_PASSWORD]);
        assert!(out.contains("successfully registered"), "{out}");
        format!("{name}@{}", self.domain)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("logs/ejabberd.log")).unwrap_or_default()
    }
}

impl Drop for Ejabberd {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

/// Lets a server's own user reach its directory under a test's temporary directory.
fn allow_traversal(dir: &Path) {
    let mut p = dir;
    while let Some(parent) = p.parent() {
        if parent == Path::new("/tmp") || parent == Path::new("/") {
            break;
        }
        let _ = Command::new("chmod").arg("755").arg(parent).status();
        p = parent;
    }
}

/// A real XMPP user (slixmpp) following `steps` (see `fixtures/c2s_script.py`), whose output
/// lines can be awaited while it runs.
pub struct User {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    /// Everything printed so far.
    pub output: Vec<String>,
}

impl User {
    pub fn start(ca: &Path, jid: &str, c2s: SocketAddr, steps: &[&str]) -> Self {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(PYTHON)
            .arg(format!("{FIXTURES}/c2s_script.py"))
            .arg(ca)
            .args([jid, USER_PASSWORD])
            .arg(c2s.ip().to_string())
            .arg(c2s.port().to_string())
            .args(steps)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("c2s client starts");
        let stdout = child.stdout.take().expect("stdout piped");
        Self {
            child,
            lines: tokio::io::BufReader::new(stdout).lines(),
            output: Vec::new(),
        }
    }

    /// Waits (at most `wait`) for a line starting with `prefix`; returns it.
    pub async fn line(&mut self, prefix: &str, wait: Duration) -> Option<String> {
        if let Some(l) = self.output.iter().find(|l| l.starts_with(prefix)) {
            return Some(l.clone());
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.next_line()).await {
                Ok(Ok(Some(l))) => {
                    self.output.push(l.clone());
                    if l.starts_with(prefix) {
                        return Some(l);
                    }
                }
                _ => return None,
            }
        }
    }

    /// Waits for the script to end (at most 60 s) and returns everything it printed.
    pub async fn finish(mut self) -> String {
        let _ = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(l)) = self.lines.next_line().await {
                self.output.push(l);
            }
            let _ = self.child.wait().await;
        })
        .await;
        self.output.join("\n")
    }
}
