//! The demo page's speed in headless Chromium, as a visitor gets it: the built page (`dist/`)
//! served on 127.0.0.1 with a fake camera playing a public-domain portrait, once on WebGPU and
//! once on burn's CPU fallback. Prints a table and writes `bench/DEMO_PAGE.md`: the wasm and
//! weights sizes, the time to the first estimate, and the milliseconds per frame (median of the
//! live frames after the first two). Then it saves a screenshot of the whole page, once the live
//! estimate has settled, as `docs/demo-page.jpg` (through chromedriver). With `FACE_API_DIR`
//! (which `cargo xtask bench-page` sets, `xtask/src/peer.rs`) it also runs the browser peer,
//! face-api.js, alternating with the page on the same camera.
//!
//! Run it with `cargo xtask bench-page` (which builds the page first).

#[path = "../src/machine.rs"]
mod machine;
#[path = "../../tests/support/page.rs"]
mod page;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::{fmt::Write as _, path::Path, process::Command, time::Duration};

use serde_json::Value;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

fn gzip_size(path: &Path) -> Option<u64> {
    let out = Command::new("gzip").arg("-9c").arg(path).output().ok()?;
    out.status.success().then_some(out.stdout.len() as u64)
}

struct Run {
    backend: String,
    frames: usize,
    first_estimate_ms: f64,
    median_ms: f64,
    /// The mean: with the settled-track rule, frames with and without the network alternate,
    /// and the mean is the work per frame.
    mean_ms: f64,
    fastest_ms: f64,
    age: f64,
    landmarks_ms: f64,
    /// Each face's final expected age, left to right.
    ages: Vec<f64>,
    /// The share of the faces shown that the age network ran on.
    network_share: f64,
    /// The threads asked for (`?threads=`, 0 when not asked), and those the page ran on.
    asked_threads: usize,
    threads: String,
    /// The median warm-up frame with the camera stopped (`run_threads` only).
    warm_up_ms: f64,
    /// Where the start went: the page's timeline (ms from opening it) and the build steps of
    /// the estimator it kept.
    start: String,
    /// The page's own thread from the first estimate on: its longest task (ms, when one was
    /// over 50 ms) and what the browser says ran in it.
    longest_after_first: Option<f64>,
    what_ran: String,
}

fn run(clip: &Path, frames: usize, query: &str, extra: &[&str]) -> Run {
    run_from(page::built_page(), clip, frames, query, extra, Some(200))
}

/// The page on its CPU backend with its defaults, the CPU slowed down `rate` times
/// (`Emulation.setCPUThrottlingRate`; 1: not slowed), for the page's own thread around the
/// first estimate.
fn run_throttled(clip: &Path, rate: f64) -> Run {
    let wait = page::Wait {
        frames: 10,
        time_landmarks: None,
        time_warm_up: None,
        cpu_throttle: (rate != 1.0).then_some(rate),
        timeout: Duration::from_secs(900),
    };
    let query = "&backend=cpu";
    measured(
        page::live_session(page::built_page(), clip, query, &page::NO_WEBGPU, &wait).report,
        query,
    )
}

/// The page on the CPU backend with `threads` threads: the live run, then 20 warm-up frames
/// with the camera stopped (the compute alone, without the browser's own work beside it).
fn run_threads(clip: &Path, threads: usize) -> Run {
    let query = format!("&backend=cpu&threads={threads}");
    let wait = page::Wait {
        frames: 40,
        time_landmarks: None,
        time_warm_up: Some(20),
        cpu_throttle: None,
        timeout: Duration::from_secs(900),
    };
    measured(
        page::live_session(page::built_page(), clip, &query, &page::NO_WEBGPU, &wait).report,
        &query,
    )
}

fn run_from(
    root: std::path::PathBuf,
    clip: &Path,
    frames: usize,
    query: &str,
    extra: &[&str],
    time_landmarks: Option<usize>,
) -> Run {
    let wait = page::Wait {
        frames,
        time_landmarks,
        time_warm_up: None,
        cpu_throttle: None,
        timeout: Duration::from_secs(900),
    };
    measured(
        page::live_session(root, clip, query, extra, &wait).report,
        query,
    )
}

