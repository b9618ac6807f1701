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
        optim::{
            AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig, decay::WeightDecayConfig,
            momentum::MomentumConfig,
        },
        tensor::{Device, Tensor, TensorData, activation::log_softmax},
    },
    distribution::loss::{LossKind, kl_loss},
    distribution::metrics::MetricsReport,
    networks::preprocess::images_to_tensor,
    networks::vgg::{AgeNet, AgeNetConfig, Architecture},
};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};
use serde::{Deserialize, Serialize};

use crate::{
    atomic,
    augment::Augmentation,
    card::{CARD_FILE, DataCard, ModelCard, TrainingCard, WEIGHTS_FILE, load_weights},
    data::LoadedSet,
    datasets::{DatasetSpec, FaceMode},
    eval::evaluate,
    faces::{self, MultipleFaces, PreprocessOptions},
    loader,
    plot::{self, Chart, Series},
    predict,
    progress::bar,
    synth::DATASET_MANIFEST,
};

/// The optimiser and its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerSpec {
    #[serde(default)]
    pub kind: OptimizerKind,
    pub learning_rate: f64,
    /// SGD's momentum (ignored by Adam).
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    /// L2 penalty; 0 is none.
    #[serde(default)]
    pub weight_decay: f32,
}

fn default_momentum() -> f64 {
    0.9
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// Adam, β = (0.9, 0.999).
    #[default]
    Adam,
    /// Stochastic gradient descent with momentum.
    Sgd,
}

impl OptimizerSpec {
    pub fn adam(learning_rate: f64) -> Self {
        OptimizerSpec {
            kind: OptimizerKind::Adam,
            learning_rate,
            momentum: default_momentum(),
            weight_decay: 0.0,
        }
    }

    fn init(&self) -> ModuleOptimizer {
        let decay = (self.weight_decay > 0.0).then(|| WeightDecayConfig::new(self.weight_decay));
        match self.kind {
            OptimizerKind::Adam => AdamConfig::new().with_weight_decay(decay).init(),
            OptimizerKind::Sgd => SgdConfig::new()
                .with_weight_decay(decay)
                .with_momentum(Some(
                    MomentumConfig::new()
                        .with_momentum(self.momentum)
                        .with_dampening(0.0),
                ))
                .init(),
        }
    }

    fn describe(&self) -> String {
        let decay = if self.weight_decay > 0.0 {
            format!(", weight decay {}", self.weight_decay)
        } else {
            String::new()
        };
        match self.kind {
            OptimizerKind::Adam => format!("Adam (β = 0.9, 0.999){decay}"),
            OptimizerKind::Sgd => format!("SGD (momentum {}){decay}", self.momentum),
        }
    }
}

/// What a run trains; a resumed run must agree on all of it but the number of epochs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    pub architecture: Architecture,
    pub input_size: usize,
    pub loss: LossKind,
    pub train: Vec<DatasetSpec>,
    pub valid: Vec<DatasetSpec>,
    pub batch_size: usize,
    pub optimizer: OptimizerSpec,
    pub lr_step_epochs: usize,
    pub lr_gamma: f64,
    pub augment: Augmentation,
    pub multiple_faces: MultipleFaces,
    /// Weights to start from (an earlier stage's), instead of a random initialisation.
    pub init: Option<PathBuf>,
    /// A teacher's distributions for the single training set's rows (101 little-endian f32
    /// per row), trained towards with KL instead of the labels' N(μ, σ).
    #[serde(default)]
    pub soft_targets: Option<PathBuf>,
    pub seed: u64,
}

/// How a run is carried out.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub spec: RunSpec,
    pub epochs: usize,
    pub out: PathBuf,
    pub resume: bool,
    pub skip_unreadable: bool,
    pub quiet: bool,
    /// Stop after this many epochs of this invocation (the run stays resumable).
    pub stop_after: Option<usize>,
    /// The preprocessing cache.
    pub cache: PathBuf,
    /// The model folder holding the face detector.
    pub models: PathBuf,
    /// Sets larger than this many bytes at the input size stay on disk.
    pub memory_limit: usize,
    /// Threads preparing batches.
    pub workers: usize,
}

