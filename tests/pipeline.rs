//! End to end: staged pipelines from TOML (killed mid-stage and resumed), the real data-set
//! formats through the face pipeline and its cache, fusion, export to a model folder that
//! `trainer predict` picks up, distillation, and bad input — all with the `trainer` binary.
//!
//! The face tests need `cargo xtask fetch-models` and `cargo xtask fetch-portraits` (run by
//! `cargo xtask test`).

mod support;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{
    repo::{model, portrait, s},
    trainer::{eval_json, fails_with, ok},
};

fn synth(dir: &Path, train: usize) -> PathBuf {
    let data = dir.join("synth");
    ok(&[
        "synth",
        "--out",
        s(&data),
        "--train",
        &train.to_string(),
        "--valid",
        "16",
        "--test",
        "16",
        "--image-size",
        "32",
        "--quiet",
    ]);
    data
}

const TINY: &str = "stream = 'tiny-age-net'\ninput_size = 32\nbatch_size = 16\n\
                    optimizer = { learning_rate = 1e-3 }\n";

fn two_stages(data: &Path, second_epochs: usize) -> String {
    let train = format!(
        "train = [{{ format = 'csv', path = '{}' }}]",
        s(&data.join("train.csv"))
    );
    let valid = format!(
        "valid = [{{ format = 'csv', path = '{}' }}]",
        s(&data.join("valid.csv"))
    );
    format!(
        "[[stage]]\nname = 'first'\n{TINY}loss = 'kl'\nepochs = 1\n{train}\n{valid}\n\
         augment = {{ flip = true, rotation = 10.0, brightness = 0.2 }}\n\n\
         [[stage]]\nname = 'second'\nfrom = 'first'\n{TINY}loss = 'kl-l1:1'\n\
         epochs = {second_epochs}\nschedule = {{ step_epochs = 1, gamma = 0.5 }}\n{train}\n{valid}\n"
    )
}

fn predictions(run: &Path, csv: &Path) -> Vec<Value> {
    eval_json(run, csv)["predictions"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn a_two_stage_pipeline_resumes_after_being_killed_mid_stage() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), 96);
    let config = dir.path().join("pipeline.toml");
    fs::write(&config, two_stages(&data, 4)).unwrap();

    let straight = dir.path().join("straight");
    let (_, stderr) = ok(&[
        "train",
        "--config",
        s(&config),
        "--out",
        s(&straight),
        "--device",
        "cpu",
    ]);
    assert!(stderr.contains("stage 2/2 `second`"), "{stderr}");
    assert!(straight.join("stages/second/model.json").exists());
    let card: Value =
        serde_json::from_slice(&fs::read(straight.join("stages/second/model.json")).unwrap())
            .unwrap();
    assert_eq!(card["training"]["epochs"], 4);
    let first: Value =
        serde_json::from_slice(&fs::read(straight.join("stages/first/model.json")).unwrap())
            .unwrap();
    let augmentation = first["training"]["augmentation"].as_str().unwrap();
    assert!(augmentation.contains("rotation ±10°"), "{augmentation}");

    // Kill the same pipeline as soon as the second stage has written its first checkpoint.
    let killed = dir.path().join("killed");
    let run_killed = [
        "train",
        "--config",
        s(&config),
        "--out",
        s(&killed),
        "--device",
        "cpu",
    ];
    let mut child = support::trainer::command(&[&run_killed[..], &["--quiet"]].concat())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let checkpoint = killed.join("stages/second/checkpoints/latest.json");
    let started = Instant::now();
    while !checkpoint.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "no checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !killed.join("stages/second/model.json").exists(),
        "killed before the stage finished"
    );
    let (_, stderr) = ok(&run_killed);
    assert!(
        stderr.contains("already trained"),
        "the first stage is not redone:\n{stderr}"
    );
    assert!(stderr.contains("resuming"), "{stderr}");

    // The resumed pipeline ends exactly where the uninterrupted one did.
    let test = data.join("test.csv");
    assert_eq!(
        predictions(&straight.join("stages/second"), &test),
        predictions(&killed.join("stages/second"), &test)
    );

    // Changing a finished stage's settings is refused, and nothing is lost.
    fs::write(
        &config,
        two_stages(&data, 4).replace("'kl'\nepochs = 1\n", "'kl'\nepochs = 1\nseed = 9\n"),
    )
    .unwrap();
    fails_with(&run_killed, &["stage `first`", "other settings"]);
    assert!(killed.join("stages/second/model.json").exists());
}