/// What the page downloads, opened on its defaults until its first estimate: every file its
/// server was asked for (the worker's module included), by size, as a table with the total.
fn downloads(clip: &Path) -> String {
    let root = page::built_page();
    let wait = page::Wait {
        frames: 1,
        time_landmarks: None,
        time_warm_up: None,
        cpu_throttle: None,
        timeout: Duration::from_secs(900),
    };
    let session = page::live_session(root.clone(), clip, "", &page::NO_WEBGPU, &wait);
    let mut files: Vec<(String, u64)> = Vec::new();
    for request in session.log.try_iter() {
        let Some(file) = page::serve::file_for(&root, &request.target) else {
            continue;
        };
        let size = std::fs::metadata(&file).map_or(0, |m| m.len());
        let name = request.target.split('?').next().unwrap_or("").to_string();
        if size > 0 && !files.iter().any(|(n, _)| *n == name) {
            files.push((name, size));
        }
    }
    files.sort_by_key(|f| std::cmp::Reverse(f.1));
    let total: u64 = files.iter().map(|f| f.1).sum();
    let mut table = String::from("| file the page asked for | size |\n|---|---:|\n");
    for (name, size) in &files {
        writeln!(table, "| `{name}` | {} |", mib(*size)).unwrap();
    }
    writeln!(table, "| **in all** | **{}** |", mib(total)).unwrap();
    table
}

