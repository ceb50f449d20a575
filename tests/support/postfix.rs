//! Real Postfix for tests: a private instance in a temporary directory (its
//! own main.cf, master.cf, queue and maillog, listening on a free loopback
//! port, relaying everything to one `relayhost`), and an `smtp-sink` that
//! writes every message it receives to a file.
//!
//! Postfix's own service is never used or touched. Starting an instance
//! needs root (as in CI): `postfix start` sets up queue ownership and
//! privileged daemons. Every wait is a bounded poll; a timeout panics with
//! the tail of the instance's maillog, which is where Postfix says why.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// A loopback address nothing listens on right now (the listener is
/// dropped, so a small race with other processes remains).
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("no free loopback port")
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after
/// `timeout` with `what` and the text `context` gives at that moment.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                context()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether an SMTP server at `addr` greets with 220.
fn greets(addr: SocketAddr) -> bool {
    let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut line = String::new();
    let ok = BufReader::new(&stream).read_line(&mut line).is_ok() && line.starts_with("220");
    let _ = (&stream).write_all(b"QUIT\r\n");
    ok
}

/// Runs a command, panicking with its output when it fails.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (is Postfix installed?): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed: {text}");
    text
}

/// A private Postfix instance; stopped when dropped.
pub struct Postfix {
    /// Name in logs and Received fields: `<name>.test`.
    pub name: String,
    /// Where its smtpd listens.
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Postfix {
    /// Starts an instance named `name` (its `myhostname` is `<name>.test`)
    /// with smtpd on `listen` (see [`free_addr`]), relaying all mail to
    /// `relayhost`. `extra_main_cf` is appended to main.cf (later settings
    /// win); `files` are written into the config directory first, e.g. an
    /// access table that `extra_main_cf` names as
    /// `texthash:$config_directory/FILE`.
    pub fn start(
        name: &str,
        listen: SocketAddr,
        relayhost: SocketAddr,
        extra_main_cf: &str,
        files: &[(&str, &str)],
    ) -> Postfix {
        let dir = tempfile::tempdir().unwrap();
        let addr = listen;
        let pf = Postfix {
            name: name.to_owned(),
            addr,
            dir,
        };
        let root = pf.dir.path();
        std::fs::create_dir(root.join("queue")).unwrap();
        std::fs::create_dir(root.join("data")).unwrap();
        // The data directory belongs to the mail owner (postfix check says so).
        run(Command::new("chown").arg("postfix").arg(root.join("data")));
        for (file, text) in files {
            std::fs::write(root.join(file), text).unwrap();
        }
        std::fs::write(root.join("main.cf"), pf.main_cf(relayhost, extra_main_cf)).unwrap();
        std::fs::write(root.join("master.cf"), master_cf(addr)).unwrap();
        run(Command::new("postfix").arg("-c").arg(root).arg("start"));
        wait_for(
            &format!("postfix {name} to listen on {addr}"),
            WAIT,
            || greets(addr).then_some(()),
            || pf.maillog_tail(30),
        );
        pf
    }

    fn main_cf(&self, relayhost: SocketAddr, extra: &str) -> String {
        let root = self.dir.path().display();
        let name = &self.name;
        format!(
            "# A private test instance: everything is relayed to relayhost.
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = {name}.test
mydomain = {name}.test
myorigin = $myhostname
syslog_name = postfix-{name}
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_recipient_maps =
relayhost = [{ip}]:{port}
smtpd_tls_security_level = none
smtp_tls_security_level = none
smtpd_peername_lookup = no
# Deliver at once and retry quickly.
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
{extra}
",
            ip = relayhost.ip(),
            port = relayhost.port(),
        )
    }

    pub fn config_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The whole maillog so far (empty before the first line).
    pub fn maillog(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    /// The last `n` lines of the maillog, headed for a panic message.
    pub fn maillog_tail(&self, n: usize) -> String {
        let log = self.maillog();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(n)..].join("\n");
        format!(
            "--- last maillog lines of postfix {} ---\n{tail}",
            self.name
        )
    }

    /// Maillog lines that contain every one of `needles`.
    pub fn log_lines(&self, needles: &[&str]) -> Vec<String> {
        self.maillog()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_owned)
            .collect()
    }