#[test]
fn bad_pipelines_and_sets_get_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        fs::write(&path, text).unwrap();
        path
    };
    let csv = write("set.csv", "path,mean,std\na.png,30,2\nb.png,forty,2\n");
    let stage = |extra: &str| {
        format!(
            "[[stage]]\nname = 'a'\n{TINY}loss = 'kl'\nepochs = 1\n\
             train = [{{ format = 'csv', path = '{}' }}]\n{extra}",
            s(&csv)
        )
    };
    let unknown = write("unknown.toml", &stage("learning_rate = 0.1\n"));
    fails_with(
        &["train", "--config", s(&unknown), "--out", s(&out)],
        &["unknown.toml:", "unknown field `learning_rate`"],
    );
    let dangling = write("dangling.toml", &stage("from = 'pretrain'\n"));
    fails_with(
        &["train", "--config", s(&dangling), "--out", s(&out)],
        &["stage `a` starts from `pretrain`, which is not an earlier stage"],
    );
    let bad_row = write("bad-row.toml", &stage(""));
    fails_with(
        &["train", "--config", s(&bad_row), "--out", s(&out)],
        &["set.csv:3", "forty"],
    );
    let mat = write(
        "imdb.mat",
        "MATLAB 5.0 MAT-file, but nothing after the header",
    );
    let wrong_mat = write(
        "mat.toml",
        &stage("").replace(
            &format!("{{ format = 'csv', path = '{}' }}", s(&csv)),
            &format!("{{ format = 'imdb-wiki', mat = '{}' }}", s(&mat)),
        ),
    );
    fails_with(
        &["train", "--config", s(&wrong_mat), "--out", s(&out)],
        &["imdb.mat"],
    );
    // A set whose images are not there: the first is named, with the way out.
    write(
        "images.csv",
        "path,mean,std\nface-1.png,30,2\nface-2.png,40,2\n",
    );
    let no_images = write(
        "no-images.toml",
        &stage("").replace("set.csv", "images.csv"),
    );
    fails_with(
        &["train", "--config", s(&no_images), "--out", s(&out)],
        &[
            "face-1.png is missing",
            "2 of 2 images could not be read",
            "skip_unreadable",
        ],
    );
    let missing = write("missing.toml", &stage("").replace("set.csv", "gone.csv"));
    fails_with(
        &["train", "--config", s(&missing), "--out", s(&out)],
        &["gone.csv"],
    );
}

/// An APPA-REAL folder made of the public-domain portraits: two with one face, one with none.
fn appa_real(dir: &Path) -> PathBuf {
    let root = dir.join("appa-real");
    for split in ["train", "valid"] {
        fs::create_dir_all(root.join(split)).unwrap();
        fs::copy(
            portrait("astronaut.png"),
            root.join(split).join("000001.png"),
        )
        .unwrap();
        fs::copy(
            portrait("grace_hopper.jpg"),
            root.join(split).join("000002.jpg"),
        )
        .unwrap();
        fs::copy(portrait("coffee.png"), root.join(split).join("000003.png")).unwrap();
        fs::write(
            root.join(format!("gt_avg_{split}.csv")),
            "file_name,num_ratings,apparent_age_avg,apparent_age_std,real_age\n\
             000001.png,30,35.2,4.1,33\n000002.jpg,31,77.5,6.0,76\n000003.png,28,30.0,5.0,31\n",
        )
        .unwrap();
    }
    root
}

