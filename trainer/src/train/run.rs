//! The training loop: one stream, one loss, Adam with a step schedule, per-epoch validation,
//! atomic checkpoints and resumption.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, Result, bail};
use dldl::{
    burn::{
        module::Module,
        tensor::{Device, Tensor},
    },
    networks::vgg::{AgeNet, AgeNetConfig, Architecture},
};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};
use serde::Serialize;

use crate::train::{
    checkpoint::{
        CheckpointState, EpochLog, checkpoints_dir, latest_path, load_checkpoint, save_checkpoint,
    },
    memory,
    parallel::{self, StepContext},
    spec::{TrainOptions, learning_rate},
};
use crate::{
    artifacts::card::{
        CARD_FILE, DataCard, ModelCard, TrainingCard, WEIGHTS_FILE, load_weights, save_weights,
    },
    artifacts::models,
    data::load::{load_sets, load_sets_with_targets},
    data::loaded::LoadedSet,
    data::loader,
    data::sets::DatasetSpec,
    data::synth::DATASET_MANIFEST,
    eval::report::evaluate,
    files,
    progress::bar,
    render::curves::{self, Chart, Series},
};

/// The learning curves, redrawn after every epoch.
pub const CURVES_FILE: &str = "training.svg";

/// Steps between reads of the loss from the device. In between, the batches' losses are summed
/// on the device, so a step never waits for the device to finish the one before; the check for
/// NaN or ±∞ runs at each read, so a diverging run stops within this many steps, before the
/// epoch's checkpoint is written (the last good one stays).
pub const LOSS_READ_EVERY: usize = 16;

/// Training loss and validation MAE per epoch.
fn history_svg(history: &[EpochLog]) -> Result<String> {
    let loss = Series {
        name: "train".to_string(),
        colour: crate::render::BLUE,
        points: history
            .iter()
            .map(|e| (e.epoch as f64, e.train_loss))
            .collect(),
    };
    let mae = Series {
        name: "validation".to_string(),
        colour: crate::render::RED,
        points: history
            .iter()
            .filter_map(|e| Some((e.epoch as f64, e.validation.as_ref()?.mae)))
            .collect(),
    };
    curves::svg(&[
        Chart {
            title: "training loss".to_string(),
            x_label: "epoch".to_string(),
            y_label: "loss".to_string(),
            series: vec![loss],
        },
        Chart {
            title: "validation MAE".to_string(),
            x_label: "epoch".to_string(),
            y_label: "years".to_string(),
            series: vec![mae],
        },
    ])
}

fn data_kind(specs: &[DatasetSpec]) -> String {
    let kind = |spec: &DatasetSpec| match spec {
        DatasetSpec::Csv(csv) => {
            let manifest = csv
                .path
                .parent()
                .unwrap_or(Path::new("."))
                .join(DATASET_MANIFEST);
            fs::read_to_string(manifest)
                .ok()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_string))
                .unwrap_or_else(|| "user".to_string())
        }
        _ => "user".to_string(),
    };
    // One synthetic set makes the whole stream synthetic.
    if specs.iter().any(|s| kind(s) == "synthetic") {
        "synthetic".to_string()
    } else {
        "user".to_string()
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    pub out: PathBuf,
    pub epochs_done: usize,
    pub finished: bool,
    pub history: Vec<EpochLog>,
}

