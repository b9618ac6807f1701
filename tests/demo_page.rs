//! End to end: the built demo page (`dist/`, from `cargo xtask demo --build-only`) served on
//! 127.0.0.1 and opened in headless Chromium computes a label distribution with the `dldl` crate
//! compiled to WebAssembly.

use std::{
    io::{BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css",
        _ => "application/octet-stream",
    }
}

/// Answers one GET with the file under `root` it names.
fn serve(mut stream: TcpStream, root: &Path) {
    let mut request_line = String::new();
    if BufReader::new(&stream)
        .read_line(&mut request_line)
        .is_err()
    {
        return;
    }
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

fn chromium() -> Option<String> {
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

/// The text of `<output id="ID">` in a dumped DOM.
fn output_value(dom: &str, id: &str) -> Option<f64> {
    let start = dom.find(&format!("<output id=\"{id}\">"))?;
    let rest = &dom[start..];
    let value = &rest[rest.find('>')? + 1..rest.find("</output>")?];
    value.trim().parse().ok()
}

#[test]
fn the_page_computes_a_label_distribution_in_webassembly() {
    let dist = workspace_root().join("dist");
    assert!(
        dist.join("index.html").exists(),
        "{} has no built page: run `cargo xtask demo --build-only` (`cargo xtask test` does)",
        dist.display()
    );
    let browser = chromium().expect(
        "no Chromium found: install Debian's `chromium` (`cargo xtask test` does) or set CHROME",
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let root = dist.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let root = root.clone();
            std::thread::spawn(move || serve(stream, &root));
        }
    });

    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--virtual-time-budget=30000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("http://{address}/"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("headless Chromium did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let dom = String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned();
    assert!(
        dom.contains("Ready: move the sliders."),
        "the page did not start:\n{dom}"
    );
    // The sliders start at μ = 34, σ = 4: an interior label keeps its mean and spread.
    let mean = output_value(&dom, "mean").expect("E[age] shown");
    let std = output_value(&dom, "std").expect("standard deviation shown");
    assert!((mean - 34.0).abs() < 0.01, "E[age] {mean}");
    assert!((std - 4.0).abs() < 0.01, "σ {std}");
}