/// How sets are read, preprocessed and held: what [`load_sets`] needs of a run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub cache: PathBuf,
    pub models: PathBuf,
    pub multiple_faces: MultipleFaces,
    pub skip_unreadable: bool,
    pub memory_limit: usize,
    pub quiet: bool,
}

/// Sets larger than this at the input size stay on disk unless told otherwise.
pub const DEFAULT_MEMORY_LIMIT: usize = 4 << 30;

impl TrainOptions {
    /// What loading this run's sets needs.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            cache: self.cache.clone(),
            models: self.models.clone(),
            multiple_faces: self.spec.multiple_faces,
            skip_unreadable: self.skip_unreadable,
            memory_limit: self.memory_limit,
            quiet: self.quiet,
        }
    }

    /// Defaults for everything but what is trained and where.
    pub fn new(spec: RunSpec, epochs: usize, out: PathBuf) -> Self {
        TrainOptions {
            spec,
            epochs,
            cache: out.join("cache"),
            out,
            resume: false,
            skip_unreadable: false,
            quiet: true,
            stop_after: None,
            models: predict::default_models_dir(),
            memory_limit: DEFAULT_MEMORY_LIMIT,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub learning_rate: f64,
    pub train_loss: f64,
    pub validation: Option<MetricsReport>,
    pub seconds: f64,
}

/// What a checkpoint holds besides the weights and the optimiser.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointState {
    spec: RunSpec,
    epochs_done: usize,
    history: Vec<EpochLog>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LatestPointer {
    epoch: usize,
    folder: String,
}

/// The learning rate of `epoch` (0-based): divided by 1/γ every `step` epochs.
pub fn learning_rate(spec: &RunSpec, epoch: usize) -> f64 {
    let base = spec.optimizer.learning_rate;
    match spec.lr_step_epochs {
        0 => base,
        step => base * spec.lr_gamma.powi((epoch / step) as i32),
    }
}

/// The learning curves, redrawn after every epoch.
pub const CURVES_FILE: &str = "training.svg";

/// Training loss and validation MAE per epoch.
fn history_svg(history: &[EpochLog]) -> String {
    let loss = Series {
        name: "train".to_string(),
        colour: "#1f77b4",
        points: history
            .iter()
            .map(|e| (e.epoch as f64, e.train_loss))
            .collect(),
    };
    let mae = Series {
        name: "validation".to_string(),
        colour: "#d62728",
        points: history
            .iter()
            .filter_map(|e| Some((e.epoch as f64, e.validation.as_ref()?.mae)))
            .collect(),
    };
    plot::svg(&[
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

fn checkpoints_dir(out: &Path) -> PathBuf {
    out.join("checkpoints")
}

fn latest_path(out: &Path) -> PathBuf {
    checkpoints_dir(out).join("latest.json")
}

/// Reads, preprocesses (through the cache) and loads the sets of one split.
pub fn load_sets(
    specs: &[DatasetSpec],
    size: usize,
    options: &LoadOptions,
    what: &str,
) -> Result<LoadedSet> {
    load_sets_with_targets(specs, size, options, what, None)
}

/// Reads a soft-target file: `rows` distributions of 101 little-endian f32.
pub fn read_targets(path: &Path, rows: usize) -> Result<Vec<Vec<f32>>> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let row_bytes = dldl::AGE_BINS * 4;
    if bytes.len() != rows * row_bytes {
        bail!(
            "{} holds {} bytes; {rows} rows of {} ages need {}",
            path.display(),
            bytes.len(),
            dldl::AGE_BINS,
            rows * row_bytes
        );
    }
    Ok(bytes
        .chunks_exact(row_bytes)
        .map(|row| {
            row.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        })
        .collect())
}

/// [`load_sets`], attaching the rows of a soft-target file to a single set's images.
pub fn load_sets_with_targets(
    specs: &[DatasetSpec],
    size: usize,
    options: &LoadOptions,
    what: &str,
    soft_targets: Option<&Path>,
) -> Result<LoadedSet> {
    if soft_targets.is_some() && specs.len() != 1 {
        bail!("soft targets go with exactly one training set");
    }
    let mut targets = Vec::new();
    let preprocess = PreprocessOptions {
        cache: options.cache.clone(),
        size,
        multiple_faces: options.multiple_faces,
        skip_unreadable: options.skip_unreadable,
    };
    let mut detector = None;
    let mut chips = Vec::new();
    let mut skipped = 0;
    for spec in specs {
        let read = spec.read()?;
        if !options.quiet {
            let left_out: Vec<String> = read
                .report
                .left_out
                .iter()
                .map(|(why, n)| format!("{n} ({why})"))
                .collect();
            eprintln!(
                "{what}: {}: {} rows, {} used{}",
                read.report.name,
                read.report.rows,
                read.report.kept,
                if left_out.is_empty() {
                    String::new()
                } else {
                    format!("; left out {}", left_out.join(", "))
                }
            );
        }
        if read.faces == FaceMode::Align && detector.is_none() {
            detector = Some(predict::load_face_finder(&options.models, &Device::flex())?);
        }
        let progress = bar(
            options.quiet,
            &format!("faces {what:<5} [{{bar:30}}] {{pos}}/{{len}} images {{eta}}"),
        );
        let (found, report) = faces::preprocess(
            &read.samples,
            read.faces,
            &preprocess,
            detector.as_ref(),
            &progress,
        )
        .with_context(|| spec.name())?;
        progress.finish_and_clear();
        if !options.quiet {
            eprintln!("{}", report.summary(what, options.multiple_faces));
        }
        skipped += report.unreadable;
        if let Some(path) = soft_targets {
            let rows = read_targets(path, read.samples.len())?;
            targets.extend(found.iter().map(|chip| rows[chip.sample].clone()));
        }
        chips.extend(found);
    }
    let progress = bar(
        options.quiet,
        &format!("loading {what:<5} [{{bar:30}}] {{pos}}/{{len}} images {{eta}}"),
    );
    let mut set = LoadedSet::from_chips(&chips, size, options.memory_limit, &progress)
        .with_context(|| format!("the {what} sets"))?;
    progress.finish_and_clear();
    set.skipped = skipped;
    if soft_targets.is_some() {
        set.targets = Some(targets);
    }
    Ok(set)
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

/// Writes a checkpoint folder and then points `latest.json` at it; only then are older
/// checkpoints removed, so a crash at any moment leaves a complete checkpoint to resume from.
fn save_checkpoint(
    out: &Path,
    model: &AgeNet,
    optim: &ModuleOptimizer,
    state: &CheckpointState,
) -> Result<()> {
    let dir = checkpoints_dir(out);
    let name = format!("epoch-{:04}", state.epochs_done);
    let staging = dir.join(format!("{name}.tmp-{}", std::process::id()));
    let target = dir.join(&name);
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging).with_context(|| format!("cannot create {}", staging.display()))?;
    model
        .clone()
        .into_record()
        .save(staging.join(WEIGHTS_FILE))
        .map_err(|e| anyhow::anyhow!("cannot write the checkpoint's weights: {e}"))?;
    optim
        .save(staging.join("optimizer.bpk"))
        .map_err(|e| anyhow::anyhow!("cannot write the checkpoint's optimiser state: {e}"))?;
    fs::write(
        staging.join("state.json"),
        serde_json::to_vec_pretty(state)?,
    )?;
    for entry in fs::read_dir(&staging)? {
        fs::File::open(entry?.path())?.sync_all()?;
    }
    if target.exists() {
        // Left by a run that crashed before pointing `latest.json` at it.
        fs::remove_dir_all(&target)?;
    }
    fs::rename(&staging, &target)
        .with_context(|| format!("cannot move the checkpoint into {}", target.display()))?;
    let pointer = LatestPointer {
        epoch: state.epochs_done,
        folder: name.clone(),
    };
    atomic::write(&latest_path(out), &serde_json::to_vec_pretty(&pointer)?)?;
    for entry in fs::read_dir(&dir)? {
        let path = entry?.path();
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_dir() && file_name.starts_with("epoch-") && file_name != name {
            let _ = fs::remove_dir_all(&path);
        }
    }
    Ok(())
}

fn load_checkpoint(
    out: &Path,
    config: &AgeNetConfig,
    optimizer: &OptimizerSpec,
    device: &Device,
) -> Result<(AgeNet, ModuleOptimizer, CheckpointState)> {
    let pointer: LatestPointer = serde_json::from_slice(
        &fs::read(latest_path(out)).context("cannot read checkpoints/latest.json")?,
    )
    .context("checkpoints/latest.json is corrupt")?;
    let dir = checkpoints_dir(out).join(&pointer.folder);
    let state: CheckpointState = serde_json::from_slice(
        &fs::read(dir.join("state.json"))
            .with_context(|| format!("cannot read {}", dir.join("state.json").display()))?,
    )
    .context("the checkpoint's state.json is corrupt")?;
    let model = load_weights(config, &dir.join(WEIGHTS_FILE), device)?;
    let optim = optimizer
        .init()
        .load(dir.join("optimizer.bpk"))
        .map_err(|e| anyhow::anyhow!("cannot read the checkpoint's optimiser state: {e}"))?;
    Ok((model, optim, state))
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
    let config = AgeNetConfig::for_stream(spec.architecture, spec.input_size);
    config.validate()?;
    if spec.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if options.epochs == 0 {
        bail!("--epochs must be at least 1: a run of no epochs would write untrained weights");
    }
    let lr = spec.optimizer.learning_rate;
    if !(lr.is_finite() && lr > 0.0) {
        bail!("the learning rate must be a positive number, not {lr}");
    }
    spec.augment
        .validate()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
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
    fs::create_dir_all(checkpoints_dir(out))
        .with_context(|| format!("cannot create {}", out.display()))?;

    let autodiff = device.clone().autodiff();
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
                let path = options.models.join(predict::AGE_MODEL);
                let bytes = fs::read(&path).with_context(|| {
                    format!(
                        "cannot read the pretrained network {}; fetch it with `cargo xtask \
                         fetch-models`",
                        path.display()
                    )
                })?;
                let net =
                    dldl::networks::pretrained::PretrainedAgeNet::from_onnx(&bytes, &autodiff)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
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
                let images: Vec<&[u8]> = batch.images.iter().map(Vec::as_slice).collect();
                let x = images_to_tensor(&images, train_set.size, &normalization, &autodiff);
                let (mu, sigma) = train_set.labels(&batch.indices, &autodiff);
                let current = slot.take().expect("the model is back after every step");
                let logits = current.forward(x);
                let loss = match &train_set.targets {
                    Some(targets) => {
                        let rows: Vec<f32> = batch
                            .indices
                            .iter()
                            .flat_map(|&i| targets[i].iter().copied())
                            .collect();
                        let target = Tensor::<2>::from_data(
                            TensorData::new(rows, [batch.indices.len(), dldl::AGE_BINS]),
                            &autodiff,
                        );
                        kl_loss(target, log_softmax(logits, 1))
                    }
                    None => spec.loss.loss(logits, mu, sigma),
                };
                let value = f64::from(loss.clone().into_scalar::<f32>());
                if !value.is_finite() {
                    bail!(
                        "the loss became {value} in epoch {}; lower the learning rate",
                        epoch + 1
                    );
                }
                loss_sum += value * batch.indices.len() as f64;
                let grads = GradientsParams::from_grads(loss.backward(), &current);
                slot = Some(optim.step(lr, current, grads));
                progress.set_message(format!("{value:.4}"));
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
                    &model.valid(),
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
        atomic::write(
            &out.join(CURVES_FILE),
            history_svg(&state.history).as_bytes(),
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
        let record = model.valid().into_record();
        atomic::write_with(&weights, |tmp| {
            record
                .save(tmp)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", weights.display()))
        })?;
        atomic::write(&out.join(CARD_FILE), &serde_json::to_vec_pretty(&card)?)?;
        atomic::write(
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
    use crate::synth::{SynthConfig, write_dataset};
    use indicatif::ProgressBar;

    fn csv(path: PathBuf) -> DatasetSpec {
        DatasetSpec::Csv(crate::datasets::CsvSpec {
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

    #[test]
    fn a_resumed_run_ends_where_an_uninterrupted_one_does() {
        let dir = tempfile::tempdir().unwrap();
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
        let indices: Vec<usize> = (0..set.len()).collect();
        let predict = |dir: &Path| -> Vec<f32> {
            let model = load_weights(&model_config, &dir.join(WEIGHTS_FILE), &device).unwrap();
            let (x, _, _) = set
                .batch(&indices, &model_config.normalization, &device, false)
                .unwrap();
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
