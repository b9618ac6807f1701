//! The fuzz harness: every reader of files that users and the internet hand the project, fed
//! mutants of valid inputs (`targets.rs`, `mutate.rs`), each case in a worker process under a
//! time limit, so that a panic, an abort (a stack overflow, a failed allocation) and a hang are
//! all caught and counted against the case that caused it.
//!
//! `cargo test --workspace` runs it with no arguments: 1 000 cases per target, the summary in
//! the test build's scratch folder, failing on any panic, crash, hang or rejection of more than
//! one line. `cargo xtask fuzz [--cases N]` runs N per target (default 100 000) and writes
//! `bench/FUZZ.md`. Options (after `--` under cargo test):
//!
//! - `--cases N`, `--targets a,b`, `--jobs J` (default: the cores), `--time-limit S` (default
//!   60), `--summary FILE`;
//! - `--replay TARGET INDEX [--save FILE]`: one case in this process, with its input saved.

#[path = "../../xtask/src/machine.rs"]
mod machine;
mod mutate;
mod targets;

use std::{
    collections::{HashMap, VecDeque},
    fmt::Write as _,
    io::{BufRead, BufReader, Write as _},
    panic::{self, AssertUnwindSafe},
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, Stdio},
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use targets::{TARGETS, Target};

const DEFAULT_CASES: u64 = 1_000;
const DEFAULT_TIME_LIMIT_S: u64 = 60;
/// How long a worker may take to load its target (the models) before its first case.
const SETUP_LIMIT: Duration = Duration::from_secs(600);

struct Options {
    cases: u64,
    targets: Vec<&'static str>,
    jobs: usize,
    time_limit: Duration,
    summary: PathBuf,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("--worker") => worker(&args[1..]),
        Some("--replay") => replay(&args[1..]),
        _ => parse(&args).and_then(|options| drive(&options)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("fuzz: {message}");
            ExitCode::FAILURE
        }
    }
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        cases: DEFAULT_CASES,
        targets: TARGETS.iter().map(|(n, _)| *n).collect(),
        jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
        time_limit: Duration::from_secs(DEFAULT_TIME_LIMIT_S),
        summary: PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("FUZZ.md"),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |what: &str| {
            args.next()
                .ok_or_else(|| format!("{arg} needs {what}"))
                .cloned()
        };
        let number = |text: String, what: &str| -> Result<u64, String> {
            text.parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{arg} {text}: expected {what}, a whole number over 0"))
        };
        match arg.as_str() {
            "--cases" => options.cases = number(value("a number")?, "the cases per target")?,
            "--jobs" => options.jobs = number(value("a number")?, "the processes")? as usize,
            "--time-limit" => {
                options.time_limit =
                    Duration::from_secs(number(value("seconds")?, "seconds per case")?)
            }
            "--summary" => options.summary = PathBuf::from(value("a file")?),
            "--targets" => {
                let list = value("target names")?;
                options.targets = list
                    .split(',')
                    .map(|name| {
                        TARGETS
                            .iter()
                            .map(|(n, _)| *n)
                            .find(|n| *n == name)
                            .ok_or_else(|| {
                                format!("no target `{name}`; the targets are {}", target_names())
                            })
                    })
                    .collect::<Result<_, _>>()?;
            }
            // What cargo's test runner may pass to any test binary.
            "--nocapture" | "--quiet" | "-q" => {}
            other => {
                return Err(format!(
                    "unknown option `{other}`; options: --cases N, --targets a,b, --jobs J, \
                     --time-limit S, --summary FILE, --replay TARGET INDEX [--save FILE]"
                ));
            }
        }
    }
    Ok(options)
}

fn target_names() -> String {
    TARGETS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------
// The worker process: runs cases `from..to` of one target, one line each on stdout.

/// The message of the last panic on any thread, taken by the case that caught it.
static LAST_PANIC: Mutex<String> = Mutex::new(String::new());

fn quiet_panics() {
    panic::set_hook(Box::new(|info| {
        *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = info.to_string();
    }));
}

enum Outcome {
    Accepted,
    Rejected(String),
    Panicked(String),
}

fn run_case(target: &Target, index: u64, scratch: &Path) -> (Outcome, Vec<u8>) {
    let input = target.input(index);
    let dir = scratch.join(format!("case-{index}"));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return (Outcome::Rejected(format!("harness: {e}")), input);
    }
    let mut rng = mutate::case_rng(target.name, !index);
    let outcome = match panic::catch_unwind(AssertUnwindSafe(|| target.run(&input, &dir, &mut rng)))
    {
        Ok(Ok(())) => Outcome::Accepted,
        Ok(Err(error)) => {
            let chain: Vec<String> = error.chain().map(|e| e.to_string()).collect();
            let text = chain.join(": ");
            Outcome::Rejected(text.replace(&dir.display().to_string(), "<case>"))
        }
        Err(_) => Outcome::Panicked(std::mem::take(
            &mut *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()),
        )),
    };
    let _ = std::fs::remove_dir_all(&dir);
    (outcome, input)
}

