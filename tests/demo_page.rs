//! End to end: the built demo page (`dist/`, from `cargo xtask demo --build-only`) served on
//! 127.0.0.1 and opened in Debian's headless Chromium:
//! - it computes a label distribution with the `dldl` crate compiled to WebAssembly;
//! - with a fake camera playing a public-domain portrait, it reaches a live estimate of one face
//!   on WebGPU, and on the CPU backend when WebGPU is unavailable, and the two agree.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc::{Receiver, Sender, channel},
    time::{Duration, Instant},
};

use serde_json::Value;

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

/// Answers one request: a GET with the file under `root` it names; a POST to `/report` (the
/// page's account of what it did) is handed to `reports`.
fn serve(stream: TcpStream, root: &Path, reports: &Sender<String>) {
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

/// The built page, served on 127.0.0.1: its address and the page's reports.
fn serve_dist() -> (SocketAddr, Receiver<String>) {
    serve_folder(built_page())
}

fn built_page() -> PathBuf {
    let dist = workspace_root().join("dist");
    assert!(
        dist.join("index.html").exists(),
        "{} has no built page: run `cargo xtask demo --build-only` (`cargo xtask test` does)",
        dist.display()
    );
    dist
}

/// `root` served on 127.0.0.1: its address and the page's reports.
fn serve_folder(dist: PathBuf) -> (SocketAddr, Receiver<String>) {
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

/// Starts headless Chromium on `url` with `extra` flags and a fresh profile.
fn open(url: &str, extra: &[&str], profile: &Path, stdout: Stdio) -> Child {
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
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn the_page_computes_a_label_distribution_in_webassembly() {
    let (address, _) = serve_dist();
    let profile = tempfile::tempdir().unwrap();
    let mut child = open(
        &format!("http://{address}/"),
        &["--disable-gpu", "--virtual-time-budget=30000", "--dump-dom"],
        profile.path(),
        Stdio::piped(),
    );
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
        !dom.contains("<div id=\"status\" class=\"error\">"),
        "the page reports an error:\n{dom}"
    );
    // The sliders start at μ = 34, σ = 4: an interior label keeps its mean and spread.
    let mean = output_value(&dom, "mean").expect("E[age] shown");
    let std = output_value(&dom, "std").expect("standard deviation shown");
    assert!((mean - 34.0).abs() < 0.01, "E[age] {mean}");
    assert!((std - 4.0).abs() < 0.01, "σ {std}");
}

/// A YUV4MPEG2 (4:2:0) clip of `frames` copies of `image`, for Chromium's fake camera.
fn y4m(image: &image::RgbImage, frames: usize) -> Vec<u8> {
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
fn live_report(clip: &Path, query: &str, extra: &[&str]) -> Value {
    live_report_from(built_page(), clip, query, extra)
}

/// [`live_report`] with the page served from `root`.
fn live_report_from(root: PathBuf, clip: &Path, query: &str, extra: &[&str]) -> Value {
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
    let report = reports.recv_timeout(Duration::from_secs(240));
    let _ = child.kill();
    let _ = child.wait();
    let report = report.expect("the page sent no report within 240 s");
    serde_json::from_str(&report).unwrap()
}

fn save_screenshot(report: &Value, name: &str) -> PathBuf {
    use base64::Engine;
    let data = report["screenshot"].as_str().unwrap_or_default();
    let png = base64::engine::general_purpose::STANDARD
        .decode(data.trim_start_matches("data:image/png;base64,"))
        .expect("the report holds a PNG screenshot");
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
    path
}

fn one_live_face(report: &Value, what: &str) -> f64 {
    let errors = report["errors"].as_array().unwrap();
    let faces = report["faces"].as_array().unwrap();
    assert_eq!(
        faces.len(),
        1,
        "{what}: expected one face box, got {report:#}"
    );
    let age = faces[0]["expected_age"].as_f64().unwrap();
    assert!((1.0..=100.0).contains(&age), "{what}: expected age {age}");
    assert_eq!(
        report["chartsBlank"], false,
        "{what}: the distribution was not drawn"
    );
    assert!(
        report["frames"].as_u64().unwrap() >= 5,
        "{what}: not live: {}",
        report["frames"]
    );
    eprintln!(
        "{what}: {age:.2} years after {} frames, {:.0} ms per frame, first estimate after {:.0} \
         ms, backend {}, notes {errors:?}",
        report["frames"],
        report["msPerFrame"].as_f64().unwrap_or(f64::NAN),
        report["firstEstimateMs"].as_f64().unwrap_or(f64::NAN),
        report["backend"]
    );
    assert!(
        report["firstEstimateMs"]
            .as_f64()
            .is_some_and(|ms| ms > 0.0),
        "{what}: no time to the first estimate: {}",
        report["firstEstimateMs"]
    );
    age
}

/// The fake camera's clip: 20 frames of the Grace Hopper portrait, written into `dir`.
fn portrait_clip(dir: &Path) -> PathBuf {
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

#[test]
fn a_live_camera_gets_one_face_on_webgpu_and_on_the_cpu_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let clip = portrait_clip(dir.path());

    let gpu = live_report(&clip, "", &["--enable-unsafe-webgpu"]);
    assert_eq!(gpu["backend"], "WebGPU", "{gpu:#}");
    let on_gpu = one_live_face(&gpu, "WebGPU");
    save_screenshot(&gpu, "demo-webgpu.png");

    // Without --enable-unsafe-webgpu headless Chromium offers no WebGPU: the page must say so and
    // fall back to burn's CPU backend.
    let cpu = live_report(
        &clip,
        "",
        &["--disable-gpu", "--disable-blink-features=WebGPU"],
    );
    assert!(
        cpu["backend"].as_str().unwrap().starts_with("CPU"),
        "{cpu:#}"
    );
    assert!(
        cpu["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().contains("WebGPU")),
        "the page should say that WebGPU is missing: {cpu:#}"
    );
    let on_cpu = one_live_face(&cpu, "CPU fallback");
    save_screenshot(&cpu, "demo-cpu.png");
    assert!(
        (on_gpu - on_cpu).abs() <= 0.5,
        "WebGPU {on_gpu:.2} vs CPU {on_cpu:.2}"
    );
}

/// The `trainer` binary built beside this test (`cargo test --workspace` builds it).
fn trainer_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join(format!("trainer{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p trainer` (`cargo xtask test` does)",
        path.display()
    );
    path
}

fn run_trainer(args: &[&str]) {
    let out = std::process::Command::new(trainer_binary())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "trainer {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A stream trained here on the synthetic set and exported into a temporary copy of the page's
/// weights folder (never into the real one) joins the fusion with its own curve.
#[test]
fn an_exported_stream_is_picked_up_without_code_changes() {
    let dir = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let data = dir.path().join("synth");
    let run = dir.path().join("run");
    run_trainer(&[
        "synth",
        "--out",
        &s(&data),
        "--train",
        "200",
        "--valid",
        "20",
        "--test",
        "0",
        "--image-size",
        "32",
        "--quiet",
    ]);
    run_trainer(&[
        "train",
        "--train",
        &s(&data.join("train.csv")),
        "--out",
        &s(&run),
        "--arch",
        "tiny-age-net",
        "--input-size",
        "32",
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--quiet",
    ]);
    let page = dir.path().join("page");
    copy_tree(&built_page(), &page);
    run_trainer(&[
        "export",
        "--model",
        &s(&run),
        "--name",
        "test-synthetic",
        "--models",
        &s(&page.join("models")),
        "--allow-synthetic",
        "--device",
        "cpu",
    ]);

    let clip = portrait_clip(dir.path());
    let report = live_report_from(
        page,
        &clip,
        "",
        &["--disable-gpu", "--disable-blink-features=WebGPU"],
    );
    let fused = one_live_face(&report, "two streams");
    let streams = report["faces"][0]["streams"].as_array().unwrap();
    let names: Vec<&str> = streams
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pretrained", "test-synthetic"], "{report:#}");
    let ages: Vec<f64> = streams
        .iter()
        .map(|s| s["expected_age"].as_f64().unwrap())
        .collect();
    let (low, high) = (ages[0].min(ages[1]), ages[0].max(ages[1]));
    assert!(
        (low - 0.5..=high + 0.5).contains(&fused),
        "the fused estimate {fused:.2} lies outside the streams' {ages:?}"
    );
    save_screenshot(&report, "demo-two-streams.png");
}
