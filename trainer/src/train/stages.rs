//! `trainer train --config FILE`: a list of stages in a TOML file, run in order into one folder,
//! each stage resumable after a crash at any point, and optionally the fusion of the final
//! streams.
//!
//! ```toml
//! [preprocess]
//! multiple_faces = "largest"      # or "skip"
//!
//! [[stage]]
//! name = "kl"
//! stream = "thin-age-net"         # vgg16, vgg16-bn, thin-age-net, tiny-age-net, pretrained
//! loss = "kl"                     # kl, cross-entropy, kl-l1:λ
//! epochs = 60
//! batch_size = 128
//! optimizer = { kind = "adam", learning_rate = 1e-3 }
//! schedule = { step_epochs = 30, gamma = 0.1 }
//! augment = { flip = true, rotation = 15.0 }
//! train = [{ format = "chalearn-2016", csv = "lap2016/train_gt.csv", images = "lap2016/train" }]
//! valid = [{ format = "chalearn-2016", csv = "lap2016/valid_gt.csv", images = "lap2016/valid" }]
//!
//! [[stage]]
//! name = "kl-l1"
//! from = "kl"                     # start from that stage's weights
//! ...
//! ```

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use dldl::{
    burn::tensor::Device, distribution::fusion::FusionRule, distribution::loss::LossKind,
    networks::vgg::Architecture,
};
use serde::{Deserialize, Serialize};

use crate::{
    artifacts::card::{CARD_FILE, WEIGHTS_FILE},
    data::augment::Augmentation,
    data::chips::MultipleFaces,
    data::load::{DEFAULT_MEMORY_LIMIT, LoadOptions},
    data::sets::DatasetSpec,
    eval::fusion,
    train::{
        distill, run,
        spec::{OptimizerSpec, RunSpec, TrainOptions},
    },
};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// What the pipeline reproduces; copied into the run folder.
    pub description: Option<String>,
    #[serde(default)]
    pub preprocess: PreprocessConfig,
    #[serde(rename = "stage", default)]
    pub stages: Vec<StageConfig>,
    pub fuse: Option<FuseConfig>,
    /// Devices to train every stage on, data-parallel (as `--devices`, which replaces it):
    /// `["wgpu:0", "wgpu:1"]`.
    #[serde(default)]
    pub devices: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreprocessConfig {
    #[serde(default)]
    pub multiple_faces: MultipleFaces,
    /// The chip cache; default `<out>/cache`.
    pub cache: Option<PathBuf>,
    /// Leave out unreadable images (counted) instead of stopping.
    #[serde(default)]
    pub skip_unreadable: bool,
    /// Sets larger than this at the input size are read from the cache batch by batch.
    pub memory_limit_gib: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    pub name: String,
    /// vgg16, vgg16-bn, thin-age-net, tiny-age-net, or pretrained (dlib's network, starting
    /// from its published weights).
    pub stream: String,
    /// Default: 224, or 64 for the pretrained network.
    pub input_size: Option<usize>,
    /// kl, cross-entropy or kl-l1[:λ].
    pub loss: String,
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerSpec,
    #[serde(default)]
    pub schedule: Schedule,
    #[serde(default)]
    pub augment: Augmentation,
    /// An earlier stage whose final weights this one starts from.
    pub from: Option<String>,
    /// An earlier stage whose final stream teaches this one: its distributions on this stage's
    /// training faces (each face and its mirror image, averaged) are the KL targets in place of
    /// the labels. The training set must be a single set; validation still uses the labels.
    pub teacher: Option<String>,
    pub train: Vec<DatasetSpec>,
    #[serde(default)]
    pub valid: Vec<DatasetSpec>,
    #[serde(default)]
    pub seed: u64,
}

/// Multiply the learning rate by `gamma` every `step_epochs` epochs (0: never).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub step_epochs: usize,
    #[serde(default = "default_gamma")]
    pub gamma: f64,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            step_epochs: 0,
            gamma: default_gamma(),
        }
    }
}

