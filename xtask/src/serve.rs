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
//! - Only GET and HEAD are served: the page sends nothing. The tests' server also logs every
//!   request (method and target), so that a test can check what the page asked for.

use std::{
    io,
    net::SocketAddr,
    path::{Component, Path, PathBuf},
    sync::{Arc, mpsc::Sender},
};

use tiny_http::{Header, Method, Request, Response, StatusCode};

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

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid ASCII header")
}

fn with_common_headers<R: io::Read>(response: Response<R>) -> Response<R> {
    response
        .with_header(header("Cache-Control", "no-cache"))
        .with_header(header("X-Content-Type-Options", "nosniff"))
        .with_header(header("Cross-Origin-Opener-Policy", "same-origin"))
        .with_header(header("Cross-Origin-Embedder-Policy", "require-corp"))
}

fn text(status: u16, body: String) -> Response<io::Cursor<Vec<u8>>> {
    Response::from_string(body)
        .with_status_code(StatusCode(status))
        .with_header(header("Content-Type", "text/plain; charset=utf-8"))
}

/// One request as the server received it, in the order received.
#[derive(Debug, Clone)]
// Read by the tests (`tests/support/page.rs`), not by `cargo xtask demo`.
#[allow(dead_code)]
pub struct Logged {
    pub method: String,
    pub target: String,
}

/// Answers one request from the files under `root`, logging it to `log` when there is one.
fn answer(request: Request, root: &Path, log: Option<&Sender<Logged>>) {
    let method = request.method().clone();
    let target = request.url().to_string();
    if let Some(log) = log {
        let _ = log.send(Logged {
            method: method.to_string(),
            target: target.clone(),
        });
    }
    if method != Method::Get && method != Method::Head {
        let _ = request.respond(with_common_headers(
            text(
                405,
                format!("{method} is not served here: the page only reads files\n"),
            )
            .with_header(header("Allow", "GET, HEAD")),
        ));
        return;
    }
    let Some(path) = file_for(root, &target) else {
        let _ = request.respond(with_common_headers(text(
            400,
            format!("{target} does not name a file of the page\n"),
        )));
        return;
    };
    let file = if path.is_file() {
        std::fs::File::open(&path).ok()
    } else {
        None
    };
    let response = match file {
        Some(file) => {
            let response =
                Response::from_file(file).with_header(header("Content-Type", content_type(&path)));
            request.respond(with_common_headers(response))
        }
        None => request.respond(with_common_headers(text(
            404,
            format!("{target} is not part of the page\n"),
        ))),
    };
    // A visitor who closes the tab mid-download is not an error.
    let _ = response;
}

/// A server bound to its port, not yet answering.
pub struct Listener {
    server: tiny_http::Server,
    pub address: SocketAddr,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Listener({})", self.address)
    }
}

impl Listener {
    /// Listens on 127.0.0.1:`port` (0 picks a free port).
    pub fn bind(port: u16) -> io::Result<Self> {
        let server = tiny_http::Server::http(("127.0.0.1", port)).map_err(|e| {
            let in_use = e
                .downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::AddrInUse);
            if in_use {
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
        let address = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| io::Error::other("the server has no IP address"))?;
        Ok(Listener { server, address })
    }

    /// Answers requests with the files under `root` from a thread of its own, each request on a
    /// thread of its own, until the process ends; `log` takes every request (tests only).
    pub fn serve(self, root: PathBuf, log: Option<Sender<Logged>>) {
        let root = Arc::new(root);
        let server = self.server;
        std::thread::spawn(move || {
            for request in server.incoming_requests() {
                let (root, log) = (Arc::clone(&root), log.clone());
                std::thread::spawn(move || answer(request, &root, log.as_ref()));
            }
        });
    }
}