#[test]
fn real_formats_go_through_the_face_pipeline_fusion_and_export() {
    let dir = tempfile::tempdir().unwrap();
    appa_real(dir.path());
    let stage = |name: &str, loss: &str| {
        format!(
            "[[stage]]\nname = '{name}'\n{TINY}loss = '{loss}'\nepochs = 1\n\
             train = [{{ format = 'appa-real', root = 'appa-real', split = 'train' }}]\n\
             valid = [{{ format = 'appa-real', root = 'appa-real', split = 'valid' }}]\n"
        )
    };
    let config = dir.path().join("appa.toml");
    fs::write(
        &config,
        format!(
            "{}\n{}\n{}\n[fuse]\nstreams = ['kl', 'ce', 'dlib']\n\
             valid = [{{ format = 'appa-real', root = 'appa-real', split = 'valid' }}]\n",
            stage("kl", "kl"),
            stage("ce", "cross-entropy"),
            // The pretrained network fine-tuned as a stream of its own (64 px chips, its own
            // normalisation, starting from the published weights).
            stage("dlib", "kl-l1:1")
                .replace("tiny-age-net", "pretrained")
                .replace("input_size = 32\n", "")
                .replace("learning_rate = 1e-3", "learning_rate = 1e-5")
        ),
    )
    .unwrap();
    let out = dir.path().join("run");
    let (_, stderr) = ok(&[
        "train",
        "--config",
        s(&config),
        "--out",
        s(&out),
        "--device",
        "cpu",
    ]);
    // Coffee has no face: counted, left out; the portraits were detected once and cached.
    assert!(
        stderr.contains(
            "train: 2 of 3 images kept (0 from the cache, 3 preprocessed now); no face: 1"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("from the cache, 0 preprocessed now"),
        "{stderr}"
    );
    let fusion: Value =
        serde_json::from_slice(&fs::read(out.join("fusion.json")).unwrap()).unwrap();
    let weights: f64 = fusion["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["weight"].as_f64().unwrap())
        .sum();
    assert!((weights - 1.0).abs() < 1e-6, "{fusion}");
    assert_eq!(fusion["fused"]["images"], 2);
    let dlib: Value =
        serde_json::from_slice(&fs::read(out.join("stages/dlib/model.json")).unwrap()).unwrap();
    assert_eq!(dlib["model"]["architecture"], "pretrained");
    assert_eq!(dlib["model"]["input_size"], 64);
    // Fine-tuned gently from the published weights, it still reads Grace Hopper as the
    // published network does.
    let (stdout, _) = ok(&[
        "predict",
        s(&portrait("grace_hopper_512x512.jpg")),
        "--stream",
        s(&out.join("stages/dlib")),
        "--device",
        "cpu",
        "--json",
    ]);
    let results: Value = serde_json::from_str(&stdout).unwrap();
    let streams = results[0]["faces"][0]["streams"].as_array().unwrap();
    let (published, tuned) = (
        streams[0]["expected_age"].as_f64().unwrap(),
        streams[1]["expected_age"].as_f64().unwrap(),
    );
    assert!(
        published > 60.0 && (tuned - published).abs() < 3.0,
        "published {published:.1}, fine-tuned {tuned:.1}"
    );

    // Export the KL stream into a model folder of its own; predict picks it up.
    let models = dir.path().join("models");
    fs::create_dir_all(models.join("blazeface")).unwrap();
    for file in [
        "age-v1.onnx",
        "face_landmarks_5.bin",
        "blazeface/face_detection_short_range.onnx",
    ] {
        fs::copy(model(file), models.join(file)).unwrap();
    }
    let (stdout, _) = ok(&[
        "export",
        "--model",
        s(&out.join("stages/kl")),
        "--name",
        "appa-kl",
        "--models",
        s(&models),
        "--fusion",
        s(&out.join("fusion.json")),
        "--device",
        "cpu",
    ]);
    assert!(stdout.contains("F16") && stdout.contains("KB"), "{stdout}");
    let card: Value =
        serde_json::from_slice(&fs::read(models.join("streams/appa-kl/stream.json")).unwrap())
            .unwrap();
    assert_eq!(card["precision"], "f16");
    assert!(card["max_expected_age_change"].as_f64().unwrap() < 0.01);
    let (stdout, _) = ok(&[
        "predict",
        s(&portrait("astronaut.png")),
        "--models",
        s(&models),
        "--device",
        "cpu",
        "--json",
    ]);
    let results: Value = serde_json::from_str(&stdout).unwrap();
    let streams = results[0]["faces"][0]["streams"].as_array().unwrap();
    let names: Vec<&str> = streams
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pretrained", "appa-kl"]);
}

#[test]
fn distillation_learns_from_the_pretrained_network_on_unlabelled_photos() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos/nested");
    fs::create_dir_all(&photos).unwrap();
    for name in [
        "astronaut.png",
        "grace_hopper.jpg",
        "grace_hopper_512x512.jpg",
        "coffee.png",
    ] {
        fs::copy(portrait(name), photos.join(name)).unwrap();
    }
    let out = dir.path().join("student");
    let photo_root = dir.path().join("photos");
    let args = [
        "distill",
        "--images",
        s(&photo_root),
        "--out",
        s(&out),
        "--input-size",
        "32",
        "--epochs",
        "2",
        "--batch-size",
        "2",
        "--valid-fraction",
        "0",
        "--device",
        "cpu",
    ];
    let (_, stderr) = ok(&args);
    assert!(stderr.contains("3 of 4 images kept"), "{stderr}");
    let teacher = fs::read_to_string(out.join("teacher/train.csv")).unwrap();
    let rows: Vec<(String, f64)> = teacher
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_string(), f[1].parse().unwrap())
        })
        .collect();
    assert_eq!(rows.len(), 3);
    let hopper = rows
        .iter()
        .find(|(p, _)| p.ends_with("grace_hopper.jpg"))
        .unwrap();
    assert!(
        hopper.1 > 60.0,
        "the teacher reads Grace Hopper as {}",
        hopper.1
    );
    assert_eq!(
        fs::metadata(out.join("teacher/train.targets"))
            .unwrap()
            .len(),
        3 * 101 * 4
    );
    assert!(out.join("model.json").exists());
    // A second run reuses the teacher's answers and has nothing left to train.
    let (_, stderr) = ok(&args);
    assert!(
        stderr.contains("reusing") && stderr.contains("already trained"),
        "{stderr}"
    );
}
