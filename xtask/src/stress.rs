//! `cargo xtask stress [--kills N] [--seed S]`: crash safety at random moments. Three commands
//! users run for minutes are killed with SIGKILL at N random moments each (default 20), then run
//! again with the same arguments, and each rerun is compared with an uninterrupted run:
//!
//! - `trainer train --config`: a two-stage pipeline on the synthetic set (the second stage
//!   starting from the first);
//! - preprocessing: a pipeline over the test portraits, each listed several times, whose face
//!   chips are cut and cached before training (killed while it cuts them);
//! - `trainer export`: a trained stream written into a model folder.
//!
//! After each kill every JSON file left must parse and every weights file must have its full
//! size (a half-written file is a failure, a leftover temporary file is not); after each rerun
//! the weights, the cached chips, the exported files and the predictions on the test set must
//! equal the uninterrupted run's, byte for byte. The figures go to `bench/STRESS.md`.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

use crate::{Result, cargo, fetch, run, target_dir, workspace_root};

/// A small random number generator (xorshift64*), so that a run can be repeated with `--seed`.
struct Moments(u64);

impl Moments {
    fn next_fraction(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The arguments of a run writing into the given folder.
type Arguments = Box<dyn Fn(&Path) -> Vec<String>>;
/// What prepares the given folder before a run.
type Prepare = Box<dyn Fn(&Path) -> Result<()>>;

/// One command under test.
struct Scenario {
    name: &'static str,
    /// The arguments for a run writing into `out`.
    args: Arguments,
    /// Prepares `out` before the first attempt (the export's model folder).
    prepare: Prepare,
    /// Files compared with the uninterrupted run (relative to `out`), and the trained stream
    /// whose predictions are compared, if any.
    compared: fn(&Path) -> Vec<PathBuf>,
    predicted: Option<&'static str>,
    /// The kills fall in the first this fraction of the uninterrupted run's time (the
    /// preprocessing is the start of its run).
    window: f64,
}

#[derive(Default)]
struct Tally {
    reference_s: f64,
    kills: usize,
    ended_first: usize,
    leftovers: usize,
    moments: Vec<f64>,
    rerun_s: Vec<f64>,
    problems: Vec<String>,
}

pub fn stress(args: &[String]) -> Result<()> {
    let mut kills = 20usize;
    let mut seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let value = args.next().ok_or_else(|| format!("{arg} needs a number"))?;
        let number: u64 = value
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{arg} {value}: expected a whole number over 0"))?;
        match arg.as_str() {
            "--kills" => kills = number as usize,
            "--seed" => seed = number,
            other => {
                return Err(format!(
                    "stress: unknown option `{other}` (--kills N, --seed S)"
                ));
            }
        }
    }
    fetch::fetch_models()?;
    fetch::fetch_portraits()?;
    // The trainer exactly as the tests build it (the whole workspace's features), so that
    // nothing is built twice.
    let mut build = cargo();
    build.args(["test", "--workspace", "--no-run"]);
    run("building the trainer as the tests do", build)?;
    let work = target_dir().join("stress");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    // A copy of its own, so that a build during the run does not swap the binary under it.
    let trainer = work.join("trainer");
    fs::copy(target_dir().join("debug/trainer"), &trainer)
        .map_err(|e| format!("cannot copy the trainer binary: {e}"))?;
    let models = workspace_root().join("models");
    let t = Trainer {
        binary: trainer,
        models: models.clone(),
    };
    eprintln!("xtask: stress seed {seed} ({kills} kills per command; `--seed {seed}` repeats it)");

    // The data: the synthetic set, and the portraits listed eight times each.
    let synth = work.join("synth");
    t.ok(&[
        "synth",
        "--out",
        &s(&synth),
        "--train",
        "96",
        "--valid",
        "16",
        "--test",
        "16",
        "--image-size",
        "32",
        "--quiet",
    ])?;
    let photos = work.join("photos");
    fs::create_dir_all(&photos).map_err(|e| e.to_string())?;
    let mut rows = String::from("path,mean,std\n");
    let portraits = [
        "astronaut.png",
        "camera.png",
        "coffee.png",
        "grace_hopper.jpg",
        "grace_hopper_512x512.jpg",
    ];
    // Eight copies of each under their own names (a chip each), each listed twice (two rows
    // of one image: two workers may cut and cache the same chip at once).
    for copy in 0..8 {
        for (i, name) in portraits.iter().enumerate() {
            let file = format!("{copy}-{name}");
            fs::copy(fetch::portraits_dir().join(name), photos.join(&file))
                .map_err(|e| format!("{name}: {e}"))?;
            for row in 0..2 {
                let _ = writeln!(rows, "{file},{},4", 20 + 7 * i + copy + row);
            }
        }
    }
    fs::write(photos.join("faces.csv"), rows).map_err(|e| e.to_string())?;

    let pipeline = work.join("pipeline.toml");
    fs::write(&pipeline, two_stages(&synth)).map_err(|e| e.to_string())?;
    let faces = work.join("faces.toml");
    fs::write(&faces, face_pipeline(&photos)).map_err(|e| e.to_string())?;

    // A trained stream for the export, from the pipeline's uninterrupted run below.
    let reference_root = work.join("reference");
    let exported_from = reference_root.join("train").join("stages/second");
    let base_models = models.clone();
    let scenarios = vec![
        Scenario {
            name: "train --config (two stages)",
            args: train_config(pipeline.clone()),
            prepare: Box::new(|_| Ok(())),
            compared: |out| weights_under(out),
            predicted: Some("stages/second"),
            window: 1.0,
        },
        Scenario {
            name: "preprocessing (face chips, then one epoch)",
            args: train_config(faces.clone()),
            prepare: Box::new(|_| Ok(())),
            compared: |out| {
                let mut files = weights_under(out);
                files.extend(files_under(out, &out.join("cache")));
                files
            },
            predicted: None,
            window: 0.6,
        },
        Scenario {
            name: "export",
            args: {
                let from = exported_from.clone();
                Box::new(move |out| {
                    strings(&[
                        "export",
                        "--model",
                        &s(&from),
                        "--name",
                        "stressed",
                        "--models",
                        &s(&out.join("models")),
                        "--allow-synthetic",
                        "--device",
                        "cpu",
                    ])
                })
            },
            prepare: Box::new(move |out| copy_models(&base_models, &out.join("models"))),
            compared: |out| files_under(out, &out.join("models/streams")),
            predicted: None,
            window: 1.0,
        },
    ];

    let mut moments = Moments(seed);
    let mut report = Vec::new();
    for scenario in &scenarios {
        let mut tally = Tally::default();
        let reference = reference_root.join(match scenario.name {
            n if n.starts_with("train") => "train",
            n if n.starts_with("pre") => "faces",
            _ => "export",
        });
        (scenario.prepare)(&reference)?;
        let started = Instant::now();
        t.ok_strings(&(scenario.args)(&reference))?;
        tally.reference_s = started.elapsed().as_secs_f64();
        let expected = digests(&reference, &(scenario.compared)(&reference));
        if expected.is_empty() {
            return Err(format!(
                "{}: the uninterrupted run left nothing to compare",
                scenario.name
            ));
        }
        let predictions = scenario
            .predicted
            .map(|stream| t.predictions(&reference.join(stream), &synth.join("test.csv")))
            .transpose()?;
        eprintln!(
            "xtask: stress `{}`: uninterrupted in {:.1} s; {kills} kills",
            scenario.name, tally.reference_s
        );
        for k in 0..kills {
            let out = work.join(format!(
                "{}-{k}",
                reference
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("run")
            ));
            (scenario.prepare)(&out)?;
            let at = moments.next_fraction() * scenario.window * tally.reference_s;
            let mut child = t
                .command(&(scenario.args)(&out))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start the trainer: {e}"))?;
            let started = Instant::now();
            let mut ended = false;
            while started.elapsed().as_secs_f64() < at {
                if child.try_wait().map_err(|e| e.to_string())?.is_some() {
                    ended = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            if ended {
                tally.ended_first += 1;
            } else {
                child
                    .kill()
                    .map_err(|e| format!("cannot kill the trainer: {e}"))?;
                let _ = child.wait();
                tally.kills += 1;
                tally.moments.push(at);
                let (problems, leftovers) = whole(&out);
                tally.leftovers += leftovers;
                for problem in problems {
                    tally
                        .problems
                        .push(format!("kill {k} at {at:.2} s: {problem}"));
                }
            }
            let rerun = Instant::now();
            if let Err(e) = t.ok_strings(&(scenario.args)(&out)) {
                tally
                    .problems
                    .push(format!("kill {k} at {at:.2} s: the rerun failed: {e}"));
                continue;
            }
            tally.rerun_s.push(rerun.elapsed().as_secs_f64());
            let found = digests(&out, &(scenario.compared)(&reference));
            for (file, digest) in &expected {
                match found.get(file) {
                    None => tally
                        .problems
                        .push(format!("kill {k}: {file} is missing after the rerun")),
                    Some(d) if d != digest => tally.problems.push(format!(
                        "kill {k} at {at:.2} s: {file} differs from the uninterrupted run's"
                    )),
                    _ => {}
                }
            }
            if let (Some(stream), Some(expected)) = (scenario.predicted, &predictions) {
                match t.predictions(&out.join(stream), &synth.join("test.csv")) {
                    Ok(p) if &p == expected => {}
                    Ok(_) => tally
                        .problems
                        .push(format!("kill {k}: the predictions differ")),
                    Err(e) => tally.problems.push(format!("kill {k}: {e}")),
                }
            }
            eprintln!(
                "xtask: stress `{}`: {} of {kills}{}, {} problems so far",
                scenario.name,
                k + 1,
                if ended {
                    " (ended before its moment)"
                } else {
                    ""
                },
                tally.problems.len()
            );
            let _ = fs::remove_dir_all(&out);
        }
        report.push((scenario.name, expected.len(), tally));
    }

    let problems: usize = report.iter().map(|(_, _, t)| t.problems.len()).sum();
    let text = summary(kills, seed, &report);
    let path = workspace_root().join("bench/STRESS.md");
    fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!(
        "xtask: stress: {problems} problems; written to {}",
        path.display()
    );
    let _ = fs::remove_dir_all(&work);
    if problems > 0 {
        for (name, _, tally) in &report {
            for problem in &tally.problems {
                eprintln!("xtask: stress `{name}`: {problem}");
            }
        }
        return Err(format!(
            "{problems} problems after kills (listed above and in bench/STRESS.md)"
        ));
    }
    Ok(())
}

struct Trainer {
    binary: PathBuf,
    models: PathBuf,
}

impl Trainer {
    fn command(&self, args: &[String]) -> Command {
        let mut command = Command::new(&self.binary);
        command.args(args).env("APPARENT_AGE_MODELS", &self.models);
        command
    }

    fn ok_strings(&self, args: &[String]) -> Result<String> {
        let out = self
            .command(args)
            .output()
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "trainer {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    fn ok(&self, args: &[&str]) -> Result<String> {
        self.ok_strings(&strings(args))
    }

    /// `trainer eval --json`'s predictions of the stream in `run` on `csv`.
    fn predictions(&self, run: &Path, csv: &Path) -> Result<serde_json::Value> {
        let out = self.ok(&[
            "eval",
            "--model",
            &s(run),
            "--data",
            &s(csv),
            "--device",
            "cpu",
            "-q",
            "--json",
        ])?;
        let value: serde_json::Value =
            serde_json::from_str(&out).map_err(|e| format!("eval --json: {e}"))?;
        Ok(value["predictions"].clone())
    }
}

/// `trainer train --config CONFIG --out OUT` on the CPU, quietly.
fn train_config(config: PathBuf) -> Arguments {
    Box::new(move |out| {
        strings(&[
            "train",
            "--config",
            &s(&config),
            "--out",
            &s(out),
            "--device",
            "cpu",
            "--quiet",
        ])
    })
}

fn s(path: &Path) -> String {
    path.display().to_string()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

const TINY: &str = "stream = 'tiny-age-net'\ninput_size = 32\nbatch_size = 16\n\
                    optimizer = { learning_rate = 1e-3 }\n";

/// Two stages on the synthetic set, the second from the first, with a checkpoint every epoch.
fn two_stages(synth: &Path) -> String {
    let sets = format!(
        "train = [{{ format = 'csv', path = '{}' }}]\nvalid = [{{ format = 'csv', path = '{}' }}]\n",
        s(&synth.join("train.csv")),
        s(&synth.join("valid.csv"))
    );
    format!(
        "[[stage]]\nname = 'first'\n{TINY}loss = 'kl'\nepochs = 2\n{sets}\
         augment = {{ flip = true, rotation = 10.0, brightness = 0.2 }}\n\n\
         [[stage]]\nname = 'second'\nfrom = 'first'\n{TINY}loss = 'kl-l1:1'\nepochs = 4\n\
         schedule = {{ step_epochs = 1, gamma = 0.5 }}\n{sets}"
    )
}

/// One stage over the portraits, whose faces are found, aligned and cached first.
fn face_pipeline(photos: &Path) -> String {
    format!(
        "[[stage]]\nname = 'faces'\n{TINY}loss = 'kl'\nepochs = 1\n\
         train = [{{ format = 'csv', path = '{}', faces = 'align' }}]\n",
        s(&photos.join("faces.csv"))
    )
}

fn copy_models(from: &Path, to: &Path) -> Result<()> {
    let _ = fs::remove_dir_all(to);
    fs::create_dir_all(to.join("blazeface")).map_err(|e| e.to_string())?;
    for entry in fs::read_dir(from).map_err(|e| e.to_string())?.flatten() {
        let path = entry.path();
        if path.is_file() {
            fs::copy(&path, to.join(entry.file_name())).map_err(|e| e.to_string())?;
        }
    }
    for entry in fs::read_dir(from.join("blazeface"))
        .map_err(|e| e.to_string())?
        .flatten()
    {
        fs::copy(entry.path(), to.join("blazeface").join(entry.file_name()))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Every file under `dir`, relative to `root`.
fn files_under(root: &Path, dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(relative) = path.strip_prefix(root) {
                files.push(relative.to_path_buf());
            }
        }
    }
    files.sort();
    files
}

/// The trained weights of every stage (not the checkpoints, which a finished stage may keep
/// or drop).
fn weights_under(out: &Path) -> Vec<PathBuf> {
    files_under(out, out)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "model.bpk"))
        .collect()
}

/// The sha256 of each file; of a burnpack file (`.bpk`), of its tensor data, since its
/// metadata holds each parameter's random id, new in every run.
fn digests(root: &Path, files: &[PathBuf]) -> BTreeMap<String, String> {
    files
        .iter()
        .filter_map(|file| {
            let bytes = fs::read(root.join(file)).ok()?;
            let compared = if file.extension().is_some_and(|e| e == "bpk") {
                burnpack_data(&bytes)
            } else {
                &bytes
            };
            Some((file.display().to_string(), fetch::sha256(compared)))
        })
        .collect()
}

/// A burnpack file's layout (burn-pack's): a 10-byte header (magic, version, metadata size as
/// u32 little-endian), the metadata, and the tensor data from the next 256-byte boundary.
/// Returns the metadata's size and where the data starts; `None` for a file without a header.
fn burnpack_layout(bytes: &[u8]) -> Option<(usize, usize)> {
    let size = bytes.get(6..10)?;
    let metadata = u32::from_le_bytes([size[0], size[1], size[2], size[3]]) as usize;
    Some((metadata, (10 + metadata).div_ceil(256) * 256))
}

/// A burnpack file's tensor data; the whole file when it is shorter than its header says.
fn burnpack_data(bytes: &[u8]) -> &[u8] {
    burnpack_layout(bytes)
        .and_then(|(_, start)| bytes.get(start..))
        .unwrap_or(bytes)
}

/// What a kill left in `out`: every JSON file parses, every weights file is whole. Returns the
/// problems and the count of temporary files left behind.
fn whole(out: &Path) -> (Vec<String>, usize) {
    let mut problems = Vec::new();
    let mut leftovers = 0;
    for file in files_under(out, out) {
        let path = out.join(&file);
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with(".tmp") || name.ends_with(".tmp") {
            leftovers += 1;
            continue;
        }
        let Ok(bytes) = fs::read(&path) else {
            problems.push(format!("{} cannot be read", file.display()));
            continue;
        };
        if name.ends_with(".json") && serde_json::from_slice::<serde_json::Value>(&bytes).is_err() {
            problems.push(format!(
                "{} is not whole JSON ({} bytes)",
                file.display(),
                bytes.len()
            ));
        }
        if name.ends_with(".bpk")
            && let Err(why) = burnpack_whole(&bytes)
        {
            problems.push(format!(
                "{} is not a whole burnpack file: {why}",
                file.display()
            ));
        }
    }
    (problems, leftovers)
}

/// Checks that a burnpack file holds all it promises: its metadata (CBOR) is well formed and
/// inside the file, and the file ends where its last tensor does.
fn burnpack_whole(bytes: &[u8]) -> std::result::Result<(), String> {
    if bytes.get(..4) != Some(b"NRUB".as_slice()) {
        return Err(format!("no burnpack header ({} bytes)", bytes.len()));
    }
    let (metadata, start) = burnpack_layout(bytes).ok_or("the header is cut")?;
    let cbor = bytes
        .get(10..10 + metadata)
        .ok_or_else(|| format!("{metadata} bytes of metadata in a file of {}", bytes.len()))?;
    let mut reader = Cbor {
        bytes: cbor,
        at: 0,
        data_end: 0,
    };
    reader.item(0)?;
    let end = start as u64 + reader.data_end;
    if end != bytes.len() as u64 {
        return Err(format!(
            "its tensors end at byte {end}, the file at {}",
            bytes.len()
        ));
    }
    Ok(())
}

/// Just enough CBOR to walk burnpack's metadata and find where its tensor data ends (the
/// largest second number of every `data_offsets` pair).
struct Cbor<'a> {
    bytes: &'a [u8],
    at: usize,
    data_end: u64,
}

impl Cbor<'_> {
    fn byte(&mut self) -> std::result::Result<u8, String> {
        let b = *self.bytes.get(self.at).ok_or("the metadata is cut short")?;
        self.at += 1;
        Ok(b)
    }

