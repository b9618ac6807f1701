//! Serving the built demo page and opening it in headless Chromium with a fake camera, for the
//! end-to-end tests (`tests/demo_page.rs`) and the page's benchmark (`xtask/benches/demo_page.rs`).
#![allow(dead_code)]

#[path = "../../xtask/src/serve.rs"]
pub mod serve;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc::{Receiver, channel},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

// Whoever includes this file includes the shared support as `support` too.
pub use crate::support::repo::root as workspace_root;

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

/// The built page, served on 127.0.0.1: its address and the log of every request it gets.
pub fn serve_dist() -> (SocketAddr, Receiver<serve::Logged>) {
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

/// `root` served on 127.0.0.1 by the demo's own server (`cargo xtask demo`'s): its address and
/// the log of every request it gets.
pub fn serve_folder(dist: PathBuf) -> (SocketAddr, Receiver<serve::Logged>) {
    let (log, logged) = channel();
    let listener = serve::Listener::bind(0).unwrap();
    let address = listener.address;
    listener.serve(dist, Some(log));
    (address, logged)
}

/// Chromium's flags for every run here: headless, as root, nothing fetched from outside.
pub const HEADLESS: [&str; 7] = [
    "--headless",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
];

/// Chromium's flags for a browser without WebGPU: the page must fall back to burn's CPU backend.
pub const NO_WEBGPU: [&str; 2] = ["--disable-gpu", "--disable-blink-features=WebGPU"];

/// Starts headless Chromium on `url` with `extra` flags and a fresh profile. With
/// `DEMO_PAGE_BROWSER_LOG` set, Chromium's log (with the page's console) goes to stderr.
pub fn open(url: &str, extra: &[&str], profile: &Path, stdout: Stdio) -> Child {
    let log = std::env::var_os("DEMO_PAGE_BROWSER_LOG").is_some();
    let browser = chromium().expect(
        "no Chromium found: install Debian's `chromium` (`cargo xtask test` does) or set CHROME",
    );
    Command::new(browser)
        .args(HEADLESS)
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

/// Opens the page with a fake camera playing `clip` and returns its report after 5 frames.
pub fn live_report(clip: &Path, query: &str, extra: &[&str]) -> Value {
    live_report_from(built_page(), clip, query, extra)
}

/// [`live_report`] with the page served from `root`.
pub fn live_report_from(root: PathBuf, clip: &Path, query: &str, extra: &[&str]) -> Value {
    let wait = Wait::default();
    live_session(root, clip, query, extra, &wait).report
}

/// What a live session waits for.
#[derive(Debug, Clone)]
pub struct Wait {
    /// Live frames with a face estimated before the report is taken.
    pub frames: usize,
    /// Also time the landmark step over this many runs (`landmarksMs`, for the benchmark).
    pub time_landmarks: Option<usize>,
    /// Then stop the camera and time this many warm-up frames, the compute of one face's frame
    /// alone (`warmUpMedianMs`, the median; for the benchmark).
    pub time_warm_up: Option<usize>,
    /// Slow the page's CPU down this many times from before it opens (Chromium's
    /// `Emulation.setCPUThrottlingRate`), as on a slower machine; for the benchmark.
    pub cpu_throttle: Option<f64>,
    pub timeout: Duration,
}

impl Default for Wait {
    fn default() -> Self {
        Wait {
            frames: 5,
            time_landmarks: None,
            time_warm_up: None,
            cpu_throttle: None,
            timeout: Duration::from_secs(240),
        }
    }
}

/// A live session's outcome: the page's report, and the browser still open on it.
pub struct Session {
    pub report: Value,
    pub browser: Browser,
    pub address: SocketAddr,
    pub log: Receiver<serve::Logged>,
}

/// What the page has done (`window.ageDemo.state`), with whether its charts are blank, the
/// WebAssembly files its own thread fetched (`pageWasm`: the worker's fetches are not in it), its
/// status line and a PNG of its view, once it has estimated `frames` live frames with a face or
/// has settled (failed to start, or estimated a photo); `null` before. The page sends nothing:
/// the tests read it through WebDriver.
fn report_script(frames: usize) -> String {
    format!(
        "const d = window.ageDemo; if (!d) return null; const s = d.state; \
         if (!((s.faces.length && s.frames >= {frames}) || s.settled)) return null; \
         const charts = Array.from(document.querySelectorAll('.face-chart')); \
         const blank = charts.length === 0 || charts.some((c) => {{ \
           const x = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; \
           for (let i = 3; i < x.length; i += 4) if (x[i] !== 0) return false; return true; }}); \
         const wasm = performance.getEntriesByType('resource').map((e) => e.name) \
           .filter((n) => new URL(n).pathname.endsWith('.wasm')); \
         return JSON.stringify({{ ...s, chartsBlank: blank, pageWasm: wasm, \
           status: document.getElementById('status').textContent, \
           screenshot: document.getElementById('view').toDataURL('image/png') }});"
    )
}

/// Opens the page served from `root` in headless Chromium (through chromedriver) with a fake
/// camera playing `clip`, `?start=camera` and `query` (`&…`), and `extra` flags; waits as
/// `wait` says and returns the report with the browser still open.
pub fn live_session(
    root: PathBuf,
    clip: &Path,
    query: &str,
    extra: &[&str],
    wait: &Wait,
) -> Session {
    let (address, log) = serve_folder(root);
    live_session_at(address, log, clip, query, extra, wait)
}

/// [`live_session`] on a page already served at `address`, whose server logs to `log`.
pub fn live_session_at(
    address: SocketAddr,
    log: Receiver<serve::Logged>,
    clip: &Path,
    query: &str,
    extra: &[&str],
    wait: &Wait,
) -> Session {
    let mut flags: Vec<String> = vec![
        "--use-fake-device-for-media-stream".into(),
        "--use-fake-ui-for-media-stream".into(),
        format!("--use-file-for-fake-video-capture={}", clip.display()),
    ];
    flags.extend(extra.iter().map(|f| f.to_string()));
    let browser = Browser::start(&flags).unwrap_or_else(|e| panic!("cannot drive Chromium: {e}"));
    if let Some(rate) = wait.cpu_throttle {
        browser
            .cdp("Emulation.setCPUThrottlingRate", json!({ "rate": rate }))
            .unwrap_or_else(|e| panic!("Chromium would not throttle the CPU: {e}"));
    }
    browser
        .open(&format!("http://{address}/?start=camera{query}"))
        .unwrap();
    let script = report_script(wait.frames);
    let started = Instant::now();
    let text = loop {
        match browser.run(&script) {
            Ok(Value::String(text)) => break text,
            Ok(_) => {}
            Err(e) => panic!("the page cannot be read: {e}"),
        }
        assert!(
            started.elapsed() < wait.timeout,
            "the page did not estimate {} frames within {:?}",
            wait.frames,
            wait.timeout
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut report: Value = serde_json::from_str(&text).unwrap();
    // The timings asked for, in this order: the landmark step, then (the camera stopped) the
    // warm-up frame.
    for (runs, method, key) in [
        (wait.time_landmarks, "timeLandmarks", "landmarksMs"),
        (wait.time_warm_up, "timeWarmUp", "warmUpMedianMs"),
    ] {
        if let Some(runs) = runs {
            report[key] = browser
                .run_async(&format!(
                    "const done = arguments[arguments.length - 1]; \
                     window.ageDemo.{method}({runs}).then(done, () => done(null));"
                ))
                .unwrap_or(Value::Null);
        }
    }
    Session {
        report,
        browser,
        address,
        log,
    }
}

/// The public-domain 512×512 portrait of Grace Hopper the page's tests and benchmark show it.
pub fn grace_hopper() -> image::RgbImage {
    let portrait = workspace_root().join("tests/fixtures/portraits/grace_hopper_512x512.jpg");
    image::open(&portrait)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run `cargo xtask fetch-portraits`",
                portrait.display()
            )
        })
        .to_rgb8()
}

/// The fake camera's clip: 20 frames of the Grace Hopper portrait, written into `dir`.
pub fn portrait_clip(dir: &Path) -> PathBuf {
    let image = grace_hopper();
    let clip = dir.join("portrait.y4m");
    std::fs::write(&clip, y4m(&image, 20)).unwrap();
    clip
}

/// The fake camera's clip of `faces` copies of the Grace Hopper portrait side by side in a
/// 640×480 frame (grey around them), 20 frames, written into `dir`.
pub fn faces_clip(dir: &Path, faces: u32) -> PathBuf {
    let portrait = grace_hopper();
    let side = (640 / faces).min(480);
    let small =
        image::imageops::resize(&portrait, side, side, image::imageops::FilterType::Triangle);
    let mut frame = image::RgbImage::from_pixel(640, 480, image::Rgb([128, 128, 128]));
    for i in 0..faces {
        let x = i * (640 / faces) + (640 / faces - side) / 2;
        image::imageops::replace(
            &mut frame,
            &small,
            i64::from(x),
            i64::from((480 - side) / 2),
        );
    }
    let clip = dir.join(format!("faces-{faces}.y4m"));
    std::fs::write(&clip, y4m(&frame, 20)).unwrap();
    clip
}

/// Headless Chromium driven through Debian's chromedriver (WebDriver), for what the page shows
/// rather than what it reports: the status line, the messages, screenshots. Quits the browser
/// and stops chromedriver when dropped.
pub struct Browser {
    chromedriver: Child,
    base: String,
    session: String,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with `args` added to the usual headless flags.
    pub fn start(args: &[String]) -> Result<Browser, String> {
        let driver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_string());
        Browser::start_with(chromium(), &driver, args)
    }

    /// [`Browser::start`] with Chromium (`None`: none was found) and chromedriver named. Without
    /// either it says so in one line at once, rather than waiting for a port.
    pub fn start_with(
        chrome: Option<String>,
        driver: &str,
        args: &[String],
    ) -> Result<Browser, String> {
        let Some(chrome) = chrome else {
            return Err(
                "no Chromium found: install Debian's `chromium` and `chromium-driver` \
                        (`cargo xtask test` installs them) or set CHROME"
                    .to_string(),
            );
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let chromedriver = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "no chromedriver ({driver}: {e}): install Debian's `chromium-driver` \
                     (`cargo xtask test` installs it) or set CHROMEDRIVER"
                )
            })?;
        let mut browser = Browser {
            chromedriver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
        };
        let started = Instant::now();
        while browser.call("GET", "/status", None).is_err() {
            if let Ok(Some(status)) = browser.chromedriver.try_wait() {
                return Err(format!(
                    "{driver} stopped at once ({status}): check that it matches Chromium's version \
                     (`chromium --version`, `{driver} --version`)"
                ));
            }
            if started.elapsed() > Duration::from_secs(20) {
                return Err("chromedriver did not start within 20 s".to_string());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut flags: Vec<String> = HEADLESS.map(String::from).to_vec();
        flags.extend_from_slice(args);
        let mut options = json!({"args": flags});
        if chrome.contains('/') {
            options["binary"] = json!(chrome);
        }
        let session = browser.call(
            "POST",
            "/session",
            Some(json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": options,
            }}})),
        )?;
        browser.session = format!(
            "/session/{}",
            session["sessionId"]
                .as_str()
                .ok_or("chromedriver started no session")?
        );
        Ok(browser)
    }

    /// A WebDriver call: `method` on `path` with a JSON body; the answer's `value`.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let request = ureq::request(method, &url).timeout(Duration::from_secs(120));
        let response = match body {
            Some(body) => request.send_json(body),
            None => request.call(),
        }
        .map_err(|e| format!("{method} {path}: {e}"))?;
        let answer: Value = response
            .into_json()
            .map_err(|e| format!("{method} {path}: {e}"))?;
        Ok(answer["value"].clone())
    }

    pub fn open(&self, url: &str) -> Result<(), String> {
        self.call(
            "POST",
            &format!("{}/url", self.session),
            Some(json!({ "url": url })),
        )
        .map(|_| ())
    }

    /// A Chrome DevTools Protocol command through chromedriver (`goog/cdp/execute`), e.g.
    /// `Emulation.setCPUThrottlingRate`.
    pub fn cdp(&self, command: &str, params: Value) -> Result<Value, String> {
        self.call(
            "POST",
            &format!("{}/goog/cdp/execute", self.session),
            Some(json!({ "cmd": command, "params": params })),
        )
    }

    /// Runs `script` (a function body) in the page; its return value.
    pub fn run(&self, script: &str) -> Result<Value, String> {
        self.call(
            "POST",
            &format!("{}/execute/sync", self.session),
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Runs `script` (a function body whose last argument is a callback) and waits for the
    /// value it passes to the callback.
    pub fn run_async(&self, script: &str) -> Result<Value, String> {
        self.call(
            "POST",
            &format!("{}/execute/async", self.session),
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Chooses `file` in the file input that `selector` finds, as a visitor would.
    pub fn choose_file(&self, selector: &str, file: &Path) -> Result<(), String> {
        let element = self.call(
            "POST",
            &format!("{}/element", self.session),
            Some(json!({"using": "css selector", "value": selector})),
        )?;
        let id = element
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .ok_or_else(|| format!("no element {selector}"))?
            .to_string();
        self.call(
            "POST",
            &format!("{}/element/{id}/value", self.session),
            Some(json!({"text": file.display().to_string()})),
        )
        .map(|_| ())
    }

    /// A PNG of the window.
    pub fn screenshot(&self) -> Result<Vec<u8>, String> {
        let shot = self.call("GET", &format!("{}/screenshot", self.session), None)?;
        base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            shot.as_str().ok_or("no screenshot in the answer")?,
        )
        .map_err(|e| e.to_string())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &self.session.clone(), None);
        }
        let _ = self.chromedriver.kill();
        let _ = self.chromedriver.wait();
    }
}

/// What a visitor sees: the status line, the messages shown, the backend named.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub status: String,
    pub status_class: String,
    /// The messages shown below the controls, with their class (`error` or `note`).
    pub messages: Vec<(String, String)>,
    pub backend: String,
}

impl Seen {
    pub const SCRIPT: &str = "const $ = (id) => document.getElementById(id); \
        return [$('status').textContent, $('status').className, \
        Array.from(document.querySelectorAll('#message > *')).map((m) => [m.className, m.textContent]), \
        $('backend').textContent];";

    pub fn of(browser: &Browser) -> Result<Seen, String> {
        let v = browser.run(Self::SCRIPT)?;
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        Ok(Seen {
            status: text(&v[0]),
            status_class: text(&v[1]),
            messages: v[2]
                .as_array()
                .map(|a| a.iter().map(|m| (text(&m[0]), text(&m[1]))).collect())
                .unwrap_or_default(),
            backend: text(&v[3]),
        })
    }

    /// The messages shown as errors.
    pub fn errors(&self) -> Vec<&str> {
        self.messages
            .iter()
            .filter(|(class, _)| class == "error")
            .map(|(_, text)| text.as_str())
            .collect()
    }
}
