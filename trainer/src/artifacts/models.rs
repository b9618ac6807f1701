//! The model folder (`models/`, or `--models`, or `$APPARENT_AGE_MODELS`) and the networks loaded
//! from it: the detector, the landmark predictor, the pretrained age network, and the estimator
//! that runs them with any trained streams. Every command loads them through these functions, so
//! a missing or damaged file gets the same line everywhere.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use dldl::{
    DldlError,
    burn::tensor::Device,
    distribution::fusion::FusionRule,
    face::detector::BlazeFace,
    face::landmarks::ShapePredictor,
    face::pipeline::{Estimator, FaceFinder, Stream, with_published},
    networks::{pretrained::PretrainedAgeNet, vgg::AgeNet},
    weights::exported::{self, ExportedStream, StreamIndex},
    weights::files::{self, ModelFile},
};

use crate::artifacts::card;

/// The pretrained age network, fetched by `cargo xtask fetch-models`.
pub const AGE_MODEL: &str = files::AGE_NETWORK.path;
/// The face detector, kept in the repository.
pub const DETECTOR_MODEL: &str = files::DETECTOR.path;

/// The model folder: `$APPARENT_AGE_MODELS`, else the workspace's `models/`.
pub fn default_models_dir() -> PathBuf {
    std::env::var_os("APPARENT_AGE_MODELS")
        .map_or_else(|| crate::crate_dir().join("../models"), PathBuf::from)
}

/// Reads a model file and checks it against its pinned sha256.
fn read_model(models: &Path, file: &ModelFile) -> Result<(PathBuf, Vec<u8>)> {
    let path = models.join(file.path);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "cannot read the model file {}; fetch the model files with `cargo xtask fetch-models` \
             (or point --models / APPARENT_AGE_MODELS at a folder holding them)",
            path.display()
        )
    })?;
    file.check(&path.display().to_string(), &bytes)
        .map_err(anyhow::Error::msg)?;
    Ok((path, bytes))
}

fn model_error(path: &Path, error: DldlError) -> anyhow::Error {
    anyhow::anyhow!(
        "{}: {error}; fetch it again with `cargo xtask fetch-models`",
        path.display()
    )
}

/// Loads the face detector from the model folder.
pub fn load_detector(models: &Path, device: &Device) -> Result<BlazeFace> {
    let (path, bytes) = read_model(models, &files::DETECTOR)?;
    BlazeFace::from_onnx(&bytes, device).map_err(|e| model_error(&path, e))
}

/// Loads dlib's five-point landmark predictor (its compact form) from the model folder.
pub fn load_landmarks(models: &Path) -> Result<ShapePredictor> {
    let (path, bytes) = read_model(models, &files::LANDMARKS)?;
    ShapePredictor::from_bytes(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e}; write it again with `cargo xtask fetch-models`",
            path.display()
        )
    })
}

/// Loads the pretrained age network (dlib's, 81 ages) from the model folder.
pub fn load_pretrained(models: &Path, device: &Device) -> Result<PretrainedAgeNet> {
    let (path, bytes) = read_model(models, &files::AGE_NETWORK)?;
    PretrainedAgeNet::from_onnx(&bytes, device).map_err(|e| model_error(&path, e))
}

/// Loads the detector and the landmark predictor: what the face cache cuts chips with.
pub fn load_face_finder(models: &Path, device: &Device) -> Result<FaceFinder> {
    Ok(FaceFinder {
        detector: load_detector(models, device)?,
        landmarks: load_landmarks(models)?,
    })
}

/// Holds a file of `<models>/streams/` (`file`, relative to that folder) to its pin when it is a
/// file of a shipped stream.
fn check_shipped(models: &Path, file: &str, bytes: &[u8]) -> Result<()> {
    let relative = format!("{}/{file}", exported::STREAMS_DIR);
    match files::shipped(&relative) {
        Some(pin) => pin
            .check(&models.join(&relative).display().to_string(), bytes)
            .map_err(anyhow::Error::msg),
        None => Ok(()),
    }
}

/// `<models>/streams/index.json`, or an empty index when there is none.
pub fn stream_index(models: &Path) -> Result<StreamIndex> {
    let index_path = models
        .join(exported::STREAMS_DIR)
        .join(exported::INDEX_FILE);
    let Ok(bytes) = std::fs::read(&index_path) else {
        return Ok(StreamIndex::default());
    };
    serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{} is damaged; restore it with `git checkout -- models/streams` or export the \
             streams again",
            index_path.display()
        )
    })
}

