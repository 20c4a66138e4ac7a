//! Fetching over HTTP/1.1: the manifest into memory, each image straight
//! into its file on the images tmpfs (the one copy in RAM, loop-mounted in
//! place), its SHA-256 computed as the bytes arrive. Redirects are
//! followed (at most [`MAX_REDIRECTS`], a loop is refused); a dropped or
//! stalled connection is resumed with `Range` from the last byte written;
//! refused connections, unknown-yet names and 5xx are retried with backoff
//! until nothing has moved for the budget. What the manifest says decides:
//! a body longer or shorter than its size, or another digest, is refused.

use super::NetError;
use nixlive_formats::digest::Hasher;
use nixlive_formats::net::http::{self, Head};
use nixlive_formats::net::url::Url;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub const MAX_REDIRECTS: usize = 8;
/// The largest manifest fetched (the same cap as one read from a medium).
pub const MAX_MANIFEST: u64 = nixlive_formats::manifest::MAX_BYTES;

/// How long to wait, and for whom to ask names.
pub struct Budget {
    /// Giving up when nothing moved for this long (`None`: never).
    pub idle: Option<Duration>,
    /// One read may wait this long before the connection counts as stalled.
    pub read: Duration,
    /// The first pause between attempts (doubling up to [`MAX_BACKOFF`]).
    pub backoff: Duration,
}

const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// Turns a host name into addresses (DNS in init; a stub in tests).
pub trait Resolve {
    fn resolve(&self, host: &str) -> Result<Vec<std::net::Ipv4Addr>, NetError>;
}

/// Where a body goes: a file on the tmpfs, or memory.
pub trait Sink {
    fn write_all(&mut self, b: &[u8]) -> io::Result<()>;
    /// Start over (a server that ignored `Range`).
    fn restart(&mut self) -> io::Result<()>;
}

impl Sink for Vec<u8> {
    fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        self.extend_from_slice(b);
        Ok(())
    }
    fn restart(&mut self) -> io::Result<()> {
        self.clear();
        Ok(())
    }
}

impl Sink for std::fs::File {
    fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        Write::write_all(self, b)
    }
    fn restart(&mut self) -> io::Result<()> {
        use std::io::Seek;
        self.set_len(0)?;
        self.rewind().map(|_| ())
    }
}

/// What one body is, as far as the fetcher must check it.
pub struct Want<'a> {
    /// The image's name (for messages), or "the manifest".
    pub what: &'a str,
    /// The exact size (an image), or the most allowed (the manifest).
    pub size: Size,
    /// Lowercase hex SHA-256 (empty: not known, the manifest).
    pub sha256: &'a str,
}

#[derive(Debug, Clone, Copy)]
pub enum Size {
    Exactly(u64),
    AtMost(u64),
}

/// Progress reports: bytes of this body so far, and a resume note.
pub trait Progress {
    fn bytes(&mut self, got: u64);
    fn resumed(&mut self, url: &Url, from: u64, why: &str);
}

/// Why one attempt ended without the whole body.
enum Attempt {
    /// Try again (from where the sink is), after a pause.
    Retry(NetError),
    Fatal(NetError),
}