    /// Waits until at least `count` maillog lines contain every one of
    /// `needles`; returns those lines.
    pub fn wait_for_log(&self, needles: &[&str], count: usize) -> Vec<String> {
        wait_for(
            &format!(
                "{count} maillog line(s) of postfix {} with {needles:?}",
                self.name
            ),
            WAIT,
            || {
                let lines = self.log_lines(needles);
                (lines.len() >= count).then_some(lines)
            },
            || self.maillog_tail(40),
        )
    }

    /// The queue as `postqueue -j` shows it: one JSON object per message.
    pub fn queue(&self) -> Vec<serde_json::Value> {
        let text = run(Command::new("postqueue")
            .arg("-c")
            .arg(self.dir.path())
            .arg("-j"));
        text.lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn master_pid(&self) -> Option<u32> {
        let path = self.dir.path().join("queue/pid/master.pid");
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let pid = self.master_pid();
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(self.dir.path())
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // Wait for the master to go, so the directory is not removed under
        // it; bounded, and never a panic inside Drop.
        if let Some(pid) = pid {
            let proc = PathBuf::from(format!("/proc/{pid}"));
            let start = Instant::now();
            while proc.exists() && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// /etc/postfix/master.cf with the public `smtp inet` listener moved to
/// `addr` and no service chrooted (a temporary queue has no chroot files).
fn master_cf(addr: SocketAddr) -> String {
    let proto = std::fs::read_to_string("/etc/postfix/master.cf")
        .expect("/etc/postfix/master.cf (is Postfix installed?)");
    let mut out = String::new();
    for line in proto.lines() {
        let mut fields: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        let service = !line.starts_with(['#', ' ', '\t']) && fields.len() >= 8;
        if !service {
            out.push_str(line);
        } else {
            if fields[0] == "smtp" && fields[1] == "inet" {
                fields[0] = addr.to_string();
            }
            fields[4] = "n".into(); // chroot
            out.push_str(&fields.join("  "));
        }
        out.push('\n');
    }
    out
}

/// One transaction an `smtp-sink` wrote to its dump directory.
#[derive(Debug, Clone)]
pub struct Dump {
    pub file: PathBuf,
    /// The MAIL FROM address (without brackets and parameters).
    pub sender: String,
    /// The RCPT TO addresses, in order.
    pub recipients: Vec<String>,
    /// The message as the client sent it (the sink undoes dot-stuffing),
    /// with CRLF line ends.
    pub message: Vec<u8>,
}

/// `smtp-sink` capturing each transaction to a file; killed when dropped.
pub struct Sink {
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
    child: Child,
}

impl Sink {
    /// A sink that writes every transaction to a file (see [`Sink::dumps`]).
    pub fn start() -> Sink {
        Self::spawn(true)
    }

    fn spawn(dump: bool) -> Sink {
        let dir = tempfile::tempdir().unwrap();
        let dumps = dir.path().join("dumps");
        std::fs::create_dir(&dumps).unwrap();
        // smtp-sink run by root drops to -u; that user writes the dumps.
        run(Command::new("chmod").arg("0777").arg(&dumps));
        let addr = free_addr();
        let log = std::fs::File::create(dir.path().join("sink.log")).unwrap();
        let mut cmd = Command::new("smtp-sink");
        cmd.args(["-u", "nobody", "-h", "sink.test"]);
        if dump {
            cmd.arg("-d").arg(format!("{}/%H%M%S.", dumps.display()));
        }
        let child = cmd
            .arg(addr.to_string())
            .arg("64")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("smtp-sink (package postfix) is not installed");
        let sink = Sink { addr, dir, child };
        // The probe is a session without MAIL: it leaves no dump file.
        wait_for(
            &format!("smtp-sink on {addr}"),
            WAIT,
            || greets(addr).then_some(()),
            || sink.log(),
        );
        sink
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("sink.log")).unwrap_or_default();
        format!("--- smtp-sink stderr ---\n{text}")
    }

    /// Every transaction written so far, in file-name order. Only call it
    /// once the sender has been told the transactions ended (a file is
    /// complete when the sink has answered the final dot).
    pub fn dumps(&self) -> Vec<Dump> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("dumps"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        files.into_iter().map(|f| parse_dump(&f)).collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads smtp-sink's dump format: its own `X-*` records, its Received
/// field, then the message (LF line ends, dot-stuffing undone), then one
/// empty line.
fn parse_dump(file: &Path) -> Dump {
    let text = std::fs::read_to_string(file).unwrap();
    let mut sender = String::new();
    let mut recipients = Vec::new();
    let mut rest = text.as_str();
    while let Some((line, tail)) = rest.split_once('\n') {
        if let Some(v) = line.strip_prefix("X-Mail-Args: ") {
            sender = bracketed(v);
        } else if let Some(v) = line.strip_prefix("X-Rcpt-Args: ") {
            recipients.push(bracketed(v));
        } else if !line.starts_with("X-") {
            break; // the sink's Received field: it belongs to the message
        }
        rest = tail;
    }
    let body = rest.strip_suffix('\n').unwrap_or(rest);
    let mut message = Vec::with_capacity(body.len() + body.len() / 40);
    for line in body.split_inclusive('\n') {
        let line = line.strip_suffix('\n').unwrap_or(line);
        message.extend_from_slice(line.as_bytes());
        message.extend_from_slice(b"\r\n");
    }
    Dump {
        file: file.to_owned(),
        sender,
        recipients,
        message,
    }
}

/// `<a@b> PARAM=...` → `a@b`.
fn bracketed(args: &str) -> String {
    let a = args.split_whitespace().next().unwrap_or("");
    a.trim_start_matches('<').trim_end_matches('>').to_owned()
}

/// Sends `message` to `server` with Python's smtplib (EHLO client.test);
/// panics unless the server accepted every recipient.
pub fn send_with_smtplib(server: SocketAddr, from: &str, to: &[&str], message: &[u8]) {
    if let Err(e) = try_smtplib(server, from, to, message) {
        panic!("smtplib: {e}");
    }
}

/// Sends `message` with smtplib; the client's error (the server's refusal
/// as smtplib reports it) when the message was not accepted for every
/// recipient.
pub fn try_smtplib(
    server: SocketAddr,
    from: &str,
    to: &[&str],
    message: &[u8],
) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("message.eml");
    std::fs::write(&path, message).unwrap();
    let script = "import smtplib, sys\n\
        host, port, sender, rcpts, path = sys.argv[1:6]\n\
        s = smtplib.SMTP(host, int(port), local_hostname='client.test', timeout=30)\n\
        refused = s.sendmail(sender, rcpts.split(','), open(path, 'rb').read())\n\
        s.quit()\n\
        assert not refused, refused\n";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(server.ip().to_string())
        .arg(server.port().to_string())
        .arg(from)
        .arg(to.join(","))
        .arg(&path)
        .output()
        .expect("python3 is needed for the client");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The fields of a header block (each with its continuation lines and
/// CRLFs), split into (Received fields, every other field).
pub fn header_fields(block: &str) -> (Vec<String>, Vec<String>) {
    let mut all: Vec<String> = Vec::new();
    for line in block.split_inclusive("\r\n") {
        match all.last_mut() {
            Some(last) if line.starts_with([' ', '\t']) => last.push_str(line),
            _ => all.push(line.to_owned()),
        }
    }
    all.into_iter()
        .partition(|f| f.to_ascii_lowercase().starts_with("received:"))
}