    /// A head: major type and argument.
    fn head(&mut self) -> std::result::Result<(u8, u64), String> {
        let first = self.byte()?;
        let (major, info) = (first >> 5, first & 0x1f);
        let argument = match info {
            0..=23 => u64::from(info),
            24..=27 => {
                let mut value = 0u64;
                for _ in 0..(1usize << (info - 24)) {
                    value = value << 8 | u64::from(self.byte()?);
                }
                value
            }
            _ => {
                return Err(format!(
                    "a CBOR item of kind {info} (indefinite or reserved)"
                ));
            }
        };
        Ok((major, argument))
    }

    fn text(&mut self, len: u64) -> std::result::Result<&[u8], String> {
        let end = self.at.checked_add(len as usize).ok_or("a huge string")?;
        let text = self
            .bytes
            .get(self.at..end)
            .ok_or("a string past the metadata's end")?;
        self.at = end;
        Ok(text)
    }

    /// Walks one item; `depth` bounds nesting.
    fn item(&mut self, depth: usize) -> std::result::Result<(), String> {
        if depth > 32 {
            return Err("the metadata nests too deep".into());
        }
        let (major, argument) = self.head()?;
        match major {
            0 | 1 | 7 => Ok(()),
            2 | 3 => self.text(argument).map(|_| ()),
            4 => (0..argument).try_for_each(|_| self.item(depth + 1)),
            5 => {
                for _ in 0..argument {
                    let key_at = self.at;
                    self.item(depth + 1)?;
                    let is_offsets =
                        self.bytes.get(key_at..self.at) == Some(b"\x6cdata_offsets".as_slice());
                    if is_offsets {
                        let (major, count) = self.head()?;
                        if major != 4 || count != 2 {
                            return Err("a data_offsets that is no pair".into());
                        }
                        let (_, _start) = self.head()?;
                        let (_, end) = self.head()?;
                        self.data_end = self.data_end.max(end);
                    } else {
                        self.item(depth + 1)?;
                    }
                }
                Ok(())
            }
            6 => self.item(depth + 1),
            _ => Err(format!("a CBOR item of major type {major}")),
        }
    }
}

