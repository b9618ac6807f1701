//! End to end: the real `trainer` binary writes the synthetic set, trains TinyAgeNet on it on the
//! CPU, and evaluates the saved weights on held-out faces.

mod support;

use std::path::Path;

use serde_json::Value;
use support::{
    repo::s,
    trainer::{eval_args, eval_json, fails_with, ok, synthetic_set, tiny_train_args},
};

fn labels(csv: &Path) -> Vec<f64> {
    std::fs::read_to_string(csv)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect()
}

fn as_refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn tiny_age_net_learns_the_synthetic_ages() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("synth");
    let run = dir.path().join("run");
    ok(&[
        "synth",
        "--out",
        s(&data),
        "--train",
        "1600",
        "--valid",
        "200",
        "--test",
        "300",
        "--image-size",
        "48",
        "--seed",
        "11",
        "--quiet",
    ]);
    let train_csv = data.join("train.csv");
    let valid_csv = data.join("valid.csv");
    let test_csv = data.join("test.csv");

    let train_args = |epochs: &str, extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = [
            "train",
            "--train",
            s(&train_csv),
            "--valid",
            s(&valid_csv),
            "--out",
            s(&run),
            "--arch",
            "tiny-age-net",
            "--loss",
            "kl-l1",
            "--input-size",
            "32",
            "--epochs",
            epochs,
            "--batch-size",
            "32",
            "--learning-rate",
            "3e-3",
            "--lr-step",
            "3",
            "--lr-gamma",
            "0.3",
            "--device",
            "cpu",
            "--quiet",
            "--json",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };

    // Stop after one epoch, then resume: the run must pick up where it stopped.
    let first = train_args("4", &["--stop-after", "1"]);
    let summary: Value = serde_json::from_str(&ok(&as_refs(&first)).0).unwrap();
    assert_eq!(summary["epochs_done"], 1);
    assert_eq!(summary["finished"], false);
    assert!(
        !run.join("model.bpk").exists(),
        "weights written before the run finished"
    );
    let rest = train_args("4", &["--resume"]);
    let summary: Value = serde_json::from_str(&ok(&as_refs(&rest)).0).unwrap();
    assert_eq!(summary["epochs_done"], 4);
    assert_eq!(summary["history"].as_array().unwrap().len(), 4);
    let curves = std::fs::read_to_string(run.join("training.svg")).unwrap();
    assert_eq!(
        curves.matches("<circle").count(),
        8,
        "4 epochs × (loss, MAE)"
    );

    // Held-out MAE against always predicting the training mean.
    let train_mean = {
        let l = labels(&train_csv);
        l.iter().sum::<f64>() / l.len() as f64
    };
    let test_labels = labels(&test_csv);
    let baseline = test_labels
        .iter()
        .map(|m| (m - train_mean).abs())
        .sum::<f64>()
        / test_labels.len() as f64;
    let eval = eval_json(&run, &test_csv);
    let mae = eval["metrics"]["mae"].as_f64().unwrap();
    eprintln!("held-out MAE {mae:.2} vs mean-prediction MAE {baseline:.2}");
    assert!(
        mae <= 0.5 * baseline,
        "MAE {mae:.2} is not at most half of {baseline:.2}"
    );
    assert_eq!(
        eval["predictions"].as_array().unwrap().len(),
        test_labels.len()
    );

    // The reloaded weights give exactly the validation figures the in-memory model gave.
    let card: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("model.json")).unwrap()).unwrap();
    let reloaded = eval_json(&run, &valid_csv);
    assert_eq!(card["validation"], reloaded["metrics"]);
    assert_eq!(card["data"]["kind"], "synthetic");
    assert_eq!(card["model"]["architecture"], "tiny-age-net");
    assert_eq!(card["parameters"], 934_869);

    // The table names every metric.
    let (table, _) = ok(&eval_args(&run, &test_csv, &[]));
    for needle in ["MAE", "ε-error", "CS@1 ", "CS@10"] {
        assert!(table.contains(needle), "{needle} missing from\n{table}");
    }

    // Bad input: one clear line each, and nothing already trained is lost.
    let weights_before = std::fs::read(run.join("model.bpk")).unwrap();
    fails_with(&as_refs(&train_args("6", &[])), &["already holds a run"]);
    assert_eq!(
        std::fs::read(run.join("model.bpk")).unwrap(),
        weights_before
    );
    let mut bad_arch = train_args("1", &[]);
    bad_arch[8] = "resnet".into();
    fails_with(&as_refs(&bad_arch), &["unknown architecture"]);
    fails_with(
        &eval_args(&run, Path::new("/nonexistent.csv"), &[]),
        &["cannot read the CSV"],
    );
    let wrong = dir.path().join("wrong");
    std::fs::create_dir(&wrong).unwrap();
    std::fs::copy(run.join("model.bpk"), wrong.join("model.bpk")).unwrap();
    let mut card = card.clone();
    card["model"]["architecture"] = "thin-age-net".into();
    std::fs::write(wrong.join("model.json"), card.to_string()).unwrap();
    fails_with(
        &eval_args(&wrong, &test_csv, &[]),
        &["do not fit a thin-age-net"],
    );
}