/// A scratch folder, and target `name` loaded with its state inside it.
fn load_target(name: &str) -> Result<(tempfile::TempDir, Target), String> {
    let scratch = tempfile::tempdir().map_err(|e| format!("no scratch folder: {e}"))?;
    let state = scratch.path().join("state");
    std::fs::create_dir_all(&state).map_err(|e| e.to_string())?;
    let target = Target::new(name, &state).map_err(|e| format!("{name}: {e:#}"))?;
    Ok((scratch, target))
}

fn worker(args: &[String]) -> Result<(), String> {
    let [name, from, to] = args else {
        return Err("--worker TARGET FROM TO".into());
    };
    let (from, to): (u64, u64) = (
        from.parse().map_err(|_| "FROM is a number")?,
        to.parse().map_err(|_| "TO is a number")?,
    );
    let (scratch, target) = load_target(name)?;
    // Panics from here on are the cases' own, caught and reported on stdout.
    quiet_panics();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    for index in from..to {
        let start = Instant::now();
        let (outcome, _) = run_case(&target, index, scratch.path());
        let micros = start.elapsed().as_micros();
        let (kind, text) = match outcome {
            Outcome::Accepted => ("ok", String::new()),
            Outcome::Rejected(text) => ("reject", text),
            Outcome::Panicked(text) => ("panic", text),
        };
        let _ = writeln!(out, "{index}\t{kind}\t{micros}\t{}", escape(&text));
        let _ = out.flush();
    }
    Ok(())
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\t', "\\t")
        .replace('\r', "\\r")
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn replay(args: &[String]) -> Result<(), String> {
    let (name, index, save) = match args {
        [name, index] => (name, index, None),
        [name, index, flag, file] if flag == "--save" => (name, index, Some(file)),
        _ => return Err("--replay TARGET INDEX [--save FILE]".into()),
    };
    let index: u64 = index.parse().map_err(|_| "INDEX is a number")?;
    let (scratch, target) = load_target(name)?;
    let (outcome, input) = run_case(&target, index, scratch.path());
    if let Some(file) = save {
        std::fs::write(file, &input).map_err(|e| format!("{file}: {e}"))?;
    }
    match outcome {
        Outcome::Accepted => println!("{name} #{index}: accepted ({} bytes)", input.len()),
        Outcome::Rejected(text) => println!("{name} #{index}: rejected: {text}"),
        Outcome::Panicked(text) => return Err(format!("{name} #{index}: panicked: {text}")),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The driver: chunks of cases on `jobs` worker processes, a hang or a crash charged to its case.

#[derive(Default)]
struct Stats {
    cases: u64,
    accepted: u64,
    rejected: u64,
    /// Rejections by their text with numbers replaced: count and one example.
    messages: HashMap<String, (u64, String)>,
    multi_line: Vec<(u64, String)>,
    panics: Vec<(u64, String)>,
    crashes: Vec<(u64, String)>,
    hangs: Vec<u64>,
    /// Each case's time in µs.
    micros: Vec<u64>,
    slowest: (u64, u64),
}

impl Stats {
    fn failures(&self) -> usize {
        self.multi_line.len() + self.panics.len() + self.crashes.len() + self.hangs.len()
    }
}

/// A rejection's text with its numbers and quoted names replaced, to count distinct messages.
fn normalise(text: &str) -> String {
    let mut out = String::new();
    let mut in_number = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push('#');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}

fn spawn(target: &str, from: u64, to: u64, stderr: &Path) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let log = std::fs::File::create(stderr).map_err(|e| e.to_string())?;
    Command::new(exe)
        .args(["--worker", target, &from.to_string(), &to.to_string()])
        .env("RAYON_NUM_THREADS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start a worker: {e}"))
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// Runs cases `from..to` of `target`, restarting the worker after a hang or a crash.
fn run_chunk(
    target: &'static str,
    from: u64,
    to: u64,
    limit: Duration,
    scratch: &Path,
    stats: &Mutex<Stats>,
    done: &AtomicU64,
) -> Result<(), String> {
    let mut next = from;
    while next < to {
        let stderr = scratch.join(format!("{target}-{next}.stderr"));
        let mut child = spawn(target, next, to, &stderr)?;
        let stdout = child.stdout.take().ok_or("the worker has no stdout")?;
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(Some(line)).is_err() {
                    return;
                }
            }
            let _ = send.send(None);
        });
        match lines.recv_timeout(SETUP_LIMIT) {
            Ok(Some(line)) if line == "ready" => {}
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the {target} worker did not start: {}",
                    tail(&stderr)
                ));
            }
        }
        loop {
            match lines.recv_timeout(limit) {
                Ok(Some(line)) => {
                    let mut fields = line.splitn(4, '\t');
                    let (Some(index), Some(kind), Some(micros), text) =
                        (fields.next(), fields.next(), fields.next(), fields.next())
                    else {
                        continue;
                    };
                    let index: u64 = index.parse().map_err(|_| format!("worker said `{line}`"))?;
                    let micros: u64 = micros.parse().unwrap_or(0);
                    let text = unescape(text.unwrap_or(""));
                    let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
                    s.cases += 1;
                    s.micros.push(micros);
                    if micros > s.slowest.0 {
                        s.slowest = (micros, index);
                    }
                    match kind {
                        "ok" => s.accepted += 1,
                        "reject" => {
                            s.rejected += 1;
                            if text.contains('\n') || text.trim().is_empty() {
                                s.multi_line.push((index, text.clone()));
                            }
                            let entry = s.messages.entry(normalise(&text)).or_insert((0, text));
                            entry.0 += 1;
                        }
                        _ => s.panics.push((index, text)),
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    next = index + 1;
                }
                Ok(None) => {
                    let status = child.wait().map_err(|e| e.to_string())?;
                    if next < to {
                        let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
                        s.cases += 1;
                        s.crashes
                            .push((next, format!("{status}: {}", tail(&stderr))));
                        done.fetch_add(1, Ordering::Relaxed);
                        next += 1;
                    }
                    break;
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
                    s.cases += 1;
                    s.hangs.push(next);
                    done.fetch_add(1, Ordering::Relaxed);
                    next += 1;
                    break;
                }
            }
        }
        let _ = std::fs::remove_file(&stderr);
    }
    Ok(())
}