/// Fetches `url` into `sink`, checking it against `want`. Returns the
/// number of bytes.
pub fn fetch(
    url: &Url,
    want: &Want,
    sink: &mut dyn Sink,
    budget: &Budget,
    dns: &dyn Resolve,
    progress: &mut dyn Progress,
) -> Result<u64, NetError> {
    let mut hasher = Hasher::new();
    let mut last_move = Instant::now();
    let mut pause = budget.backoff;
    let mut attempts = 0u32;
    loop {
        let before = hasher.len();
        let err = match attempt(url, want, sink, &mut hasher, budget, dns, progress) {
            Ok(()) => break,
            Err(Attempt::Fatal(e)) => return Err(e),
            Err(Attempt::Retry(e)) => e,
        };
        attempts += 1;
        if hasher.len() > before {
            last_move = Instant::now();
            pause = budget.backoff;
        }
        if budget.idle.is_some_and(|b| last_move.elapsed() + pause > b) {
            return Err(NetError::GaveUp {
                url: url.to_string(),
                secs: budget.idle.unwrap_or_default().as_secs(),
                attempts,
                last: Box::new(err),
            });
        }
        let from = hasher.len();
        let why = nixlive_formats::error::chain(&err);
        if from > 0 {
            progress.resumed(url, from, &why);
        } else {
            log::info!("{url}: {why}; trying again in {} ms", pause.as_millis());
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(MAX_BACKOFF);
    }
    let len = hasher.len();
    let got = hasher.finish_hex();
    if !want.sha256.is_empty() && got != want.sha256 {
        return Err(NetError::Digest {
            what: want.what.to_string(),
            url: url.to_string(),
            want: want.sha256.to_string(),
            got,
        });
    }
    Ok(len)
}

/// One request, following redirects; writes what arrives after what the
/// sink already holds (`hasher.len()` bytes).
fn attempt(
    start: &Url,
    want: &Want,
    sink: &mut dyn Sink,
    hasher: &mut Hasher,
    budget: &Budget,
    dns: &dyn Resolve,
    progress: &mut dyn Progress,
) -> Result<(), Attempt> {
    let mut url = start.clone();
    let mut seen = vec![url.to_string()];
    loop {
        let from = hasher.len();
        let mut conn = connect(&url, budget, dns)?;
        let req = http::request(&url.authority(), &url.path, from);
        conn.write_all(req.as_bytes()).map_err(|e| {
            Attempt::Retry(NetError::Io {
                url: url.to_string(),
                what: "sending the request",
                source: e,
            })
        })?;
        let (head, rest) = read_head(&mut conn, &url, budget)?;
        if head.is_redirect() {
            let to = head.location.as_deref().unwrap_or("");
            let next = url.join(to).map_err(|e| {
                Attempt::Fatal(NetError::BadRedirect {
                    url: url.to_string(),
                    why: e.to_string(),
                })
            })?;
            let shown = next.to_string();
            if seen.contains(&shown) || seen.len() > MAX_REDIRECTS {
                seen.push(shown);
                return Err(Attempt::Fatal(NetError::RedirectLoop {
                    chain: seen.join(" -> "),
                }));
            }
            log::info!("{url}: {} redirects to {next}", head.status);
            seen.push(shown);
            url = next;
            continue;
        }
        return body(
            &url, &head, rest, conn, want, sink, hasher, budget, progress,
        );
    }
}

fn connect(url: &Url, budget: &Budget, dns: &dyn Resolve) -> Result<TcpStream, Attempt> {
    let addrs = dns.resolve(&url.host).map_err(|e| match e {
        NetError::HostNotFound { .. } => Attempt::Fatal(e),
        e => Attempt::Retry(e),
    })?;
    let mut last = None;
    for a in addrs {
        let sa = SocketAddr::from((a, url.port));
        match TcpStream::connect_timeout(&sa, budget.read) {
            Ok(s) => {
                // not fatal: without them the budget still bounds the wait.
                let _ = s.set_read_timeout(Some(budget.read));
                let _ = s.set_write_timeout(Some(budget.read));
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = Some((sa, e)),
        }
    }
    let (addr, source) = last.unwrap_or_else(|| {
        (
            SocketAddr::from(([0, 0, 0, 0], url.port)),
            io::Error::other("no address"),
        )
    });
    Err(Attempt::Retry(NetError::Connect {
        url: url.to_string(),
        addr: addr.to_string(),
        source,
    }))
}

fn read_err(url: &Url, what: &'static str, budget: &Budget, e: io::Error) -> Attempt {
    Attempt::Retry(match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => NetError::Stalled {
            url: url.to_string(),
            secs: budget.read.as_secs_f64(),
        },
        _ => NetError::Io {
            url: url.to_string(),
            what,
            source: e,
        },
    })
}

/// Reads up to the end of the head; returns it and the body bytes read with it.
fn read_head(conn: &mut TcpStream, url: &Url, budget: &Budget) -> Result<(Head, Vec<u8>), Attempt> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = http::head_end(&buf) {
            let head = Head::parse(&buf[..end]).map_err(|e| {
                Attempt::Retry(NetError::BadResponse {
                    url: url.to_string(),
                    why: e.to_string(),
                })
            })?;
            return Ok((head, buf[end..].to_vec()));
        }
        if buf.len() > http::MAX_HEAD {
            return Err(Attempt::Retry(NetError::BadResponse {
                url: url.to_string(),
                why: http::HeadError::TooLong.to_string(),
            }));
        }
        match conn.read(&mut chunk) {
            Ok(0) => {
                return Err(Attempt::Retry(NetError::Io {
                    url: url.to_string(),
                    what: "reading the response",
                    source: io::ErrorKind::UnexpectedEof.into(),
                }));
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_err(url, "reading the response", budget, e)),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn body(
    url: &Url,
    head: &Head,
    rest: Vec<u8>,
    mut conn: TcpStream,
    want: &Want,
    sink: &mut dyn Sink,
    hasher: &mut Hasher,
    budget: &Budget,
    progress: &mut dyn Progress,
) -> Result<(), Attempt> {
    let u = url.to_string();
    let from = hasher.len();
    let fatal = |e| Err(Attempt::Fatal(e));
    match head.status {
        200 if from > 0 => {
            log::info!("{url}: the server ignored Range; starting over");
            sink.restart().map_err(|e| {
                Attempt::Fatal(NetError::Write {
                    url: u.clone(),
                    source: e,
                })
            })?;
            *hasher = Hasher::new();
        }
        200 => {}
        206 if from > 0 => match head.range {
            Some(r) if r.start == from => {}
            r => {
                return fatal(NetError::BadResponse {
                    url: u,
                    why: format!("asked for bytes {from}- and got {r:?}"),
                });
            }
        },
        404 | 410 => {
            return fatal(NetError::Status {
                url: u,
                status: head.status,
                reason: head.reason.clone(),
                hint: " (is the directory the builder wrote served unchanged?)",
            });
        }
        s if s >= 500 => {
            return Err(Attempt::Retry(NetError::Status {
                url: u,
                status: s,
                reason: head.reason.clone(),
                hint: "",
            }));
        }
        s => {
            return fatal(NetError::Status {
                url: u,
                status: s,
                reason: head.reason.clone(),
                hint: "",
            });
        }
    }
    if head.chunked {
        return fatal(NetError::BadResponse {
            url: u,
            why: "chunked transfer encoding; serve the files as they are (with Content-Length)"
                .into(),
        });
    }
    let from = hasher.len();
    // The most this response may still carry.
    let limit = match want.size {
        Size::Exactly(n) | Size::AtMost(n) => n.saturating_sub(from),
    };
    if let Some(len) = head.content_length {
        let total = from + len;
        match want.size {
            Size::Exactly(n) if total != n => {
                return fatal(NetError::Length {
                    what: want.what.to_string(),
                    url: u,
                    served: total,
                    want: n,
                });
            }
            Size::AtMost(n) if total > n => {
                return fatal(NetError::TooLarge { url: u, limit: n });
            }
            _ => {}
        }
    }
    let mut buf = vec![0u8; 256 << 10];
    let mut pending = rest;
    let mut this = 0u64;
    loop {
        let n = if !pending.is_empty() {
            let n = pending.len();
            buf[..n].copy_from_slice(&pending);
            pending.clear();
            n
        } else {
            match conn.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_err(url, "reading the body", budget, e)),
            }
        };
        if n == 0 {
            break;
        }
        if this + n as u64 > limit {
            return fatal(match want.size {
                Size::Exactly(w) => NetError::Length {
                    what: want.what.to_string(),
                    url: u,
                    served: from + this + n as u64,
                    want: w,
                },
                Size::AtMost(l) => NetError::TooLarge { url: u, limit: l },
            });
        }
        sink.write_all(&buf[..n]).map_err(|e| {
            Attempt::Fatal(NetError::Write {
                url: u.clone(),
                source: e,
            })
        })?;
        hasher.update(&buf[..n]);
        this += n as u64;
        progress.bytes(hasher.len());
        let whole = matches!(want.size, Size::Exactly(w) if hasher.len() == w);
        if whole || head.content_length.is_some_and(|l| this == l) {
            return Ok(());
        }
    }
    // The connection closed.
    match (want.size, head.content_length) {
        (Size::Exactly(n), _) if hasher.len() == n => Ok(()),
        (Size::AtMost(_), None) => Ok(()),
        (Size::Exactly(n), None) => Err(Attempt::Retry(dropped(&u, hasher.len(), n))),
        (_, Some(l)) => Err(Attempt::Retry(dropped(&u, hasher.len(), from + l))),
    }
}