/// Loads every stream listed in `<models>/streams/index.json` (none when there is no index).
pub fn load_exported(models: &Path, device: &Device) -> Result<Vec<(ExportedStream, AgeNet)>> {
    let streams = models.join(exported::STREAMS_DIR);
    let index = stream_index(models)?;
    index
        .streams
        .iter()
        .map(|name| {
            let folder = streams.join(name);
            let card_bytes = std::fs::read(folder.join(exported::CARD_FILE))
                .with_context(|| format!("cannot read the exported stream `{name}`"))?;
            check_shipped(
                models,
                &format!("{name}/{}", exported::CARD_FILE),
                &card_bytes,
            )?;
            let card: ExportedStream = serde_json::from_slice(&card_bytes).with_context(|| {
                format!("{} is damaged", folder.join(exported::CARD_FILE).display())
            })?;
            let weights = std::fs::read(folder.join(exported::WEIGHTS_FILE))
                .with_context(|| format!("cannot read the weights of `{name}`"))?;
            check_shipped(
                models,
                &format!("{name}/{}", exported::WEIGHTS_FILE),
                &weights,
            )?;
            let model = exported::load_stream(&card, weights, device)
                .with_context(|| format!("the exported stream `{name}`"))?;
            card::finite(&model, &folder.join(exported::WEIGHTS_FILE))?;
            Ok((card, model))
        })
        .collect()
}