/// The figures of a live session's report; `query` is the one the page was opened with.
fn measured(report: Value, query: &str) -> Run {
    let times: Vec<f64> = report["frameMs"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    assert!(
        times.len() >= 3,
        "the page reported {} frames: {report:#}",
        times.len()
    );
    let live = times[2..].to_vec();
    let after_first = longest_after_first(&report);
    Run {
        backend: report["backend"]
            .as_str()
            .unwrap_or("?")
            .split(" (")
            .next()
            .unwrap_or("?")
            .to_string(),
        frames: live.len(),
        first_estimate_ms: report["firstEstimateMs"].as_f64().unwrap_or(f64::NAN),
        fastest_ms: live.iter().copied().fold(f64::INFINITY, f64::min),
        mean_ms: live.iter().sum::<f64>() / live.len() as f64,
        median_ms: median(live),
        age: report["faces"][0]["expected_age"]
            .as_f64()
            .unwrap_or(f64::NAN),
        landmarks_ms: report["landmarksMs"].as_f64().unwrap_or(f64::NAN),
        ages: {
            let mut faces: Vec<(f64, f64)> = report["faces"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| {
                    (
                        f["bbox"][0].as_f64().unwrap_or(f64::NAN),
                        f["expected_age"].as_f64().unwrap_or(f64::NAN),
                    )
                })
                .collect();
            faces.sort_by(|a, b| a.0.total_cmp(&b.0));
            faces.into_iter().map(|f| f.1).collect()
        },
        network_share: report["networkFaces"].as_f64().unwrap_or(f64::NAN)
            / report["seenFaces"].as_f64().unwrap_or(f64::NAN),
        asked_threads: query
            .split('&')
            .find_map(|p| p.strip_prefix("threads="))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        threads: report["threads"]
            .as_u64()
            .map_or_else(|| "?".to_string(), |n| n.to_string()),
        warm_up_ms: report["warmUpMedianMs"].as_f64().unwrap_or(f64::NAN),
        start: start_line(&report),
        longest_after_first: after_first.as_ref().map(|t| t.1),
        what_ran: after_first.map_or_else(
            || "no task over 50 ms".to_string(),
            |(at, ms)| what_ran(&report, at, ms),
        ),
    }
}

/// The page's thread's longest task that ended after the first estimate (`(start, ms)`): the
/// Long Tasks API reports those over 50 ms only.
fn longest_after_first(report: &Value) -> Option<(f64, f64)> {
    let first = report["firstEstimateMs"].as_f64()?;
    report["longTasks"]
        .as_array()?
        .iter()
        .filter_map(|t| Some((t["startMs"].as_f64()?, t["ms"].as_f64()?)))
        .filter(|(at, ms)| at + ms >= first)
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// What the browser's long-animation-frame entries say ran in the task at `at` lasting `ms`:
/// each script (its function and file, and the style and layout it forced), then rendering.
fn what_ran(report: &Value, at: f64, ms: f64) -> String {
    let first = report["firstEstimateMs"].as_f64().unwrap_or(f64::NAN);
    let frame = report["longFrames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| {
            let start = f["startMs"].as_f64().unwrap_or(f64::NAN);
            let end = start + f["ms"].as_f64().unwrap_or(0.0);
            start <= at + ms && end >= at
        })
        .max_by(|a, b| {
            a["ms"]
                .as_f64()
                .unwrap_or(0.0)
                .total_cmp(&b["ms"].as_f64().unwrap_or(0.0))
        });
    let Some(frame) = frame else {
        return format!(
            "a {ms:.0} ms task {:+.0} ms from the first estimate; the browser attributed no frame to it",
            at - first
        );
    };
    let scripts: Vec<String> = frame["scripts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|x| x["ms"].as_f64().unwrap_or(0.0) >= 1.0)
        .map(|x| {
            let name = match (
                x["fn"].as_str().unwrap_or(""),
                x["invoker"].as_str().unwrap_or(""),
            ) {
                ("", invoker) => invoker.to_string(),
                (f, _) => format!("`{f}`"),
            };
            let file = x["file"].as_str().filter(|f| !f.is_empty());
            let forced = x["forcedLayoutMs"].as_f64().unwrap_or(0.0);
            format!(
                "{name}{} {:.0} ms{}",
                file.map_or(String::new(), |f| format!(" ({f})")),
                x["ms"].as_f64().unwrap_or(0.0),
                if forced >= 1.0 {
                    format!(", {forced:.0} ms of it forced style and layout")
                } else {
                    String::new()
                }
            )
        })
        .collect();
    format!(
        "{:+.0} ms from the first estimate, a frame of {:.0} ms: {}; rendering {:.0} ms (style and layout {:.0} ms)",
        at - first,
        frame["ms"].as_f64().unwrap_or(f64::NAN),
        if scripts.is_empty() {
            "no script over 1 ms".to_string()
        } else {
            scripts.join(", ")
        },
        frame["renderMs"].as_f64().unwrap_or(0.0),
        frame["layoutMs"].as_f64().unwrap_or(0.0),
    )
}

/// The page's start in one line: each step of its timeline at its time from opening the page,
/// in order, the first estimate, and the steps of building the estimator it runs.
fn start_line(report: &Value) -> String {
    let mut marks: Vec<(String, f64)> = report["timeline"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
        .collect();
    if let Some(first) = report["firstEstimateMs"].as_f64() {
        marks.push(("first estimate".to_string(), first));
    }
    marks.sort_by(|a, b| a.1.total_cmp(&b.1));
    let marks: Vec<String> = marks.iter().map(|(k, v)| format!("{k} {v:.0}")).collect();
    let backend = report["backend"]
        .as_str()
        .unwrap_or("")
        .split(" (")
        .next()
        .unwrap_or("");
    // A list of steps the page reported, in one line.
    let listed = |steps: &Value| -> String {
        let steps: Vec<&str> = steps
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if steps.is_empty() {
            "not reported".to_string()
        } else {
            steps.join(", ")
        }
    };
    // The page's own thread's tasks over 50 ms, from the camera's start.
    let camera = report["cameraStartedMs"].as_f64().unwrap_or(f64::NAN);
    let long: Vec<String> = report["longTasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| Some((t["startMs"].as_f64()?, t["ms"].as_f64()?)))
        .map(|(at, ms)| format!("{ms:.0} ms at {at:.0}"))
        .collect();
    let first = |key: &str| -> String {
        let ms: Vec<String> = report[key]
            .as_array()
            .into_iter()
            .flatten()
            .take(3)
            .filter_map(Value::as_f64)
            .map(|v| format!("{v:.0}"))
            .collect();
        ms.join(", ")
    };
    format!(
        "{} ms; starting the worker: {}; building the estimator: {}; the camera's loop from \
         {camera:.0} ms, its first frames {} ms (the worker's part {}); the page's thread's \
         tasks over 50 ms: {}",
        marks.join(", "),
        listed(&report["workerSteps"]),
        listed(&report["buildSteps"][backend]),
        first("frameMs"),
        first("workerMs"),
        if long.is_empty() {
            "none".to_string()
        } else {
            long.join(", ")
        }
    )
}

/// One round against face-api.js: the page's standard module, then (the page, face-api.js) on
/// one thread and on one thread a core.
type Round = (Run, Vec<(Run, Run)>);

fn chromium_version() -> String {
    page::chromium()
        .and_then(|c| Command::new(c).arg("--version").output().ok())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that names something else skips this.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !filters.is_empty() && !filters.iter().any(|f| "demo_page".contains(f.as_str())) {
        return;
    }
    let dist = page::built_page();
    let wasm = std::fs::read_dir(&dist)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "wasm"))
        .expect("dist/ holds the page's wasm");
    let wasm_size = std::fs::metadata(&wasm).unwrap().len();
    let wasm_gzip = gzip_size(&wasm);
    // The threaded CPU build, when `cargo xtask demo` built it.
    let threaded_wasm = std::fs::read_dir(&dist)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("threads-"))
        .map(|e| e.path().join("web_bg.wasm"))
        .filter(|p| p.is_file());
    let weight = |relative: &str| std::fs::metadata(dist.join(relative)).map_or(0, |m| m.len());
    let age_weights = weight("models/age-v1.onnx");
    let landmark_weights = weight("models/face_landmarks_5.bin");
    let detector_weights = weight("models/blazeface/face_detection_short_range.onnx");

    let dir = tempfile::tempdir().unwrap();
    let clip = page::portrait_clip(dir.path());
    eprintln!("demo page benchmark: what the page downloads on its defaults");
    let downloads = downloads(&clip);
    eprintln!("demo page benchmark: WebGPU (software in headless Chromium), 8 frames");
    let gpu = run(&clip, 8, "&backend=webgpu", &["--enable-unsafe-webgpu"]);
    eprintln!("demo page benchmark: CPU fallback, 30 frames");
    let cpu = run(&clip, 30, "", &page::NO_WEBGPU);

    // The page's own thread after the first estimate, as it is and on a CPU slowed down 4×,
    // alternating, five times each (a long task came in one run of three before).
    const SLOWED_ROUNDS: usize = 5;
    let mut slowed = Vec::new();
    for round in 1..=SLOWED_ROUNDS {
        for rate in [1.0, 4.0] {
            eprintln!(
                "demo page benchmark: the page's thread, CPU slowed {rate}×, round {round} of {SLOWED_ROUNDS}"
            );
            slowed.push((rate, run_throttled(&clip, rate)));
        }
    }

    // Several faces, with and without the settled-track rule, alternating, on the CPU.
    let three = page::faces_clip(dir.path(), 3);
    let mut several = Vec::new();
    for (clip, faces) in [(&clip, 1), (&three, 3)] {
        for every in [1, 3] {
            eprintln!("demo page benchmark: {faces} face(s), every={every}, 40 frames");
            let r = run(
                clip,
                40,
                &format!("&backend=cpu&every={every}"),
                &page::NO_WEBGPU,
            );
            several.push((faces, every, r));
        }
    }
    // The browser peer, face-api.js on tfjs's wasm backend, alternating with the page on the
    // same fake camera: both on one thread, then both on one thread a core (the page's pool
    // and tfjs's threaded build; the server makes both pages cross-origin isolated). Each round
    // also runs the page's standard module (`?threads=0`, as a page that is not isolated runs).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let peer = std::env::var_os("FACE_API_DIR").map(std::path::PathBuf::from);
    let mut rounds = Vec::new();
    if let Some(peer) = &peer {
        for round in 1..=3 {
            eprintln!("demo page benchmark: the page against face-api.js, round {round} of 3");
            let standard = run_threads(&clip, 0);
            let mut runs = Vec::new();
            for threads in [1, cores] {
                let query = format!("&backend=cpu&threads={threads}");
                let ours = run_threads(&clip, threads);
                let theirs = run_from(peer.clone(), &clip, 40, &query, &page::NO_WEBGPU, None);
                runs.push((ours, theirs));
            }
            rounds.push((standard, runs));
        }
    }
    let mut against = String::new();
    if rounds.is_empty() {
        against.push_str(
            "face-api.js was not run (`cargo xtask bench-page` fetches it from npm's registry and sets `FACE_API_DIR`).\n",
        );
    } else {
        writeln!(
            against,
            "| round | the page's CPU backend | the page, ms per frame (median) | face-api.js, ms per frame (median) | the page's frames per second against face-api.js's | first estimate: the page / face-api.js | estimate: the page / face-api.js | threads: the page / face-api.js |"
        )
        .unwrap();
        writeln!(against, "|---|---|---|---|---|---|---|---|").unwrap();
        for (i, (standard, runs)) in rounds.iter().enumerate() {
            writeln!(
                against,
                "| {} | the standard module (`?threads=0`) | {:.0} | | | {:.1} s | {:.2} years | 1 |",
                i + 1,
                standard.median_ms,
                standard.first_estimate_ms / 1000.0,
                standard.age,
            )
            .unwrap();
            for (ours, theirs) in runs {
                writeln!(
                    against,
                    "| {} | the threaded build, {} thread(s) | {:.0} | {:.0} | **{:.2}×** | {:.1} s / {:.1} s | {:.2} / {:.2} years | {} / {} |",
                    i + 1,
                    ours.asked_threads,
                    ours.median_ms,
                    theirs.median_ms,
                    theirs.median_ms / ours.median_ms,
                    ours.first_estimate_ms / 1000.0,
                    theirs.first_estimate_ms / 1000.0,
                    ours.age,
                    theirs.age,
                    ours.threads,
                    theirs.threads,
                )
                .unwrap();
            }
        }
        let over = |f: &dyn Fn(&Round) -> f64| median(rounds.iter().map(f).collect());
        writeln!(
            against,
            "\nMedians of the rounds' ratios: the page on {cores} threads runs at **{:.2}×** \
             face-api.js's frames per second on {cores} threads; on one thread each, **{:.2}×**, \
             and the page's standard module **{:.2}×**. (The page's default is every core but \
             one, here one thread.) {cores} threads against one: \
             the page {:.2}×, face-api.js {:.2}×. The threaded build on one thread against the \
             standard module: {:.2}×.\n\n\
             The compute of one face's frame alone (the page's warm-up frame, the camera stopped, \
             median of 20), per round: the standard module, then the threaded build on one and \
             on {cores} threads: {}. So {cores} threads give **{:.2}×** over one thread of the \
             same build, and the threaded build on {cores} threads **{:.2}×** over the standard \
             module.",
            over(&|(_, r)| r[1].1.median_ms / r[1].0.median_ms),
            over(&|(_, r)| r[0].1.median_ms / r[0].0.median_ms),
            over(&|(s, r)| r[0].1.median_ms / s.median_ms),
            over(&|(_, r)| r[0].0.median_ms / r[1].0.median_ms),
            over(&|(_, r)| r[0].1.median_ms / r[1].1.median_ms),
            over(&|(s, r)| s.median_ms / r[0].0.median_ms),
            rounds
                .iter()
                .map(|(s, r)| format!(
                    "{:.0}, {:.0} and {:.0} ms",
                    s.warm_up_ms, r[0].0.warm_up_ms, r[1].0.warm_up_ms
                ))
                .collect::<Vec<_>>()
                .join("; "),
            over(&|(_, r)| r[0].0.warm_up_ms / r[1].0.warm_up_ms),
            over(&|(s, r)| s.warm_up_ms / r[1].0.warm_up_ms),
        )
        .unwrap();
    }
    let mut rule = String::new();
    writeln!(
        rule,
        "| faces | the network on | ms per frame (median) | ms per frame (mean) | mean against one face | faces the network ran on | each face's estimate |"
    )
    .unwrap();
    writeln!(rule, "|---|---|---|---|---|---|---|").unwrap();
    for (faces, every, r) in &several {
        let one = several
            .iter()
            .find(|(f, e, _)| *f == 1 && e == every)
            .map_or(f64::NAN, |(_, _, one)| one.mean_ms);
        let ages: Vec<String> = r.ages.iter().map(|a| format!("{a:.2}")).collect();
        writeln!(
            rule,
            "| {faces} | {} | {:.0} | {:.0} | {:.2}× | {:.0} % | {} |",
            if *every == 1 {
                "every face, every frame".to_string()
            } else {
                format!("the settled faces in turn, one frame in {every}")
            },
            r.median_ms,
            r.mean_ms,
            r.mean_ms / one,
            100.0 * r.network_share,
            ages.join(", ")
        )
        .unwrap();
    }

    let mut table = String::new();
    writeln!(
        table,
        "| backend | first estimate after opening the page | ms per frame (median) | fastest frame | frames | estimate | landmark step per face |"
    )
    .unwrap();
    writeln!(table, "|---|---|---|---|---|---|---|").unwrap();
    for r in [&gpu, &cpu] {
        writeln!(
            table,
            "| {} | {:.1} s | {:.0} ({:.1} frames/s) | {:.0} ms | {} | {:.2} years | {:.2} ms |",
            r.backend,
            r.first_estimate_ms / 1000.0,
            r.median_ms,
            1000.0 / r.median_ms,
            r.fastest_ms,
            r.frames,
            r.age,
            r.landmarks_ms
        )
        .unwrap();
    }
    for r in [&gpu, &cpu] {
        writeln!(
            table,
            "\nThe start on {}, in ms from opening the page: {}.",
            r.backend, r.start
        )
        .unwrap();
    }
    let mut thread = String::new();
    writeln!(
        thread,
        "| CPU slowed | first estimate | the page's thread's longest task from the first estimate on | what ran in it |\n|---|---|---|---|"
    )
    .unwrap();
    for (rate, r) in &slowed {
        writeln!(
            thread,
            "| {rate}× | {:.1} s | {} | {} |",
            r.first_estimate_ms / 1000.0,
            r.longest_after_first
                .map_or("none over 50 ms".to_string(), |ms| format!("{ms:.0} ms")),
            r.what_ran,
        )
        .unwrap();
    }
    let longest = |rate: f64| {
        slowed
            .iter()
            .filter(|(r, _)| *r == rate)
            .map(|(_, run)| {
                run.longest_after_first
                    .map_or("none".to_string(), |ms| format!("{ms:.0} ms"))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    writeln!(
        thread,
        "\nLongest task from the first estimate on, per run: as it is {}; slowed 4× {}.",
        longest(1.0),
        longest(4.0)
    )
    .unwrap();
    let threaded_row = threaded_wasm.map_or_else(String::new, |p| {
        format!(
            "| wasm, the threaded CPU build (no WebGPU; opt-level 3) | {}{} |\n",
            mib(std::fs::metadata(&p).map_or(0, |m| m.len())),
            gzip_size(&p).map_or(String::new(), |g| format!(", {} gzip -9", mib(g))),
        )
    });
    let sizes = format!(
        "| file | size |\n|---|---|\n| wasm, the standard module (WebGPU and the CPU backend) | {}{} |\n{threaded_row}| age network weights (`age-v1.onnx`, fetched only when the published network runs) | {} |\n| landmark predictor (`face_landmarks_5.bin`, compact) | {} |\n| detector weights (BlazeFace) | {} |\n\n\
         What the page downloaded, opened on its defaults (CPU backend, cross-origin isolated), \
         up to its first estimate, from its server's log:\n\n{downloads}",
        mib(wasm_size),
        wasm_gzip.map_or(String::new(), |g| format!(", {} gzip -9", mib(g))),
        mib(age_weights),
        mib(landmark_weights),
        mib(detector_weights),
    );
    let markdown = format!(
        "# The demo page in headless Chromium\n\n\
         Written by `cargo xtask bench-page` (`xtask/benches/demo_page.rs`) on {}, {}. The page is \
         served on 127.0.0.1 with a fake camera playing a 512×512 public-domain portrait (one \
         face); each frame runs detection, the five landmarks, alignment, the age streams the \
         page ships (`models/streams/`) on the chip and its mirror image, fusion and tracking. \
         Milliseconds per frame: the median of the live frames after the first two (from \
         handing a frame to the page's worker to its answer, drawing excluded).\n\n\
         {table}\n\
         ## The page's own thread after the first estimate\n\n\
         The page on its CPU backend with its defaults, 10 frames, as it is and with the CPU \
         slowed down 4× (Chromium's `Emulation.setCPUThrottlingRate`, through chromedriver, from \
         before the page opens), alternating, five \
         times each. The browser reports tasks over 50 ms (Long Tasks) and says what ran in \
         them (Long Animation Frames: each script's function and file, then style, layout and \
         paint).\n\n\
         {thread}\n\
         ## Several faces and the settled-track rule\n\n\
         The same portrait three times side by side in a 640×480 frame, against once, on the CPU \
         backend, 40 frames each. With the rule (the page's default), the faces whose estimates \
         have settled (five frames) take turns: the age network runs on one of them on one frame \
         in three, and at once on a face that moves; in between a face keeps its smoothed \
         estimate (`dldl::face::tracking`).\n\n\
         {rule}\n\
         ## Against face-api.js, the browser peer\n\n\
         npm's `@vladmandic/face-api` 1.7.15 (TinyFaceDetector with its default options, then \
         AgeGenderNet) on tfjs's wasm backend (4.22.0), in the same headless Chromium \
         on the same fake camera, each on every new camera frame; the two alternate, 40 frames \
         each, three rounds, first both on one thread, then both on one thread a core (the page's \
         threaded CPU build with its rayon pool, tfjs's threaded SIMD build; both pages are \
         cross-origin isolated). The page runs on its CPU backend (in its worker) with its \
         defaults (the settled-track rule on); face-api.js's time is one \
         `detectAllFaces(...).withAgeAndGender()` call.\n\n\
         {against}\n{sizes}",
        machine::machine(),
        chromium_version(),
    );
    print!("{markdown}");
    let out = page::workspace_root().join("bench/DEMO_PAGE.md");
    std::fs::write(&out, &markdown).unwrap();
    eprintln!("wrote {}", out.display());

    match screenshot(&clip) {
        Ok(path) => eprintln!("wrote {}", path.display()),
        Err(e) => eprintln!("no screenshot of the whole page: {e}"),
    }
}

/// The whole page in headless Chromium (through chromedriver) once its live estimate has
/// settled, on WebGPU, saved as `docs/demo-page.jpg` for the README.
fn screenshot(clip: &Path) -> Result<std::path::PathBuf, String> {
    let (address, _) = page::serve_folder(page::built_page());
    let browser = page::Browser::start(&[
        "--enable-unsafe-webgpu".to_string(),
        "--use-fake-device-for-media-stream".to_string(),
        "--use-fake-ui-for-media-stream".to_string(),
        format!("--use-file-for-fake-video-capture={}", clip.display()),
        "--window-size=1100,3000".to_string(),
        "--hide-scrollbars".to_string(),
    ])?;
    browser.open(&format!("http://{address}/?start=camera"))?;
    // Settled: a few live frames with a face, so the smoothing shows.
    let script = "return [document.getElementById('status').className, \
                  document.getElementById('charts').children.length];";
    let started = std::time::Instant::now();
    let mut frames_with_face = 0;
    while frames_with_face < 8 {
        let state = browser.run(script)?;
        if state[0] == "ok" && state[1].as_u64().unwrap_or(0) > 0 {
            frames_with_face += 1;
        }
        if started.elapsed() > Duration::from_secs(180) {
            return Err("the page showed no estimate within 180 s".to_string());
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    // Open "About the model", then measure the page's content.
    let script = "document.getElementById('about').open = true; \
                  return Math.ceil(document.body.getBoundingClientRect().bottom) + 24;";
    let height = browser.run(script)?.as_u64().unwrap_or(u64::MAX);
    std::thread::sleep(Duration::from_secs(1));
    let png = browser.screenshot()?;
    let image = image::load_from_memory(&png).map_err(|e| e.to_string())?;
    // The window is taller than the page: keep the page.
    let height = (height as u32).clamp(1, image.height());
    let image = image.crop_imm(0, 0, image.width(), height);
    let path = page::workspace_root().join("docs/demo-page.jpg");
    image
        .to_rgb8()
        .save_with_format(&path, image::ImageFormat::Jpeg)
        .map_err(|e| e.to_string())?;
    Ok(path)
}