fn default_gamma() -> f64 {
    0.1
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FuseConfig {
    /// The stages whose final streams are fused.
    pub streams: Vec<String>,
    /// The validation sets the weights are fitted on.
    pub valid: Vec<DatasetSpec>,
    #[serde(default)]
    pub rule: FusionRule,
}

/// A stage made ready to run.
#[derive(Debug, Clone)]
pub struct Stage {
    pub name: String,
    pub spec: RunSpec,
    pub epochs: usize,
    /// The earlier stage that teaches this one (`teacher = "…"`).
    pub teacher: Option<String>,
}

/// Where a taught stage keeps its teacher's answers, inside its folder.
pub const TEACHER_TARGETS: &str = "teacher.targets";

/// The folder of stage `name` in the run folder `out`.
pub fn stage_dir(out: &Path, name: &str) -> PathBuf {
    out.join("stages").join(name)
}

/// Reads and checks a pipeline file; relative data paths become relative to its folder.
pub fn load(path: &Path) -> Result<PipelineConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration {}", path.display()))?;
    let mut config: PipelineConfig = toml::from_str(&text).map_err(|e| {
        // The TOML error spans several lines; keep its message and position on one.
        let message = match e.message().trim() {
            // toml gives some errors no message of their own.
            "" => "not valid TOML here".to_string(),
            message => message.replace('\n', "; "),
        };
        let at = e
            .span()
            .map(|span| {
                let line = text[..span.start].matches('\n').count() + 1;
                format!(":{line}")
            })
            .unwrap_or_default();
        anyhow::anyhow!("{}{at}: {message}", path.display())
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    for stage in &mut config.stages {
        for set in stage.train.iter_mut().chain(stage.valid.iter_mut()) {
            set.resolve(base);
        }
    }
    if let Some(fuse) = &mut config.fuse {
        for set in &mut fuse.valid {
            set.resolve(base);
        }
    }
    if let Some(cache) = config.preprocess.cache.as_mut().filter(|c| c.is_relative()) {
        *cache = base.join(&*cache);
    }
    Ok(config)
}

impl PipelineConfig {
    /// Turns the stages into run specs, checking names, references and values.
    pub fn stages(&self, out: &Path) -> Result<Vec<Stage>> {
        if self.stages.is_empty() {
            bail!("the configuration has no [[stage]]");
        }
        let mut seen: Vec<(&str, Architecture)> = Vec::new();
        let mut stages = Vec::new();
        for stage in &self.stages {
            let name = stage.name.as_str();
            let at = format!("stage `{name}`");
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                bail!("stage name `{name}`: use letters, digits, `-` and `_` only");
            }
            if seen.iter().any(|(n, _)| *n == name) {
                bail!("two stages are named `{name}`");
            }
            let architecture: Architecture = stage.stream.parse().map_err(|e| {
                anyhow::anyhow!(
                    "{at}: {e} (streams: {})",
                    Architecture::ALL
                        .iter()
                        .map(|a| a.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            let loss: LossKind = stage
                .loss
                .parse()
                .map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
            if stage.epochs == 0 || stage.batch_size == 0 {
                bail!("{at}: epochs and batch_size must be at least 1");
            }
            stage
                .augment
                .validate()
                .map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
            let init = match &stage.from {
                None => None,
                Some(from) => {
                    let Some((_, from_arch)) = seen.iter().find(|(n, _)| n == from) else {
                        let earlier: Vec<&str> = seen.iter().map(|(n, _)| *n).collect();
                        bail!(
                            "{at} starts from `{from}`, which is not an earlier stage (earlier \
                             stages: {})",
                            if earlier.is_empty() {
                                "none".to_string()
                            } else {
                                earlier.join(", ")
                            }
                        );
                    };
                    if *from_arch != architecture {
                        bail!(
                            "{at} is a {architecture} but starts from `{from}`, a {from_arch}; \
                             a stage continues the same network"
                        );
                    }
                    Some(stage_dir(out, from).join(WEIGHTS_FILE))
                }
            };
            if stage.train.is_empty() {
                bail!("{at} names no training set (train = [...])");
            }
            let soft_targets = match &stage.teacher {
                None => None,
                Some(teacher) => {
                    if !seen.iter().any(|(n, _)| n == teacher) {
                        bail!("{at} is taught by `{teacher}`, which is not an earlier stage");
                    }
                    if stage.train.len() != 1 {
                        bail!(
                            "{at} is taught by `{teacher}`: a taught stage trains on exactly one \
                             set (train = [one set])"
                        );
                    }
                    Some(stage_dir(out, name).join(TEACHER_TARGETS))
                }
            };
            seen.push((name, architecture));
            let spec = RunSpec {
                architecture,
                input_size: stage
                    .input_size
                    .unwrap_or(architecture.default_input_size()),
                loss,
                train: stage.train.clone(),
                valid: stage.valid.clone(),
                batch_size: stage.batch_size,
                optimizer: stage.optimizer.clone(),
                lr_step_epochs: stage.schedule.step_epochs,
                lr_gamma: stage.schedule.gamma,
                augment: stage.augment.clone(),
                multiple_faces: self.preprocess.multiple_faces,
                init,
                soft_targets,
                seed: stage.seed,
            };
            // Every stage's numbers are checked before the first stage trains.
            spec.validate()
                .map_err(|e| anyhow::anyhow!("{at}: {e:#}"))?;
            stages.push(Stage {
                name: name.to_string(),
                epochs: stage.epochs,
                spec,
                teacher: stage.teacher.clone(),
            });
        }
        if let Some(fuse) = &self.fuse {
            let names: BTreeSet<&str> = seen.iter().map(|(n, _)| *n).collect();
            for stream in &fuse.streams {
                if !names.contains(stream.as_str()) && stream != fusion::PUBLISHED {
                    bail!(
                        "[fuse] names the stream `{stream}`, which is no stage (nor `{}`, the \
                         published network)",
                        fusion::PUBLISHED
                    );
                }
            }
            if fuse.streams.len() < 2 {
                bail!("[fuse] needs at least two streams");
            }
            if fuse.valid.is_empty() {
                bail!("[fuse] names no validation set (valid = [...])");
            }
        }
        Ok(stages)
    }
}

/// Options that come from the command line rather than the file.
#[derive(Debug, Clone)]
pub struct RunPipeline {
    pub config: PathBuf,
    pub out: PathBuf,
    pub models: PathBuf,
    pub quiet: bool,
    /// Devices beside the one `run` is given, for data-parallel stages.
    pub more_devices: Vec<Device>,
}

/// Runs every stage not yet finished, then the fusion.
pub fn run(options: &RunPipeline, device: &Device, device_name: &str) -> Result<()> {
    let config = load(&options.config)?;
    let stages = config.stages(&options.out)?;
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("cannot create {}", options.out.display()))?;
    crate::files::write(
        &options.out.join("pipeline.toml"),
        &std::fs::read(&options.config)?,
    )?;
    let cache = config
        .preprocess
        .cache
        .clone()
        .unwrap_or_else(|| options.out.join("cache"));
    let memory_limit = match config.preprocess.memory_limit_gib {
        None => DEFAULT_MEMORY_LIMIT,
        Some(g) if g.is_finite() && (0.0..=65_536.0).contains(&g) => {
            (g * (1u64 << 30) as f64) as usize
        }
        Some(g) => bail!(
            "{}: preprocess.memory_limit_gib = {g} must be a number of GiB from 0 to 65536",
            options.config.display()
        ),
    };
    for (i, stage) in stages.iter().enumerate() {
        let dir = stage_dir(&options.out, &stage.name);
        if !options.quiet {
            eprintln!(
                "stage {}/{} `{}`: {} ({} px), {}, {} epochs",
                i + 1,
                stages.len(),
                stage.name,
                stage.spec.architecture,
                stage.spec.input_size,
                stage.spec.loss,
                stage.epochs
            );
        }
        let run = TrainOptions {
            resume: true,
            skip_unreadable: config.preprocess.skip_unreadable,
            quiet: options.quiet,
            cache: cache.clone(),
            models: options.models.clone(),
            memory_limit,
            more_devices: options.more_devices.clone(),
            ..TrainOptions::new(stage.spec.clone(), stage.epochs, dir.clone())
        };
        if let (Some(teacher), Some(targets)) = (&stage.teacher, &stage.spec.soft_targets) {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            distill::stage_targets(
                &stage_dir(&options.out, teacher),
                &stage.spec.train[0],
                &run.load_options(),
                targets,
                device,
            )
            .with_context(|| format!("stage `{}`: its teacher `{teacher}`", stage.name))?;
        }
        let summary = run::train(&run, device, device_name)
            .with_context(|| format!("stage `{}`", stage.name))?;
        if !summary.finished {
            bail!("stage `{}` did not finish", stage.name);
        }
    }
    if let Some(fuse_config) = &config.fuse {
        let streams: Vec<PathBuf> = fuse_config
            .streams
            .iter()
            .map(|s| {
                if stages.iter().all(|stage| stage.name != *s) && s == fusion::PUBLISHED {
                    PathBuf::from(fusion::PUBLISHED)
                } else {
                    stage_dir(&options.out, s).join(CARD_FILE)
                }
            })
            .collect();
        let fit = fusion::fit_streams(
            &streams,
            &fuse_config.valid,
            fuse_config.rule,
            &LoadOptions {
                cache,
                models: options.models.clone(),
                multiple_faces: config.preprocess.multiple_faces,
                skip_unreadable: config.preprocess.skip_unreadable,
                memory_limit,
                quiet: options.quiet,
            },
            device,
        )?;
        let path = options.out.join(fusion::FUSION_FILE);
        crate::files::write(&path, &serde_json::to_vec_pretty(&fit)?)?;
        if !options.quiet {
            eprint!("{}", fusion::describe(&fit));
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Stage>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, text).unwrap();
        load(&path)?.stages(Path::new("out"))
    }

    const STAGE: &str = "stream = 'tiny-age-net'\nloss = 'kl'\nepochs = 2\nbatch_size = 4\n\
                         optimizer = { learning_rate = 1e-3 }\n\
                         train = [{ format = 'csv', path = 'train.csv' }]\n";

    #[test]
    fn stages_chain_and_resolve_paths() {
        let stages = parse(&format!(
            "[[stage]]\nname = 'a'\n{STAGE}\n[[stage]]\nname = 'b'\nfrom = 'a'\n{STAGE}"
        ))
        .unwrap();
        assert_eq!(stages.len(), 2);
        assert_eq!(stages[0].spec.init, None);
        assert_eq!(
            stages[1].spec.init,
            Some(PathBuf::from("out/stages/a/model.bpk"))
        );
        let DatasetSpec::Csv(csv) = &stages[0].spec.train[0] else {
            panic!()
        };
        assert!(csv.path.is_absolute() && csv.path.ends_with("train.csv"));
    }

    #[test]
    fn the_shipped_pipelines_are_valid() {
        let configs = crate::crate_dir().join("../configs");
        let v2 = load(&configs.join("dldl-v2.toml")).unwrap();
        let stages = v2.stages(Path::new("out")).unwrap();
        assert_eq!(stages.len(), 2);
        assert_eq!((stages[0].epochs, stages[1].epochs), (60, 60));
        assert_eq!(stages[1].spec.loss, LossKind::KlL1 { lambda: 1.0 });
        assert_eq!(stages[0].spec.batch_size, 128);
        assert_eq!(stages[0].spec.optimizer.learning_rate, 1e-3);
        assert_eq!(
            (stages[0].spec.lr_step_epochs, stages[0].spec.lr_gamma),
            (30, 0.1)
        );
        assert!(stages[1].spec.init.is_some());
        let two = load(&configs.join("two-stream-dldl.toml")).unwrap();
        let stages = two.stages(Path::new("out")).unwrap();
        assert_eq!(stages.len(), 8);
        let losses: Vec<LossKind> = stages.iter().map(|s| s.spec.loss).collect();
        assert!(losses.contains(&LossKind::CrossEntropy));
        assert_eq!(two.fuse.unwrap().streams.len(), 4);
    }

    #[test]
    fn bad_configurations_get_one_clear_line() {
        for (text, needle) in [
            (
                format!("[[stage]]\nname = 'a'\nfrom = 'z'\n{STAGE}"),
                "starts from `z`, which is not an earlier stage",
            ),
            (
                format!("[[stage]]\nname = 'a'\nepoch = 3\n{STAGE}"),
                "unknown field `epoch`",
            ),
            (
                format!("[[stage]]\nname = 'a'\n{STAGE}\n[[stage]]\nname = 'a'\n{STAGE}"),
                "two stages are named `a`",
            ),
            (
                format!("[[stage]]\nname = 'a'\n{}", STAGE.replace("'kl'", "'mse'")),
                "stage `a`",
            ),
            (
                format!(
                    "[[stage]]\nname = 'a'\n{}",
                    STAGE.replace("tiny-age-net", "resnet")
                ),
                "streams: vgg16",
            ),
            ("[preprocess]\nmultiple_faces = 'all'\n".to_string(), "all"),
            // A later stage's numbers are checked before the first one trains.
            (
                format!(
                    "[[stage]]\nname = 'a'\n{STAGE}\n[[stage]]\nname = 'b'\n{}",
                    STAGE.replace(
                        "learning_rate = 1e-3",
                        "learning_rate = 1e-3, momentum = 1.5"
                    )
                ),
                "stage `b`: optimizer.momentum must be at least 0 and below 1, not 1.5",
            ),
            (
                format!(
                    "[[stage]]\nname = 'a'\n{}",
                    STAGE.replace("learning_rate = 1e-3", "learning_rate = -1e-3")
                ),
                "stage `a`: the learning rate",
            ),
            (
                format!(
                    "[[stage]]\nname = 'a'\n{}",
                    STAGE.replace(
                        "learning_rate = 1e-3",
                        "learning_rate = 1e-3, weight_decay = nan"
                    )
                ),
                "optimizer.weight_decay",
            ),
            (
                format!("[[stage]]\nname = 'a'\n{STAGE}\n[fuse]\nstreams = ['a', 'q']\nvalid = []"),
                "`q`, which is no stage",
            ),
        ] {
            let message = format!("{:#}", parse(&text).unwrap_err());
            assert!(message.contains(needle), "{needle}: {message}");
            assert!(!message.contains('\n'), "one line: {message}");
        }
    }
}