/// Loads the detector, the pretrained stream and the given trained streams.
pub fn estimator(
    models: &Path,
    streams: &[PathBuf],
    fusion: FusionRule,
    flip: bool,
    device: &Device,
) -> Result<(Estimator, Vec<String>)> {
    let detector = load_detector(models, device)?;
    let published = stream_index(models)?.published_weight();
    let mut all = Vec::new();
    let mut warnings = Vec::new();
    for (card, model) in load_exported(models, device)? {
        if card.data == "synthetic" {
            warnings.push(format!(
                "the exported stream `{}` was trained on synthetic faces; its estimates on \
                 photographs mean nothing",
                card.name
            ));
        }
        all.push(Stream {
            name: card.name,
            network: model.for_inference(),
            input_size: card.model.input_size,
            normalization: card.model.normalization,
            weight: card.weight,
        });
    }
    let mut all = with_published(all, published, || load_pretrained(models, device))?;
    for path in streams {
        let loaded = card::load_model(path, device)?;
        if loaded.card.data.kind == "synthetic" {
            warnings.push(format!(
                "the stream {} was trained on synthetic faces; its estimates on photographs mean nothing",
                path.display()
            ));
        }
        all.push(Stream {
            name: path.display().to_string(),
            network: loaded.model.for_inference(),
            input_size: loaded.card.model.input_size,
            normalization: loaded.card.model.normalization,
            weight: 1.0,
        });
    }
    let estimator = Estimator {
        detector,
        landmarks: Some(load_landmarks(models)?),
        streams: all,
        fusion,
        flip,
    };
    Ok((estimator, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{self, DeviceChoice};

    /// The streams that ship in the repository's `models/streams/` load: their files match their
    /// pins, their weights are finite, and they run by default (the published network only
    /// where the index gives it weight).
    #[test]
    fn the_shipped_streams_load_and_match_their_pins() {
        let models = crate::crate_dir().join("../models");
        let index = stream_index(&models).unwrap();
        assert_eq!(index.streams, ["resnet-utkface", "tiny-utkface"]);
        assert_eq!(files::SHIPPED_STREAMS.len(), 2 * index.streams.len());
        for pin in files::SHIPPED_STREAMS {
            let bytes = std::fs::read(models.join(pin.path))
                .unwrap_or_else(|e| panic!("{}: {e}", pin.path));
            pin.check(pin.path, &bytes).unwrap();
        }
        let device = Device::flex();
        let loaded = load_exported(&models, &device).unwrap();
        assert_eq!(loaded.len(), 2);
        for (card, model) in &loaded {
            assert!(card.description.contains("utkface"), "{}", card.description);
            assert!(card.weight > 0.0, "{}: weight {}", card.name, card.weight);
            assert_eq!(
                dldl::weights::exported::non_finite_parameters(model)
                    .unwrap()
                    .0,
                0
            );
        }
        let (estimator, warnings) =
            estimator(&models, &[], FusionRule::Arithmetic, true, &device).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let names: Vec<&str> = estimator.streams.iter().map(|s| s.name.as_str()).collect();
        let published = index.published_weight() > 0.0;
        assert_eq!(names.contains(&"pretrained"), published, "{names:?}");
        assert!(
            names.ends_with(&["resnet-utkface", "tiny-utkface"]),
            "{names:?}"
        );
    }

    /// A shipped stream's weights changed by one byte, or cut short, are refused in one line
    /// naming the file and how to restore it.
    #[test]
    fn a_damaged_shipped_stream_is_named_with_the_fix() {
        let models = crate::crate_dir().join("../models");
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("streams/tiny-utkface");
        std::fs::create_dir_all(&copy).unwrap();
        std::fs::copy(
            models.join("streams/index.json"),
            dir.path().join("streams/index.json"),
        )
        .unwrap();
        for name in ["resnet-utkface", "tiny-utkface"] {
            let folder = dir.path().join("streams").join(name);
            std::fs::create_dir_all(&folder).unwrap();
            for file in ["stream.json", "weights.bpk"] {
                std::fs::copy(
                    models.join("streams").join(name).join(file),
                    folder.join(file),
                )
                .unwrap();
            }
        }
        let weights = copy.join("weights.bpk");
        let mut bytes = std::fs::read(&weights).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        std::fs::write(&weights, &bytes).unwrap();
        let error = format!(
            "{:#}",
            load_exported(dir.path(), &Device::flex()).unwrap_err()
        );
        assert!(
            error.contains("tiny-utkface/weights.bpk")
                && error.contains("git checkout -- models/streams"),
            "{error}"
        );
        assert!(!error.contains('\n'), "{error}");
        std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
        let error = format!(
            "{:#}",
            load_exported(dir.path(), &Device::flex()).unwrap_err()
        );
        assert!(error.contains("truncated"), "{error}");
    }

    /// The pretrained network, widened to the 101 ages, fine-tunes with a DLDL loss like any
    /// other stream: a few Adam steps on a fixed batch lower the loss.
    #[test]
    fn the_widened_pretrained_stream_fine_tunes_with_dldl_losses() {
        use dldl::{
            burn::{
                optim::{AdamConfig, GradientsParams},
                tensor::{Distribution, Tensor},
            },
            distribution::loss::LossKind,
            networks::pretrained::{CHIP_SIZE, PretrainedAgeNetConfig},
        };
        let device = Device::flex().autodiff();
        device.seed(7);
        let mut net = PretrainedAgeNetConfig::new()
            .init(&device)
            .widen_to_age_grid();
        let mut optim = AdamConfig::new().init();
        let x = Tensor::random(
            [4, 3, CHIP_SIZE, CHIP_SIZE],
            Distribution::Uniform(-0.5, 0.5),
            &device,
        );
        let mu = Tensor::from_floats([20.0, 35.0, 60.0, 90.0], &device);
        let sigma = Tensor::from_floats([3.0, 3.0, 3.0, 3.0], &device);
        let loss_kind = LossKind::Kl;
        let mut losses = Vec::new();
        for _ in 0..10 {
            let loss = loss_kind.loss(net.forward(x.clone()), mu.clone(), sigma.clone());
            losses.push(loss.clone().into_scalar::<f32>());
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = optim.step(1e-3, net, grads);
        }
        assert!(losses[9] < 0.8 * losses[0], "losses {losses:?}");
    }

    /// The pretrained stream on one aligned crop gives the same distribution on burn's CPU
    /// backend and through wgpu, where an adapter exists.
    #[test]
    fn the_same_crop_gives_the_same_distribution_on_cpu_and_wgpu() {
        let (gpu, gpu_name) = match device::select(DeviceChoice::Wgpu) {
            Ok(found) => found,
            Err(error) => {
                eprintln!("skipped: no wgpu adapter here ({error:#})");
                return;
            }
        };
        let cpu = Device::flex();
        let models = default_models_dir();
        let (estimator, _) = estimator(&models, &[], FusionRule::Arithmetic, true, &cpu)
            .expect("run `cargo xtask fetch-models` first");
        let photo =
            image::open(crate::crate_dir().join("../tests/fixtures/portraits/astronaut.png"))
                .expect("run `cargo xtask fetch-portraits` first")
                .to_rgb8();
        let detection = estimator.detector.detect(&photo, &cpu).unwrap().remove(0);
        let crop =
            dldl::face::pipeline::chip(&photo, &detection, dldl::networks::pretrained::CHIP_SIZE);
        let on_cpu = estimator
            .run_stream(&estimator.streams[0], std::slice::from_ref(&crop), &cpu)
            .unwrap();
        let (gpu_estimator, _) =
            super::estimator(&models, &[], FusionRule::Arithmetic, true, &gpu).unwrap();
        let on_gpu = gpu_estimator
            .run_stream(&gpu_estimator.streams[0], &[crop], &gpu)
            .unwrap();
        let worst = on_cpu[0]
            .iter()
            .zip(&on_gpu[0])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        eprintln!("{gpu_name}: largest difference per bin from the CPU {worst:.2e}");
        assert!(
            worst <= 1e-4,
            "{gpu_name} differs from the CPU by {worst:e} in some bin"
        );
    }
}
