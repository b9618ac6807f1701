//! Running the real `trainer` binary, with the repository's model folder.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use super::repo::{root, s};

/// The `trainer` binary: cargo's own for the trainer's tests, else the one built beside this
/// test (`cargo test --workspace` builds it).
pub fn binary() -> PathBuf {
    if let Some(path) = option_env!("CARGO_BIN_EXE_trainer") {
        return PathBuf::from(path);
    }
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

/// A `trainer` command with the repository's model folder, ready to run.
pub fn command(args: &[&str]) -> Command {
    let mut command = Command::new(binary());
    command
        .args(args)
        .env("APPARENT_AGE_MODELS", root().join("models"));
    // Mesa's Vulkan drivers (lavapipe among them), when installed, print a line of their own per
    // driver each time wgpu looks for an adapter if this is unset, as it is under CI: those are
    // not the trainer's lines.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        command.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    command
}

/// Runs `trainer args`.
pub fn trainer(args: &[&str]) -> Output {
    command(args).output().expect("the trainer binary runs")
}

/// Its stderr, after checking that nothing panicked.
pub fn no_panic(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("panicked"),
        "panic instead of an error:\n{stderr}"
    );
    stderr
}

/// Runs `trainer args`, which must succeed; returns stdout and stderr.
pub fn ok(args: &[&str]) -> (String, String) {
    let out = trainer(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "trainer {args:?} failed:\n{stderr}");
    (String::from_utf8(out.stdout).unwrap(), stderr)
}

/// The arguments of `trainer eval` of the model in `run` on `csv`, on the CPU, quietly, with
/// `extra` ones.
pub fn eval_args<'a>(run: &'a Path, csv: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "eval",
        "--model",
        s(run),
        "--data",
        s(csv),
        "--device",
        "cpu",
        "-q",
    ];
    args.extend(extra);
    args
}

/// `trainer eval --json` of the model in `run` on `csv`.
pub fn eval_json(run: &Path, csv: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(&eval_args(run, csv, &["--json"])).0).unwrap()
}

/// The synthetic set (`trainer synth`, 32 px, no test split) written into `dir/synth`: its
/// training CSV.
pub fn synthetic_set(dir: &Path, train: usize, valid: usize) -> PathBuf {
    let data = dir.join("synth");
    let (train, valid) = (train.to_string(), valid.to_string());
    ok(&[
        "synth",
        "--out",
        s(&data),
        "--train",
        &train,
        "--valid",
        &valid,
        "--test",
        "0",
        "--image-size",
        "32",
        "--quiet",
    ]);
    data.join("train.csv")
}

/// `trainer train` of TinyAgeNet at 32 px on the CPU from `train_csv` into `run`, for `epochs`,
/// with `extra` arguments.
pub fn tiny_train_args(train_csv: &Path, run: &Path, epochs: usize, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "train",
        "--train",
        s(train_csv),
        "--out",
        s(run),
        "--arch",
        "tiny-age-net",
        "--input-size",
        "32",
        "--epochs",
        &epochs.to_string(),
        "--device",
        "cpu",
        "--quiet",
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// A small TinyAgeNet stream trained on the synthetic set in `dir`: its run folder.
pub fn synthetic_stream(
    dir: &Path,
    train: usize,
    valid: usize,
    epochs: usize,
    extra: &[&str],
) -> PathBuf {
    let train_csv = synthetic_set(dir, train, valid);
    let run = dir.join("run");
    let args = tiny_train_args(&train_csv, &run, epochs, extra);
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    run
}

/// Runs a command that must fail, without a panic, with one `error:` line naming every needle.
pub fn fails_with(args: &[&str], needles: &[&str]) {
    let out = trainer(args);
    let stderr = no_panic(&out);
    assert!(!out.status.success(), "trainer {args:?} should fail");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{stderr}");
    for needle in needles {
        assert!(errors[0].contains(needle), "`{needle}` not in:\n{stderr}");
    }
}