/// A run that diverges stops within `LOSS_READ_EVERY` (16) steps of the first bad loss, with one
/// line naming the epoch and the steps, and leaves the last good checkpoint: here epoch 1 trains
/// normally and epoch 2's learning rate is 10³⁵ times larger.
#[test]
fn a_diverging_run_stops_within_sixteen_steps_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let train_csv = synthetic_set(dir.path(), 320, 0);
    let run = dir.path().join("run");
    let extra = ["--batch-size", "8", "--lr-step", "1", "--lr-gamma", "1e35"];
    let args = tiny_train_args(&train_csv, &run, 2, &extra);
    fails_with(
        &as_refs(&args),
        &[
            "the loss became",
            "in epoch 2",
            "between steps",
            "of 40",
            "lower the learning rate",
        ],
    );
    let latest: Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("checkpoints/latest.json")).unwrap(),
    )
    .unwrap();
    assert!(
        latest.to_string().contains("epoch-0001"),
        "the last good checkpoint is epoch 1's: {latest}"
    );
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("checkpoints/epoch-0001/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["epochs_done"], 1, "{state}");
}

/// `--devices` trains data-parallel: on this machine's CPU, named twice, a run finishes and its
/// model card names both devices. Devices of two kinds, or one this machine does not have, are
/// one line that lists the devices it has.
#[test]
fn devices_train_data_parallel_and_unknown_or_mixed_ones_are_one_line_listing_the_devices_here() {
    let dir = tempfile::tempdir().unwrap();
    let train_csv = synthetic_set(dir.path(), 24, 0);
    let run = dir.path().join("run");
    let args = tiny_train_args(
        &train_csv,
        &run,
        1,
        &["--batch-size", "8", "--devices", "cpu,cpu"],
    );
    ok(&as_refs(&args));
    let card = std::fs::read_to_string(run.join("model.json")).unwrap();
    assert!(card.contains("2 devices, data-parallel"), "{card}");
    for (devices, needle) in [
        ("cpu,wgpu:0", "different kinds (cpu and wgpu:0)"),
        ("cpu,cuda:0", "different kinds (cpu and cuda:0)"),
        ("wgpu:9", "no device `wgpu:9` here"),
        ("tpu:0", "no device `tpu:0` here"),
    ] {
        let run = dir.path().join(devices.replace([',', ':'], "-"));
        let args = tiny_train_args(&train_csv, &run, 1, &["--devices", devices]);
        fails_with(&as_refs(&args), &[needle, "devices here: cpu"]);
    }
}

/// A batch too large for the CPU's memory is refused before the first step, in one line that
/// names a batch size that fits, and nothing of the run is written. (On the CPU such a batch
/// would otherwise abort the process at the allocation that does not fit.)
#[test]
fn a_batch_too_large_for_the_memory_is_one_line_naming_one_that_fits() {
    let dir = tempfile::tempdir().unwrap();
    let train_csv = synthetic_set(dir.path(), 8, 0);
    let run = dir.path().join("run");
    // TinyAgeNet's step at 256 px takes about 60 MB per image: 4 096 of them take about 250 GB.
    let mut args = tiny_train_args(&train_csv, &run, 1, &["--batch-size", "4096"]);
    let size = args.iter().position(|a| a == "--input-size").unwrap() + 1;
    args[size] = "256".to_string();
    fails_with(
        &as_refs(&args),
        &[
            "a batch of 4096 at 256×256 px needs about",
            "is available",
            "use --batch-size",
        ],
    );
    assert!(!run.exists(), "nothing of the run is written");
    // The size it names passes the check: the run trains.
    let out = support::trainer::trainer(&as_refs(&args));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let fits: usize = stderr
        .split("use --batch-size ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no batch size in: {stderr}"));
    assert!((1..4096).contains(&fits), "{stderr}");
    let batch = args.iter().position(|a| a == "--batch-size").unwrap() + 1;
    args[batch] = fits.to_string();
    ok(&as_refs(&args));
    assert!(run.join("model.json").exists());
}
