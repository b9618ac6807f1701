//! The demo page's web server: one folder (the built page, `dist/`) on 127.0.0.1, as
//! `cargo xtask demo` serves it. The end-to-end tests and the page's benchmark use the same
//! server (`tests/support/page.rs` includes this file), so what they test is what a visitor gets.
//!
//! - A file that exists is sent with its content type and length; a missing one is answered
//!   404 (never with `index.html`, which a page would take for the file it asked for).
//! - Every answer says `Cache-Control: no-cache` (a rebuilt page is picked up on reload),
//!   `X-Content-Type-Options: nosniff`, and the cross-origin isolation headers
//!   (`Cross-Origin-Opener-Policy: same-origin`, `Cross-Origin-Embedder-Policy: require-corp`)
//!   that a page needs for shared memory between threads.
//! - Answers are sent without Nagle's delay (`TCP_NODELAY`): with it, each small file on a
//!   kept-alive connection waited 44 ms for the browser's delayed acknowledgement.
//! - Only GET and HEAD are served: the page sends nothing. The tests' server also logs every
//!   request (method and target), so that a test can check what the page asked for.
//! - Each connection is served on a thread of its own (`std::net`, request heads parsed by
//!   `httparse`), kept alive until the browser closes it or leaves it idle for 30 s. tiny_http
//!   0.12, used before, hands connections to a thread pool that can queue a new connection
//!   behind kept-alive ones when several arrive at once: the page's parallel downloads then
//!   waited until the browser closed an idle connection.

use std::{
    fs::File,
    io::{self, BufRead, BufReader, BufWriter, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Component, Path, PathBuf},
    sync::{Arc, mpsc::Sender},
    time::Duration,
};

/// The content type a file is served with, by its extension.
pub fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("svg") => "image/svg+xml",
        Some("ico") => "image/x-icon",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The file under `root` that a request target names (`/` is `index.html`), or `None` for a
/// target that leaves `root` or is not plain.
pub fn file_for(root: &Path, target: &str) -> Option<PathBuf> {
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let decoded = percent_decode(path)?;
    let relative = decoded.trim_start_matches('/');
    let relative = if relative.is_empty() {
        "index.html"
    } else {
        relative
    };
    let relative = Path::new(relative);
    relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then(|| root.join(relative))
}

/// `%XX` escapes decoded; `None` when one is malformed or the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The headers every answer carries.
const COMMON_HEADERS: &str = "Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n";
/// The headers that make the page cross-origin isolated (shared memory for its threads), on
/// every file served unless the listener was made [`Listener::without_isolation`].
const ISOLATION_HEADERS: &str =
    "Cross-Origin-Opener-Policy: same-origin\r\nCross-Origin-Embedder-Policy: require-corp\r\n";

/// One request as the server received it, in the order received.
#[derive(Debug, Clone)]
// Read by the tests (`tests/support/page.rs`), not by `cargo xtask demo`.
#[allow(dead_code)]
pub struct Logged {
    pub method: String,
    pub target: String,
}

/// A request's head: its method, target, and whether the connection stays open after it.
struct Head {
    method: String,
    target: String,
    keep_alive: bool,
}

/// The longest request head read (the page's requests are a few hundred bytes).
const MAX_HEAD: usize = 16 * 1024;
/// How long an idle kept-alive connection is held before it is closed.
const IDLE: Duration = Duration::from_secs(30);

/// Reads the next request head from `reader`: `Ok(None)` when the client closed the
/// connection, `Err` for a head that is not HTTP/1.x or too long.
fn read_head(reader: &mut BufReader<TcpStream>) -> Result<Option<Head>, &'static str> {
    let mut raw = Vec::new();
    loop {
        let start = raw.len();
        let room = (MAX_HEAD + 1 - start) as u64;
        // A read error (the idle timeout, a reset) ends the connection like a close.
        let read = reader
            .by_ref()
            .take(room)
            .read_until(b'\n', &mut raw)
            .unwrap_or(0);
        if raw.len() > MAX_HEAD {
            return Err("the request head is too long");
        }
        if read == 0 {
            return if raw.is_empty() {
                Ok(None)
            } else {
                Err("the request ended inside its head")
            };
        }
        let blank = matches!(&raw[start..], b"\r\n" | b"\n");
        if blank && start == 0 {
            // Blank lines before a request are allowed (RFC 9112 §2.2).
            raw.clear();
        } else if blank {
            break;
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(&raw) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err("not an HTTP request"),
    }
    let version = request.version.unwrap_or(0);
    let connection = request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("connection"))
        .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase());
    let has_body = request.headers.iter().any(|h| {
        (h.name.eq_ignore_ascii_case("content-length") && h.value != b"0")
            || h.name.eq_ignore_ascii_case("transfer-encoding")
    });
    let keep_alive = !has_body
        && match connection.as_deref() {
            Some(c) if c.contains("close") => false,
            Some(c) if c.contains("keep-alive") => true,
            _ => version == 1,
        };
    Ok(Some(Head {
        method: request.method.unwrap_or("").to_string(),
        target: request.path.unwrap_or("").to_string(),
        keep_alive,
    }))
}