fn dropped(url: &str, got: u64, want: u64) -> NetError {
    NetError::Io {
        url: url.to_string(),
        what: "reading the body",
        source: io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the connection closed after {got} of {want} bytes"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener};
    use std::sync::{Arc, Mutex};

    struct Stub;
    impl Resolve for Stub {
        fn resolve(&self, host: &str) -> Result<Vec<Ipv4Addr>, NetError> {
            match host {
                "127.0.0.1" | "localhost" => Ok(vec![Ipv4Addr::LOCALHOST]),
                h => Err(NetError::HostNotFound {
                    host: h.into(),
                    why: "stub".into(),
                }),
            }
        }
    }

    #[derive(Default)]
    struct Log {
        resumes: Vec<u64>,
        last: u64,
    }
    impl Progress for Log {
        fn bytes(&mut self, got: u64) {
            self.last = got;
        }
        fn resumed(&mut self, _: &Url, from: u64, _: &str) {
            self.resumes.push(from);
        }
    }

    type Handler = dyn Fn(usize, &str, &mut TcpStream) + Send + Sync;

    /// A server on a loopback port answering connection `n` with `h(n, request)`;
    /// returns the port and the requests it saw.
    fn serve(h: Box<Handler>) -> (u16, Arc<Mutex<Vec<String>>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        std::thread::spawn(move || {
            for (n, c) in l.incoming().enumerate() {
                let Ok(mut c) = c else { continue };
                let mut buf = vec![0u8; 4096];
                let mut req = Vec::new();
                while http::head_end(&req).is_none() {
                    let Ok(k) = c.read(&mut buf) else { break };
                    if k == 0 {
                        break;
                    }
                    req.extend_from_slice(&buf[..k]);
                }
                let req = String::from_utf8_lossy(&req).into_owned();
                s2.lock().unwrap().push(req.clone());
                h(n, &req, &mut c);
            }
        });
        (port, seen)
    }

    fn data() -> Vec<u8> {
        (0..100_000u32).map(|i| (i % 253) as u8).collect()
    }

    fn ok(c: &mut TcpStream, body: &[u8]) {
        let _ = write!(
            c,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let _ = c.write_all(body);
    }

    fn budget(idle_ms: u64) -> Budget {
        Budget {
            idle: Some(Duration::from_millis(idle_ms)),
            read: Duration::from_millis(300),
            backoff: Duration::from_millis(20),
        }
    }

    fn get(port: u16, path: &str, b: &Budget) -> (Result<u64, NetError>, Vec<u8>, Log) {
        let url = Url::parse(&format!("http://127.0.0.1:{port}{path}")).unwrap();
        let d = data();
        let sha = nixlive_formats::digest::sha256_hex(&d);
        let want = Want {
            what: "img.squashfs",
            size: Size::Exactly(d.len() as u64),
            sha256: &sha,
        };
        let mut sink = Vec::new();
        let mut log = Log::default();
        let r = fetch(&url, &want, &mut sink, b, &Stub, &mut log);
        (r, sink, log)
    }

    fn shown(e: &NetError) -> String {
        nixlive_formats::error::chain(e)
    }

    #[test]
    fn a_whole_image() {
        let (port, seen) = serve(Box::new(|_, _, c| ok(c, &data())));
        let (r, sink, log) = get(port, "/img.squashfs", &budget(2000));
        assert_eq!(r.unwrap(), 100_000);
        assert_eq!(sink, data());
        assert!(log.resumes.is_empty() && log.last == 100_000);
        let req = &seen.lock().unwrap()[0];
        assert!(req.starts_with("GET /img.squashfs HTTP/1.1\r\n"), "{req}");
        assert!(req.contains(&format!("Host: 127.0.0.1:{port}\r\n")));
    }

    #[test]
    fn a_dropped_connection_resumes_with_range() {
        let (port, seen) = serve(Box::new(|n, req, c| {
            let d = data();
            if n == 0 {
                let _ = write!(c, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", d.len());
                let _ = c.write_all(&d[..50_000]);
                return; // dropped
            }
            assert!(req.contains("Range: bytes=50000-\r\n"), "{req}");
            let _ = write!(
                c,
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 50000-99999/100000\r\nContent-Length: 50000\r\n\r\n"
            );
            let _ = c.write_all(&d[50_000..]);
        }));
        let (r, sink, log) = get(port, "/img", &budget(2000));
        assert_eq!(r.unwrap(), 100_000);
        assert_eq!(sink, data(), "one copy, in order");
        assert_eq!(log.resumes, [50_000]);
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[test]
    fn a_server_ignoring_range_starts_over() {
        let (port, _) = serve(Box::new(|n, _, c| {
            let d = data();
            if n == 0 {
                let _ = write!(c, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", d.len());
                let _ = c.write_all(&d[..1000]);
                return;
            }
            ok(c, &d);
        }));
        let (r, sink, _) = get(port, "/img", &budget(2000));
        assert_eq!(r.unwrap(), 100_000);
        assert_eq!(sink, data());
    }

    #[test]
    fn a_changed_byte_is_refused_naming_image_and_url() {
        let (port, _) = serve(Box::new(|_, _, c| {
            let mut d = data();
            d[777] ^= 1;
            ok(c, &d);
        }));
        let e = shown(&get(port, "/set/img.squashfs", &budget(2000)).0.unwrap_err());
        assert!(
            e.starts_with(&format!(
                "img.squashfs: http://127.0.0.1:{port}/set/img.squashfs has sha256 "
            )) && e.contains("refused"),
            "{e}"
        );
    }

    #[test]
    fn not_found_fails_at_once() {
        let (port, seen) = serve(Box::new(|_, _, c| {
            let _ = c.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        }));
        let t = Instant::now();
        let e = shown(&get(port, "/gone", &budget(5000)).0.unwrap_err());
        assert!(t.elapsed() < Duration::from_secs(2));
        assert_eq!(
            e,
            format!(
                "http://127.0.0.1:{port}/gone: HTTP 404 Not Found (is the directory the builder wrote served unchanged?)"
            )
        );
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[test]
    fn server_errors_are_retried_then_given_up() {
        let (port, seen) = serve(Box::new(|_, _, c| {
            let _ = c.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n");
        }));
        let e = shown(&get(port, "/img", &budget(400)).0.unwrap_err());
        assert!(
            e.contains("gave up after") && e.ends_with("HTTP 500 Internal Server Error"),
            "{e}"
        );
        assert!(seen.lock().unwrap().len() >= 2);
    }

    #[test]
    fn a_stalled_body_times_out() {
        let (port, _) = serve(Box::new(|_, _, c| {
            let d = data();
            let _ = write!(c, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", d.len());
            let _ = c.write_all(&d[..10]);
            std::thread::sleep(Duration::from_secs(3));
        }));
        let t = Instant::now();
        let e = shown(&get(port, "/img", &budget(1000)).0.unwrap_err());
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        assert!(
            e.contains("the transfer stalled (no byte for 0.3 s)"),
            "{e}"
        );
        assert!(e.contains("gave up"), "{e}");
    }

    #[test]
    fn redirects_are_followed_and_loops_refused() {
        let (port, _) = serve(Box::new(|_, req, c| {
            if req.starts_with("GET /old ") {
                let _ = c.write_all(b"HTTP/1.1 301 Moved\r\nLocation: /new/img\r\n\r\n");
            } else if req.starts_with("GET /new/img ") {
                ok(c, &data());
            } else if req.starts_with("GET /a ") {
                let _ = c.write_all(b"HTTP/1.1 302 Found\r\nLocation: b\r\n\r\n");
            } else {
                let _ = c.write_all(b"HTTP/1.1 302 Found\r\nLocation: /a\r\n\r\n");
            }
        }));
        assert_eq!(get(port, "/old", &budget(2000)).0.unwrap(), 100_000);
        let e = shown(&get(port, "/a", &budget(2000)).0.unwrap_err());
        assert_eq!(
            e,
            format!(
                "redirect loop: http://127.0.0.1:{port}/a -> http://127.0.0.1:{port}/b -> http://127.0.0.1:{port}/a"
            )
        );
    }

    #[test]
    fn more_or_fewer_bytes_than_the_manifest_says() {
        let (port, _) = serve(Box::new(|_, req, c| {
            let mut d = data();
            if req.starts_with("GET /long ") {
                d.push(0);
            } else {
                d.pop();
            }
            ok(c, &d);
        }));
        let e = shown(&get(port, "/long", &budget(2000)).0.unwrap_err());
        assert!(e.ends_with("/long serves 100001 bytes, but the manifest says 100000: the server has another file than the manifest lists"), "{e}");
        let e = shown(&get(port, "/short", &budget(2000)).0.unwrap_err());
        assert!(e.contains("/short serves 99999 bytes"), "{e}");
        // Without a Content-Length, the extra byte is caught as it arrives.
        let (port, _) = serve(Box::new(|_, _, c| {
            let _ = c.write_all(b"HTTP/1.0 200 OK\r\n\r\n");
            let mut d = data();
            d.push(1);
            let _ = c.write_all(&d);
        }));
        let e = shown(&get(port, "/x", &budget(2000)).0.unwrap_err());
        assert!(e.contains("serves 100001 bytes"), "{e}");
    }

    #[test]
    fn refused_until_the_server_comes_up() {
        // Find a free port, then let the server take it only after a while.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = shown(&get(port, "/img", &budget(300)).0.unwrap_err());
        assert!(
            e.contains("cannot connect to 127.0.0.1") && e.contains("gave up"),
            "{e}"
        );
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
            let (mut c, _) = l.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            ok(&mut c, &data());
        });
        assert_eq!(get(port, "/img", &budget(3000)).0.unwrap(), 100_000);
    }

    #[test]
    fn unknown_hosts_fail_at_once_and_manifests_are_capped() {
        let url = Url::parse("http://nowhere.invalid/m").unwrap();
        let want = Want {
            what: "the manifest",
            size: Size::AtMost(10),
            sha256: "",
        };
        let e = fetch(
            &url,
            &want,
            &mut Vec::new(),
            &budget(5000),
            &Stub,
            &mut Log::default(),
        )
        .unwrap_err();
        assert_eq!(shown(&e), "host not found: nowhere.invalid (stub)");
        let (port, _) = serve(Box::new(|_, _, c| {
            let _ = c.write_all(b"HTTP/1.0 200 OK\r\n\r\n0123456789ABC");
        }));
        let url = Url::parse(&format!("http://127.0.0.1:{port}/m")).unwrap();
        let e = fetch(
            &url,
            &want,
            &mut Vec::new(),
            &budget(2000),
            &Stub,
            &mut Log::default(),
        )
        .unwrap_err();
        assert!(shown(&e).ends_with("more than 10 bytes: not a manifest nixlive wrote"));
        let (port, _) = serve(Box::new(|_, _, c| {
            let _ = c.write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            );
        }));
        let url = Url::parse(&format!("http://127.0.0.1:{port}/m")).unwrap();
        let e = fetch(
            &url,
            &want,
            &mut Vec::new(),
            &budget(2000),
            &Stub,
            &mut Log::default(),
        )
        .unwrap_err();
        assert!(shown(&e).contains("chunked"));
    }
}