fn drive(options: &Options) -> Result<(), String> {
    let started = Instant::now();
    let scratch = tempfile::tempdir().map_err(|e| format!("no scratch folder: {e}"))?;
    let chunk = (options.cases / (options.jobs as u64 * 2)).clamp(50, 2_000);
    let mut queue = VecDeque::new();
    for target in &options.targets {
        let mut from = 0;
        while from < options.cases {
            let to = (from + chunk).min(options.cases);
            queue.push_back((*target, from, to));
            from = to;
        }
    }
    let total = options.cases * options.targets.len() as u64;
    eprintln!(
        "fuzz: {} cases per target, {} targets, {} processes, {} s per case at most",
        options.cases,
        options.targets.len(),
        options.jobs,
        options.time_limit.as_secs()
    );
    let stats: Vec<(&str, Mutex<Stats>)> = options
        .targets
        .iter()
        .map(|t| (*t, Mutex::new(Stats::default())))
        .collect();
    let queue = Mutex::new(queue);
    let done = AtomicU64::new(0);
    let errors = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..options.jobs {
            scope.spawn(|| {
                loop {
                    let Some((target, from, to)) =
                        queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
                    else {
                        return;
                    };
                    let slot = &stats.iter().find(|(t, _)| *t == target).expect("listed").1;
                    if let Err(e) = run_chunk(
                        target,
                        from,
                        to,
                        options.time_limit,
                        scratch.path(),
                        slot,
                        &done,
                    ) {
                        errors.lock().unwrap_or_else(|e| e.into_inner()).push(e);
                        queue.lock().unwrap_or_else(|e| e.into_inner()).clear();
                    }
                }
            });
        }
        // Progress, every 15 s, on one line each.
        scope.spawn(|| {
            let mut last = Instant::now();
            while done.load(Ordering::Relaxed) < total
                && errors.lock().map(|e| e.is_empty()).unwrap_or(false)
            {
                std::thread::sleep(Duration::from_millis(200));
                if last.elapsed() >= Duration::from_secs(15) {
                    last = Instant::now();
                    let failures: usize = stats
                        .iter()
                        .map(|(_, s)| s.lock().map(|s| s.failures()).unwrap_or(0))
                        .sum();
                    eprintln!(
                        "fuzz: {} of {total} cases, {failures} failures, {:.0} s",
                        done.load(Ordering::Relaxed),
                        started.elapsed().as_secs_f64()
                    );
                }
            }
        });
    });
    let errors = errors.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(error) = errors.first() {
        return Err(error.clone());
    }
    let stats: Vec<(&str, Stats)> = stats
        .into_iter()
        .map(|(t, s)| (t, s.into_inner().unwrap_or_else(|e| e.into_inner())))
        .collect();
    let summary = summary(options, &stats, started.elapsed());
    if let Some(parent) = options.summary.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::write(&options.summary, &summary)
        .map_err(|e| format!("cannot write {}: {e}", options.summary.display()))?;
    let failures: usize = stats.iter().map(|(_, s)| s.failures()).sum();
    eprintln!(
        "fuzz: {} cases in {:.0} s, {failures} failures; summary in {}",
        done.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
        options.summary.display()
    );
    if failures > 0 {
        for (target, s) in &stats {
            for (index, text) in s.panics.iter().chain(&s.crashes).chain(&s.multi_line) {
                eprintln!("fuzz: {target} #{index}: {}", escape(text));
            }
            for index in &s.hangs {
                eprintln!(
                    "fuzz: {target} #{index}: no answer in {} s",
                    options.time_limit.as_secs()
                );
            }
        }
        return Err(format!(
            "{failures} cases panicked, crashed, hung or gave a rejection of more than one line; \
             replay one with `{} --replay TARGET INDEX --save FILE`",
            std::env::current_exe().map_or_else(|_| "fuzz".into(), |p| p.display().to_string())
        ));
    }
    Ok(())
}

