//! Serving the built demo page and opening it in headless Chromium with a fake camera, for the
//! end-to-end tests (`tests/demo_page.rs`) and the page's benchmark (`xtask/benches/demo_page.rs`).
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc::{Receiver, Sender, channel},
    time::Duration,
};

use serde_json::Value;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css",
        _ => "application/octet-stream",
    }
}

/// Answers one request: a GET with the file under `root` it names; a POST to `/report` (the
/// page's account of what it did) is handed to `reports`.
pub fn serve(stream: TcpStream, root: &Path, reports: &Sender<String>) {
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut length = 0;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    if request_line.starts_with("POST /report") {
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_ok() {
            let _ = reports.send(String::from_utf8_lossy(&body).into_owned());
        }
        let _ = (&stream).write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        return;
    }
    let mut stream = stream;
    let target = request_line.split_whitespace().nth(1).unwrap_or("/");
    let relative = target
        .split('?')
        .next()
        .unwrap_or("/")
        .trim_start_matches('/');
    let relative = if relative.is_empty() {
        "index.html"
    } else {
        relative
    };
    let path = root.join(relative);
    let response = match (relative.contains(".."), std::fs::read(&path)) {
        (false, Ok(body)) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                content_type(&path),
                body.len()
            );
            [head.into_bytes(), body].concat()
        }
        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
    };
    let _ = stream.write_all(&response);
}

pub fn chromium() -> Option<String> {
    let candidates = [
        std::env::var("CHROME").ok(),
        Some("chromium".into()),
        Some("chromium-browser".into()),
    ];
    candidates.into_iter().flatten().find(|c| {
        Command::new(c)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// The built page, served on 127.0.0.1: its address and the page's reports.
pub fn serve_dist() -> (SocketAddr, Receiver<String>) {
    serve_folder(built_page())
}

pub fn built_page() -> PathBuf {
    let dist = workspace_root().join("dist");
    assert!(
        dist.join("index.html").exists(),
        "{} has no built page: run `cargo xtask demo --build-only` (`cargo xtask test` does)",
        dist.display()
    );
    dist
}

/// `root` served on 127.0.0.1: its address and the page's reports.
pub fn serve_folder(dist: PathBuf) -> (SocketAddr, Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let (reports, received) = channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (root, reports) = (dist.clone(), reports.clone());
            std::thread::spawn(move || serve(stream, &root, &reports));
        }
    });
    (address, received)
}

/// Starts headless Chromium on `url` with `extra` flags and a fresh profile. With
/// `DEMO_PAGE_BROWSER_LOG` set, Chromium's log (with the page's console) goes to stderr.
pub fn open(url: &str, extra: &[&str], profile: &Path, stdout: Stdio) -> Child {
    let log = std::env::var_os("DEMO_PAGE_BROWSER_LOG").is_some();
    let browser = chromium().expect(
        "no Chromium found: install Debian's `chromium` (`cargo xtask test` does) or set CHROME",
    );
    Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .args(extra)
        .args(log.then_some("--enable-logging=stderr"))
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdout(stdout)
        .stderr(if log { Stdio::inherit() } else { Stdio::null() })
        .spawn()
        .unwrap()
}

/// A YUV4MPEG2 (4:2:0) clip of `frames` copies of `image`, for Chromium's fake camera.
pub fn y4m(image: &image::RgbImage, frames: usize) -> Vec<u8> {
    let (w, h) = (image.width() as usize & !1, image.height() as usize & !1);
    let px = |x: usize, y: usize| image.get_pixel(x as u32, y as u32).0.map(f32::from);
    let mut frame = Vec::with_capacity(w * h * 3 / 2);
    for y in 0..h {
        for x in 0..w {
            let [r, g, b] = px(x, y);
            frame.push(
                (0.299 * r + 0.587 * g + 0.114 * b)
                    .round()
                    .clamp(0.0, 255.0) as u8,
            );
        }
    }
    for plane in 0..2 {
        for y in (0..h).step_by(2) {
            for x in (0..w).step_by(2) {
                let mut sum = 0.0;
                for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    let [r, g, b] = px(x + dx, y + dy);
                    sum += if plane == 0 {
                        128.0 - 0.168_736 * r - 0.331_264 * g + 0.5 * b
                    } else {
                        128.0 + 0.5 * r - 0.418_688 * g - 0.081_312 * b
                    };
                }
                frame.push((sum / 4.0).round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    let mut clip = format!("YUV4MPEG2 W{w} H{h} F10:1 Ip A1:1 C420jpeg\n").into_bytes();
    for _ in 0..frames {
        clip.extend_from_slice(b"FRAME\n");
        clip.extend_from_slice(&frame);
    }
    clip
}

/// Opens the page with a fake camera playing `clip` and returns its first report.
pub fn live_report(clip: &Path, query: &str, extra: &[&str]) -> Value {
    live_report_from(built_page(), clip, query, extra)
}

/// [`live_report`] with the page served from `root`.
pub fn live_report_from(root: PathBuf, clip: &Path, query: &str, extra: &[&str]) -> Value {
    live_report_within(root, clip, query, extra, Duration::from_secs(240))
}

/// [`live_report_from`], waiting at most `timeout` for the report.
pub fn live_report_within(
    root: PathBuf,
    clip: &Path,
    query: &str,
    extra: &[&str],
    timeout: Duration,
) -> Value {
    let (address, reports) = serve_folder(root);
    let profile = tempfile::tempdir().unwrap();
    let fake_camera = format!("--use-file-for-fake-video-capture={}", clip.display());
    let mut flags = vec![
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        fake_camera.as_str(),
        "--remote-debugging-port=0",
    ];
    flags.extend_from_slice(extra);
    let mut child = open(
        &format!("http://{address}/?report=1&start=camera{query}"),
        &flags,
        profile.path(),
        Stdio::null(),
    );
    let report = reports.recv_timeout(timeout);
    let _ = child.kill();
    let _ = child.wait();
    let report = report.unwrap_or_else(|_| panic!("the page sent no report within {timeout:?}"));
    serde_json::from_str(&report).unwrap()
}

/// The fake camera's clip: 20 frames of the Grace Hopper portrait, written into `dir`.
pub fn portrait_clip(dir: &Path) -> PathBuf {
    let portrait = workspace_root().join("tests/fixtures/portraits/grace_hopper_512x512.jpg");
    let image = image::open(&portrait)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run `cargo xtask fetch-portraits`",
                portrait.display()
            )
        })
        .to_rgb8();
    let clip = dir.join("portrait.y4m");
    std::fs::write(&clip, y4m(&image, 20)).unwrap();
    clip
}