/// Writes an answer: `status`, the content type and length, the common headers, and `body`
/// (left out for HEAD).
fn respond(
    out: &mut impl Write,
    status: &str,
    content_type: &str,
    length: u64,
    extra: &str,
    keep_alive: bool,
    body: Option<&mut dyn Read>,
) -> io::Result<()> {
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n\
         {COMMON_HEADERS}{extra}Connection: {}\r\n\r\n",
        if keep_alive { "keep-alive" } else { "close" }
    )?;
    if let Some(body) = body {
        io::copy(body, out)?;
    }
    out.flush()
}

fn respond_text(
    out: &mut impl Write,
    status: &str,
    text: &str,
    extra: &str,
    keep_alive: bool,
    head_only: bool,
) -> io::Result<()> {
    let mut body = text.as_bytes();
    respond(
        out,
        status,
        "text/plain; charset=utf-8",
        text.len() as u64,
        extra,
        keep_alive,
        (!head_only).then_some(&mut body as &mut dyn Read),
    )
}

/// Answers one request from the files under `root`, logging it to `log` when there is one.
fn answer(
    head: &Head,
    out: &mut impl Write,
    root: &Path,
    log: Option<&Sender<Logged>>,
    isolated: bool,
) -> io::Result<()> {
    let Head {
        method,
        target,
        keep_alive,
    } = head;
    let keep_alive = *keep_alive;
    if let Some(log) = log {
        let _ = log.send(Logged {
            method: method.clone(),
            target: target.clone(),
        });
    }
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return respond_text(
            out,
            "405 Method Not Allowed",
            &format!("{method} is not served here: the page only reads files\n"),
            "Allow: GET, HEAD\r\n",
            false,
            false,
        );
    }
    let Some(path) = file_for(root, target) else {
        return respond_text(
            out,
            "400 Bad Request",
            &format!("{target} does not name a file of the page\n"),
            "",
            keep_alive,
            head_only,
        );
    };
    match File::open(&path).and_then(|f| f.metadata().map(|m| (f, m))) {
        Ok((mut file, meta)) if meta.is_file() => respond(
            out,
            "200 OK",
            content_type(&path),
            meta.len(),
            if isolated { ISOLATION_HEADERS } else { "" },
            keep_alive,
            (!head_only).then_some(&mut file as &mut dyn Read),
        ),
        _ => respond_text(
            out,
            "404 Not Found",
            &format!("{target} is not part of the page\n"),
            "",
            keep_alive,
            head_only,
        ),
    }
}

/// Serves one connection: its requests one after another, until the client closes it, asks
/// to, or leaves it idle for [`IDLE`].
fn connection(stream: TcpStream, root: &Path, log: Option<&Sender<Logged>>, isolated: bool) {
    let _ = stream.set_read_timeout(Some(IDLE));
    // Each answer goes out as soon as it is written (no Nagle delay; see the module's notes).
    let _ = stream.set_nodelay(true);
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut out = BufWriter::new(writer);
    loop {
        match read_head(&mut reader) {
            Ok(Some(head)) => {
                // A visitor who closes the tab mid-download is not an error.
                if answer(&head, &mut out, root, log, isolated).is_err() || !head.keep_alive {
                    return;
                }
            }
            Ok(None) => return,
            Err(problem) => {
                let _ = respond_text(
                    &mut out,
                    "400 Bad Request",
                    &format!("{problem}\n"),
                    "",
                    false,
                    false,
                );
                return;
            }
        }
    }
}

/// A server bound to its port, not yet answering.
pub struct Listener {
    listener: TcpListener,
    pub address: SocketAddr,
    isolated: bool,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Listener({})", self.address)
    }
}

impl Listener {
    /// Listens on 127.0.0.1:`port` (0 picks a free port).
    pub fn bind(port: u16) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port)).map_err(|e| {
            if e.kind() == io::ErrorKind::AddrInUse {
                io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "port {port} on 127.0.0.1 is in use (is the demo already running?): stop \
                         that program, or serve on another port with `cargo xtask demo --port {}`",
                        port.wrapping_add(1)
                    ),
                )
            } else {
                io::Error::other(format!("cannot listen on 127.0.0.1:{port}: {e}"))
            }
        })?;
        let address = listener.local_addr()?;
        Ok(Listener {
            listener,
            address,
            isolated: true,
        })
    }

    /// Serves without the cross-origin isolation headers, as a plain static host does (the
    /// page then runs its CPU backend on one thread; tests only).
    #[allow(dead_code)]
    pub fn without_isolation(mut self) -> Self {
        self.isolated = false;
        self
    }

    /// Answers requests with the files under `root` from a thread of its own, each connection
    /// on a thread of its own (so no connection ever waits for another), until the process
    /// ends; `log` takes every request (tests only).
    pub fn serve(self, root: PathBuf, log: Option<Sender<Logged>>) {
        let root = Arc::new(root);
        let (listener, isolated) = (self.listener, self.isolated);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (root, log) = (Arc::clone(&root), log.clone());
                std::thread::spawn(move || connection(stream, &root, log.as_ref(), isolated));
            }
        });
    }
}