fn median_ms(micros: &[u64]) -> f64 {
    let mut sorted = micros.to_vec();
    sorted.sort_unstable();
    sorted
        .get(sorted.len() / 2)
        .map_or(0.0, |&m| m as f64 / 1000.0)
}

fn summary(options: &Options, stats: &[(&str, Stats)], wall: Duration) -> String {
    let mut out = String::new();
    let cases: u64 = stats.iter().map(|(_, s)| s.cases).sum();
    let _ = writeln!(out, "# Fuzzing the readers\n");
    let _ = writeln!(
        out,
        "Written by `cargo xtask fuzz --cases {}` (`tests/fuzz/`): {} cases per target, {cases} in \
         all, in {:.1} min on {} ({} worker processes, the dev profile), a case over {} s \
         counting as a hang. Each case is a seed mutated by one to four of: bit flips, boundary \
         bytes, integers and floats, numbers in text replaced by boundary values, truncation, \
         splicing with another seed, chunks deleted, repeated or inserted; one case in 50 is an \
         unchanged seed. A crash is a worker that died (an abort, a stack overflow).\n",
        options.cases,
        options.cases,
        wall.as_secs_f64() / 60.0,
        machine::machine(),
        options.jobs,
        options.time_limit.as_secs()
    );
    let _ = writeln!(
        out,
        "| target | cases | accepted | rejected | distinct messages | panics | crashes | hangs | rejections over one line | median ms per case | slowest |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (target, s) in stats {
        let _ = writeln!(
            out,
            "| `{target}` | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.0} ms (#{}) |",
            s.cases,
            s.accepted,
            s.rejected,
            s.messages.len(),
            s.panics.len(),
            s.crashes.len(),
            s.hangs.len(),
            s.multi_line.len(),
            median_ms(&s.micros),
            s.slowest.0 as f64 / 1000.0,
            s.slowest.1
        );
    }
    let _ = writeln!(out, "\n## What each target reads\n");
    for (target, what) in TARGETS {
        if stats.iter().any(|(t, _)| t == target) {
            let _ = writeln!(out, "- `{target}`: {what}");
        }
    }
    let _ = writeln!(out, "\n## The most frequent rejections\n");
    let _ = writeln!(
        out,
        "Three per target, with how many cases got each (numbers in a message vary).\n"
    );
    for (target, s) in stats {
        let mut messages: Vec<&(u64, String)> = s.messages.values().collect();
        messages.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let _ = writeln!(out, "- `{target}`:");
        for (count, example) in messages.iter().take(3) {
            let shown: String = example.chars().take(300).collect();
            let _ = writeln!(out, "  - {count}× {}", shown.replace('|', "\\|"));
        }
    }
    let failures: Vec<String> = stats
        .iter()
        .flat_map(|(target, s)| {
            s.panics
                .iter()
                .map(move |(i, t)| format!("- `{target}` #{i}: panic: {}", escape(t)))
                .chain(
                    s.crashes
                        .iter()
                        .map(move |(i, t)| format!("- `{target}` #{i}: crash: {}", escape(t))),
                )
                .chain(
                    s.hangs
                        .iter()
                        .map(move |i| format!("- `{target}` #{i}: hang")),
                )
                .chain(s.multi_line.iter().map(move |(i, t)| {
                    format!(
                        "- `{target}` #{i}: a rejection over several lines: {}",
                        escape(t)
                    )
                }))
        })
        .collect();
    let _ = writeln!(out, "\n## Failures\n");
    if failures.is_empty() {
        let _ = writeln!(out, "None.");
    } else {
        let _ = writeln!(
            out,
            "Replay one with `cargo xtask fuzz --replay TARGET INDEX --save FILE`.\n"
        );
        for line in failures {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}
