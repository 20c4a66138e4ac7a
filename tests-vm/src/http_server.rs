//! The HTTP servers the HTTP netboot tests serve a `netboot --http` set
//! with: [`Server`], a small one of the test's own that serves a
//! directory (with `Range`) and injects faults on the way, and
//! [`Nginx`], Debian's nginx started on a loopback port with the
//! project's configuration (`tests-vm/nginx.conf`), never `/etc/nginx`.
//! QEMU's user network lets the guest reach the host's loopback at
//! 10.0.2.2.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the test server does wrong, to one file (named by its URL path,
/// e.g. `/store-0.squashfs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The first response sends the whole length in its head, then half
    /// the body, then closes the connection.
    DropAtHalf(String),
    /// One byte in the middle is changed, in every response.
    FlipByte(String),
    /// 404 Not Found.
    NotFound(String),
    /// The first response sends a quarter of the body, later ones none of
    /// it; then nothing more (the connection stays open).
    Stall(String),
}

/// A request as the server saw it: `GET /path` and its `Range`, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub path: String,
    pub range: Option<String>,
}

pub struct Server {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// A free loopback port (bound, then let go, for a server that starts later).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding a loopback port")
}

impl Server {
    /// Serves `dir` on `listener` from now on, with `faults`.
    pub fn start(listener: TcpListener, dir: &Path, faults: Vec<Fault>) -> Server {
        let port = listener.local_addr().expect("local address").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new((dir.to_path_buf(), faults, seen.clone()));
        std::thread::spawn(move || {
            for c in listener.incoming().flatten() {
                let state = state.clone();
                std::thread::spawn(move || {
                    let (dir, faults, seen) = &*state;
                    // not fatal: a guest that hangs up is its own business.
                    let _ = serve_one(c, dir, faults, seen);
                });
            }
        });
        Server { port, seen }
    }

    /// Serves `dir` on a new loopback port.
    pub fn serve(dir: &Path, faults: Vec<Fault>) -> Server {
        let l = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        Server::start(l, dir, faults)
    }

    /// Serves `dir` on `port`, but only `after` from now: until then the
    /// port refuses connections.
    pub fn serve_later(dir: &Path, port: u16, after: Duration) -> Server {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (dir, seen2) = (dir.to_path_buf(), seen.clone());
        std::thread::spawn(move || {
            std::thread::sleep(after);
            let l = TcpListener::bind(("127.0.0.1", port)).expect("binding the late port");
            let s = Server::start(l, &dir, Vec::new());
            // Hand the requests over: the late server keeps its own list.
            loop {
                std::thread::sleep(Duration::from_millis(200));
                *seen2.lock().unwrap() = s.requests();
            }
        });
        Server { port, seen }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve_one(
    mut c: TcpStream,
    dir: &Path,
    faults: &[Fault],
    seen: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    c.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = c.read(&mut buf)?;
        if n == 0 || req.len() > 65536 {
            return Ok(());
        }
        req.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&req).into_owned();
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or("");
    let path = first.split(' ').nth(1).unwrap_or("/").to_string();
    let range = lines.find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("range")
            .then(|| v.trim().to_string())
    });
    let first_time = {
        let mut s = seen.lock().unwrap();
        let first_time = !s.iter().any(|x| x.path == path);
        s.push(Seen {
            path: path.clone(),
            range: range.clone(),
        });
        first_time
    };
    let fault = |f: fn(&str) -> Fault| faults.contains(&f(&path));
    let file = dir.join(path.trim_start_matches('/'));
    let body = match std::fs::read(&file) {
        Ok(b) if !path.contains("..") && !fault(|p| Fault::NotFound(p.into())) => b,
        _ => {
            return c.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found",
            );
        }
    };
    let mut body = body;
    if fault(|p| Fault::FlipByte(p.into())) {
        let mid = body.len() / 2;
        body[mid] ^= 0x20;
    }
    let from = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n < body.len());
    let (head, part) = match from {
        Some(n) => (
            format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {n}-{}/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len() - 1,
                body.len(),
                body.len() - n
            ),
            &body[n..],
        ),
        None => (
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n",
                body.len()
            ),
            &body[..],
        ),
    };
    c.write_all(head.as_bytes())?;
    if first_time && fault(|p| Fault::DropAtHalf(p.into())) {
        c.write_all(&part[..part.len() / 2])?;
        return c.shutdown(std::net::Shutdown::Both);
    }
    if fault(|p| Fault::Stall(p.into())) {
        if first_time {
            c.write_all(&part[..part.len() / 4])?;
        }
        std::thread::sleep(Duration::from_secs(600));
        return Ok(());
    }
    c.write_all(part)
}

/// Debian's nginx serving `root` on a loopback port, configured from the
/// project's `tests-vm/nginx.conf` (pid, logs and temporary files in a
/// scratch directory); stopped when dropped.
pub struct Nginx {
    pub port: u16,
    child: Child,
    pub scratch: PathBuf,
}

impl Nginx {
    pub fn start(root: &Path, scratch: &Path) -> Result<Nginx, String> {
        let port = free_port();
        let template = crate::artifacts::workspace_root().join("tests-vm/nginx.conf");
        let conf = std::fs::read_to_string(&template)
            .map_err(|e| format!("{}: {e}", template.display()))?
            .replace("@PORT@", &port.to_string())
            .replace("@ROOT@", &root.display().to_string())
            .replace("@SCRATCH@", &scratch.display().to_string());
        std::fs::create_dir_all(scratch).map_err(|e| e.to_string())?;
        let conf_path = scratch.join("nginx.conf");
        std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
        let child = Command::new("nginx")
            .arg("-p")
            .arg(scratch)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(scratch.join("error.log"))
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("starting nginx (package nginx-light, scripts/install-deps.sh): {e}")
            })?;
        let n = Nginx {
            port,
            child,
            scratch: scratch.to_path_buf(),
        };
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(n);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("nginx did not listen on port {port} within 5 s"))
    }

    /// nginx's access log.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.scratch.join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // not fatal: nginx may have exited already.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