pub fn train(options: &TrainOptions, device: &Device, device_name: &str) -> Result<TrainSummary> {
    let spec = &options.spec;
    spec.validate()?;
    let config = AgeNetConfig::for_stream(spec.architecture, spec.input_size);
    if options.epochs == 0 {
        bail!("--epochs must be at least 1: a run of no epochs would write untrained weights");
    }
    if spec.train.is_empty() {
        bail!("no training set is named");
    }
    let out = &options.out;
    let has_checkpoint = latest_path(out).exists();
    if !options.resume && (has_checkpoint || out.join(CARD_FILE).exists()) {
        bail!(
            "{} already holds a run; pass --resume to continue it, or choose another --out",
            out.display()
        );
    }
    // Each device's part of a batch (one part at a time on the CPU) must fit.
    let part = spec.batch_size.div_ceil(1 + options.more_devices.len());
    memory::check_batch_fits(&config, spec.loss, part, device)?;
    fs::create_dir_all(checkpoints_dir(out))
        .with_context(|| format!("cannot create {}", out.display()))?;

    let autodiff = device.clone().autodiff();
    // The devices a step runs on: the first holds the model, the optimiser's state and the
    // checkpoints; with more, each step is data-parallel (`train::parallel`).
    let devices: Vec<Device> = std::iter::once(autodiff.clone())
        .chain(options.more_devices.iter().map(|d| d.clone().autodiff()))
        .collect();
    let (mut model, mut optim, mut state) = if options.resume && has_checkpoint {
        let (model, optim, state) = load_checkpoint(out, &config, &spec.optimizer, &autodiff)?;
        if state.spec != *spec {
            bail!(
                "{} was trained with other settings ({:?}); resume it with the same settings \
                 (only --epochs may change), or choose another --out",
                out.display(),
                state.spec
            );
        }
        if !options.quiet {
            eprintln!(
                "resuming {} after epoch {}",
                out.display(),
                state.epochs_done
            );
        }
        (model, optim, state)
    } else {
        device.seed(spec.seed);
        let model = match &spec.init {
            Some(weights) => load_weights(&config, weights, &autodiff)
                .context("cannot start from the earlier stage's weights")?,
            None if spec.architecture == Architecture::Pretrained => {
                let net = models::load_pretrained(&options.models, &autodiff)?;
                AgeNet::Pretrained(net.widen_to_age_grid())
            }
            None => config.init(&autodiff)?,
        };
        let state = CheckpointState {
            spec: spec.clone(),
            epochs_done: 0,
            history: Vec::new(),
        };
        (model, spec.optimizer.init(), state)
    };

    if options.resume
        && state.epochs_done >= options.epochs
        && out.join(CARD_FILE).exists()
        && out.join(WEIGHTS_FILE).exists()
    {
        if !options.quiet {
            eprintln!(
                "{} is already trained ({} epochs); nothing to do",
                out.display(),
                state.epochs_done
            );
        }
        return Ok(TrainSummary {
            out: out.clone(),
            epochs_done: state.epochs_done,
            finished: true,
            history: state.history,
        });
    }
    let loading = options.load_options();
    let train_set = load_sets_with_targets(
        &spec.train,
        spec.input_size,
        &loading,
        "train",
        spec.soft_targets.as_deref(),
    )?;
    let valid_set = (!spec.valid.is_empty())
        .then(|| load_sets(&spec.valid, spec.input_size, &loading, "valid"))
        .transpose()?;
    let normalization = config.normalization;
    let started = Instant::now();
    let mut epochs_this_run = 0;

    while state.epochs_done < options.epochs {
        if options.stop_after.is_some_and(|n| epochs_this_run >= n) {
            break;
        }
        let epoch = state.epochs_done;
        let lr = learning_rate(spec, epoch);
        let epoch_start = Instant::now();
        // Shuffling and flips depend on the seed and the epoch alone, so a resumed run sees the
        // same batches as an uninterrupted one.
        let mut rng =
            StdRng::seed_from_u64(spec.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut order: Vec<usize> = (0..train_set.len()).collect();
        order.shuffle(&mut rng);
        let batches = order.len().div_ceil(spec.batch_size);
        let progress = bar(
            options.quiet,
            "epoch {prefix} [{bar:30}] {pos}/{len} batches  loss {msg}  {elapsed} < {eta}",
        );
        progress.set_prefix(format!("{}/{}", epoch + 1, options.epochs));
        progress.set_length(batches as u64);
        let mut loss_sum = 0.0;
        // The losses of the steps since the last read, summed on the device (each weighted by
        // its batch's size), with the steps and images they cover.
        let mut pending: Option<Tensor<1>> = None;
        let (mut pending_from, mut pending_images, mut step) = (0, 0, 0);
        let epoch_seed = rng.random::<u64>();
        // The optimiser consumes the model at each step; it lives in this slot meanwhile.
        let mut slot = Some(model);
        loader::for_each_batch(
            &train_set,
            &order,
            spec.batch_size,
            &spec.augment,
            epoch_seed,
            options.workers,
            |batch| {
                let images = batch.len();
                let current = slot.take().expect("the model is back after every step");
                let context = StepContext {
                    devices: &devices,
                    learning_rate: lr,
                    loss: spec.loss,
                    size: train_set.size,
                    normalization: &normalization,
                };
                let (next, summed) = parallel::step(current, &mut optim, &batch, &context);
                slot = Some(next);
                pending = Some(match pending.take() {
                    Some(sum) => sum + summed,
                    None => summed,
                });
                pending_images += images;
                step += 1;
                if step - pending_from == LOSS_READ_EVERY || step == batches {
                    let sum = f64::from(
                        pending
                            .take()
                            .expect("a step was summed")
                            .into_scalar::<f32>(),
                    );
                    if !sum.is_finite() {
                        bail!(
                            "the loss became {sum} in epoch {} (between steps {} and {step} of \
                             {batches}); lower the learning rate",
                            epoch + 1,
                            pending_from + 1
                        );
                    }
                    loss_sum += sum;
                    progress.set_message(format!("{:.4}", sum / pending_images as f64));
                    (pending_from, pending_images) = (step, 0);
                }
                progress.inc(1);
                Ok(())
            },
        )?;
        model = slot.expect("the model is back after every step");
        progress.finish_and_clear();
        let train_loss = loss_sum / train_set.len() as f64;
        let validation = valid_set
            .as_ref()
            .map(|set| {
                let progress = bar(
                    options.quiet,
                    "validate [{bar:30}] {pos}/{len} images {eta}",
                );
                let predictions = evaluate(
                    &model.valid().for_inference(),
                    set,
                    &normalization,
                    spec.batch_size,
                    false,
                    device,
                    &progress,
                )?;
                progress.finish_and_clear();
                anyhow::Ok(predictions.report)
            })
            .transpose()?;
        let log = EpochLog {
            epoch: epoch + 1,
            learning_rate: lr,
            train_loss,
            validation,
            seconds: epoch_start.elapsed().as_secs_f64(),
        };
        if !options.quiet {
            let valid = log.validation.as_ref().map_or(String::new(), |v| {
                format!("  valid MAE {:.2}  ε {:.3}", v.mae, v.epsilon_error)
            });
            eprintln!(
                "epoch {}/{}  lr {lr:.1e}  loss {train_loss:.4}{valid}  ({:.0} s)",
                epoch + 1,
                options.epochs,
                log.seconds
            );
        }
        state.history.push(log);
        state.epochs_done += 1;
        epochs_this_run += 1;
        save_checkpoint(out, &model, &optim, &state)?;
        files::write(
            &out.join(CURVES_FILE),
            history_svg(&state.history)?.as_bytes(),
        )?;
    }

    let finished = state.epochs_done >= options.epochs;
    if finished {
        let train_mean_age = train_set.mu.iter().sum::<f32>() / train_set.len() as f32;
        let card = ModelCard::new(
            config,
            model.trainable_params(),
            spec.loss,
            DataCard {
                kind: data_kind(&spec.train),
                train: spec.train.iter().map(DatasetSpec::name).collect(),
                train_images: train_set.len(),
                train_mean_age,
                valid: spec.valid.iter().map(DatasetSpec::name).collect(),
                valid_images: valid_set.as_ref().map_or(0, LoadedSet::len),
            },
            TrainingCard {
                epochs: state.epochs_done,
                batch_size: spec.batch_size,
                optimizer: spec.optimizer.describe(),
                learning_rate: spec.optimizer.learning_rate,
                lr_step_epochs: spec.lr_step_epochs,
                lr_gamma: spec.lr_gamma,
                augmentation: spec.augment.describe(),
                seed: spec.seed,
                device: device_name.to_string(),
                seconds: state.history.iter().map(|e| e.seconds).sum(),
            },
            state.history.last().and_then(|e| e.validation.clone()),
        );
        let weights = out.join(WEIGHTS_FILE);
        save_weights(model.valid(), &weights)?;
        files::write(&out.join(CARD_FILE), &serde_json::to_vec_pretty(&card)?)?;
        files::write(
            &out.join("history.json"),
            &serde_json::to_vec_pretty(&state.history)?,
        )?;
        if !options.quiet {
            eprintln!(
                "wrote {} and {} ({:.0} s this run)",
                weights.display(),
                out.join(CARD_FILE).display(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(TrainSummary {
        out: out.clone(),
        epochs_done: state.epochs_done,
        finished,
        history: state.history,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{
        FaceMode,
        synth::{SynthConfig, write_dataset},
    };
    use crate::{
        data::{augment::Augmentation, chips::MultipleFaces},
        train::spec::{OptimizerSpec, RunSpec},
    };
    use dldl::distribution::loss::LossKind;
    use indicatif::ProgressBar;

    fn csv(path: PathBuf) -> DatasetSpec {
        DatasetSpec::Csv(crate::data::sets::CsvSpec {
            path,
            sigma: None,
            faces: FaceMode::AsIs,
            limit: None,
        })
    }

    fn options(data: &Path, out: &Path, stop_after: Option<usize>, resume: bool) -> TrainOptions {
        let spec = RunSpec {
            architecture: Architecture::TinyAgeNet,
            input_size: 32,
            loss: LossKind::KlL1 { lambda: 1.0 },
            train: vec![csv(data.join("train.csv"))],
            valid: vec![csv(data.join("valid.csv"))],
            batch_size: 16,
            optimizer: OptimizerSpec::adam(1e-3),
            lr_step_epochs: 1,
            lr_gamma: 0.5,
            augment: Augmentation {
                rotation: 10.0,
                brightness: 0.2,
                ..Augmentation::default()
            },
            multiple_faces: MultipleFaces::Skip,
            init: None,
            soft_targets: None,
            seed: 5,
        };
        TrainOptions {
            resume,
            stop_after,
            ..TrainOptions::new(spec, 2, out.to_path_buf())
        }
    }

    /// One test for both cases, run one after the other.
    #[test]
    fn a_resumed_run_ends_where_an_uninterrupted_one_does_on_one_device_and_on_two() {
        resumed_run_matches_an_uninterrupted_one(0);
        // This machine's CPU is one burn device, named twice: each step takes the data-parallel
        // path (`train::parallel`), in two parts.
        resumed_run_matches_an_uninterrupted_one(1);
    }

    fn resumed_run_matches_an_uninterrupted_one(more_devices: usize) {
        let dir = tempfile::tempdir().unwrap();
        // Both runs start from the same saved weights, not from the device's seeded generator,
        // which other tests in this process draw from at the same time.
        let start = dir.path().join("start.bpk");
        AgeNetConfig::for_stream(Architecture::TinyAgeNet, 32)
            .init(&Device::flex())
            .unwrap()
            .into_record()
            .save(&start)
            .unwrap();
        let options = |data: &Path, out: &Path, stop_after, resume| {
            let mut options = options(data, out, stop_after, resume);
            options.spec.init = Some(start.clone());
            options.more_devices = vec![Device::flex(); more_devices];
            options
        };
        let data = dir.path().join("data");
        let config = SynthConfig {
            train: 48,
            valid: 16,
            test: 0,
            image_size: 32,
            seed: 1,
        };
        write_dataset(&data, &config, &ProgressBar::hidden()).unwrap();
        let device = Device::flex();

        let straight = dir.path().join("straight");
        let summary = train(&options(&data, &straight, None, false), &device, "cpu").unwrap();
        assert!(summary.finished);

        let interrupted = dir.path().join("interrupted");
        let first = train(
            &options(&data, &interrupted, Some(1), false),
            &device,
            "cpu",
        )
        .unwrap();
        assert_eq!((first.epochs_done, first.finished), (1, false));
        assert!(!interrupted.join(WEIGHTS_FILE).exists());
        // A crash while writing the next checkpoint leaves a staging folder behind.
        fs::create_dir_all(checkpoints_dir(&interrupted).join("epoch-0002.tmp-1")).unwrap();
        let rest = train(&options(&data, &interrupted, None, true), &device, "cpu").unwrap();
        assert_eq!((rest.epochs_done, rest.finished), (2, true));

        // Same weights: the same distributions on the same images.
        let model_config = AgeNetConfig::new(Architecture::TinyAgeNet).with_input_size(32);
        let set = load_sets(
            &[csv(data.join("valid.csv"))],
            32,
            &options(&data, &straight, None, false).load_options(),
            "valid",
        )
        .unwrap();
        let pixels: Vec<u8> = (0..set.len())
            .flat_map(|i| set.pixels(i).unwrap().into_owned())
            .collect();
        let predict = |dir: &Path| -> Vec<f32> {
            let model = load_weights(&model_config, &dir.join(WEIGHTS_FILE), &device).unwrap();
            let x = dldl::networks::preprocess::pixels_to_tensor(
                pixels.clone(),
                32,
                &model_config.normalization,
                &device,
            );
            model.distribution(x).try_into_vec_as().unwrap()
        };
        assert_eq!(predict(&straight), predict(&interrupted));
        assert_eq!(
            serde_json::to_value(&summary.history.last().unwrap().validation).unwrap(),
            serde_json::to_value(&rest.history.last().unwrap().validation).unwrap()
        );
    }

    #[test]
    fn learning_rate_steps_down() {
        let spec = options(Path::new("d"), Path::new("o"), None, false).spec;
        assert_eq!(learning_rate(&spec, 0), 1e-3);
        assert_eq!(learning_rate(&spec, 1), 5e-4);
        assert_eq!(learning_rate(&spec, 2), 2.5e-4);
    }
}