fn summary(kills: usize, seed: u64, report: &[(&str, usize, Tally)]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Crash safety: killed at random moments, then run again\n"
    );
    let _ = writeln!(
        out,
        "Written by `cargo xtask stress --kills {kills} --seed {seed}` on {}, \
         the trainer as the tests build it (dev profile), on the CPU. Each command is killed \
         with SIGKILL at {kills} moments drawn uniformly over its uninterrupted run's time (the \
         first 60 % for the preprocessing run, where it cuts face chips), then run again with \
         the same arguments. After each kill every JSON file must parse and every weights file \
         must hold every tensor its metadata lists; after each rerun the compared files must equal the \
         uninterrupted run's byte for byte, and for the pipeline the predictions on the test \
         set too. A leftover temporary file (from a write the kill cut short) is counted, not a \
         failure: nothing reads it.\n",
        crate::machine::machine()
    );
    let _ = writeln!(
        out,
        "| command | uninterrupted | kills | ended before the moment | files compared | median rerun | temporary files left | problems |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, files, t) in report {
        let mut reruns = t.rerun_s.clone();
        reruns.sort_by(f64::total_cmp);
        let median = reruns.get(reruns.len() / 2).copied().unwrap_or(0.0);
        let _ = writeln!(
            out,
            "| `{name}` | {:.1} s | {} | {} | {files} | {median:.1} s | {} | {} |",
            t.reference_s,
            t.kills,
            t.ended_first,
            t.leftovers,
            t.problems.len()
        );
    }
    let _ = writeln!(
        out,
        "\nThe moments of the kills, in seconds after the start:\n"
    );
    for (name, _, t) in report {
        let moments: Vec<String> = t.moments.iter().map(|m| format!("{m:.2}")).collect();
        let _ = writeln!(out, "- `{name}`: {}", moments.join(", "));
    }
    let _ = writeln!(out, "\n## Problems\n");
    let all: Vec<String> = report
        .iter()
        .flat_map(|(name, _, t)| t.problems.iter().map(move |p| format!("- `{name}`: {p}")))
        .collect();
    if all.is_empty() {
        let _ = writeln!(out, "None.");
    } else {
        for line in all {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}
