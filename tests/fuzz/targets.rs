//! The readers under fuzz, each fed mutants of valid inputs the project already has or writes:
//! the model files, the shipped pipelines, the IMDB-WIKI fixture, the test portraits, a small
//! stream's weights and cards, and a row file in each data-set format. Each target writes the
//! mutant where the reader expects its file, in a scratch folder of its own, and calls the
//! reader the trainer (or the page, through the same `dldl` function) calls. A result that
//! breaks what the reader promises (a distribution that does not sum to 1, a NaN box) is a
//! panic, counted as such.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use dldl::{
    burn::{module::Module, tensor::Device},
    distribution::{fusion::FusionRule, loss::LossKind},
    face::{
        detector::{self, BlazeFace},
        landmarks::{FaceBox, Pixels, ShapePredictor},
        pipeline::Estimator,
    },
    networks::{
        pretrained::PretrainedAgeNet,
        vgg::{AgeNetConfig, Architecture},
    },
    weights::exported::{self, ExportedStream, Precision, StreamIndex},
};
use image::RgbImage;
use rand::{Rng, rngs::StdRng};
use trainer::{
    artifacts::{
        card::{self, DataCard, ModelCard, TrainingCard},
        models,
    },
    data::{
        FaceMode,
        formats::{
            appa_real::{AppaLabel, AppaRealSpec},
            chalearn::ChalearnSpec,
            folder::FolderSpec,
            imdb_wiki::ImdbWikiSpec,
            morph::MorphSpec,
        },
        sets::{CsvSpec, DatasetSpec},
    },
    eval::predict::predict_image,
    train::stages,
};

use crate::mutate;

/// Every target's name and what it feeds, in the order of the summary.
pub const TARGETS: &[(&str, &str)] = &[
    (
        "onnx",
        "ONNX: the detector's and the age network's files, read by both loaders",
    ),
    (
        "landmarks",
        "dlib's shape predictor (.dat) and its compact form, read and run on a face",
    ),
    (
        "burnpack",
        "a trained stream's model.bpk (f32) and an exported weights.bpk (f16)",
    ),
    (
        "model-card",
        "model.json beside valid weights (trainer eval, predict, export)",
    ),
    (
        "stream-json",
        "an exported stream's stream.json beside valid weights",
    ),
    ("index-json", "streams/index.json naming a valid stream"),
    (
        "pipeline-toml",
        "the shipped pipelines (configs/*.toml), read and checked",
    ),
    ("csv", "the generic path,mean[,std] CSV"),
    ("appa-real", "APPA-REAL's gt_avg_train.csv"),
    ("chalearn-2015", "ChaLearn LAP 2015's image;mean;std rows"),
    ("chalearn-2016", "ChaLearn LAP 2016's image,mean,std rows"),
    ("morph", "MORPH II's metadata CSV"),
    (
        "utkface",
        "UTKFace file names (one per line, created as files)",
    ),
    (
        "fgnet",
        "FG-NET file names (one per line, created as files)",
    ),
    ("imdb-wiki", "IMDB-WIKI's wiki.mat (MAT-file v5)"),
    (
        "images",
        "photographs through the whole face pipeline (trainer predict): portraits, 1×1 to \
                16384×1 and 4096×4096, grey, grey and alpha, RGBA and 16-bit PNGs, grey, CMYK and EXIF-rotated JPEGs",
    ),
    (
        "blazeface-decode",
        "BlazeFace's raw outputs (896 scores, 896×16 boxes) with NaN and ±∞",
    ),
];

/// The repository's root: from the trainer's manifest folder that cargo names when it runs
/// the harness, else the one it was built in (a build folder shared between clones can hold
/// a binary built in another clone).
pub fn root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest
        .parent()
        .expect("the trainer lives in the workspace")
        .to_path_buf()
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `cargo xtask fetch-models` and `cargo xtask fetch-portraits` first",
            path.display()
        )
    })
}

/// A target ready to run: its seeds, and what it needs loaded once.
pub struct Target {
    pub name: &'static str,
    seeds: Vec<Vec<u8>>,
    text: bool,
    state: State,
}

enum State {
    None,
    Onnx,
    Landmarks(Vec<u8>),
    Burnpack,
    /// A model folder (weights for the card under test).
    Folder(PathBuf),
    Images(Box<Estimator>),
    Decode(Box<BlazeFace>),
}

fn device() -> Device {
    Device::flex()
}

fn tiny() -> AgeNetConfig {
    AgeNetConfig::for_stream(Architecture::TinyAgeNet, 32)
}

/// A small stream: a model folder with its card and weights, and the exported stream's files.
struct SmallStream {
    bpk: Vec<u8>,
    card: Vec<u8>,
    half: Vec<u8>,
    stream_json: Vec<u8>,
}

fn small_stream() -> SmallStream {
    let config = tiny();
    let model = config.init(&device()).expect("TinyAgeNet at 32 px builds");
    let parameters = model.num_params();
    let bpk = exported::weights_bytes(model.clone()).expect("weights serialise");
    let half = exported::weights_bytes(exported::to_half(model)).expect("weights serialise");
    let card = ModelCard::new(
        config.clone(),
        parameters,
        LossKind::KlL1 { lambda: 1.0 },
        DataCard {
            kind: "synthetic".into(),
            train: vec!["csv synth/train.csv".into()],
            train_images: 64,
            train_mean_age: 40.0,
            valid: vec!["csv synth/valid.csv".into()],
            valid_images: 16,
        },
        training_card(),
        None,
    );
    let stream = ExportedStream {
        format: exported::FORMAT.into(),
        name: "tiny".into(),
        model: config,
        precision: Precision::F16,
        max_expected_age_change: 0.01,
        data: "synthetic".into(),
        description: "TinyAgeNet, 32 px, untrained".into(),
        validation: None,
        weight: 1.0,
        weights_bytes: Some(half.len() as u64),
    };
    SmallStream {
        bpk,
        card: serde_json::to_vec_pretty(&card).expect("cards serialise"),
        half,
        stream_json: serde_json::to_vec_pretty(&stream).expect("cards serialise"),
    }
}

/// The training record a card carries, with made-up but valid values.
fn training_card() -> TrainingCard {
    TrainingCard {
        epochs: 2,
        batch_size: 16,
        optimizer: "adam".into(),
        learning_rate: 1e-3,
        lr_step_epochs: 1,
        lr_gamma: 0.5,
        augmentation: "flip".into(),
        seed: 7,
        device: "cpu".into(),
        seconds: 1.5,
    }
}

impl Target {
    /// Loads `name`'s seeds and state; `scratch` holds files the state needs.
    pub fn new(name: &str, scratch: &Path) -> Result<Target> {
        let root = root();
        let models = root.join("models");
        let (name, _) = TARGETS.iter().find(|(n, _)| *n == name).with_context(|| {
            let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
            format!("no target `{name}`; the targets are {}", names.join(", "))
        })?;
        let text_seeds = |texts: &[&str]| -> Vec<Vec<u8>> {
            texts.iter().map(|t| t.as_bytes().to_vec()).collect()
        };
        let (seeds, text, state) = match *name {
            "onnx" => (
                vec![
                    read(&models.join(models::DETECTOR_MODEL)),
                    read(&models.join(models::AGE_MODEL)),
                ],
                false,
                State::Onnx,
            ),
            "landmarks" => {
                let face = read(&root.join("tests/fixtures/portraits/grace_hopper_512x512.jpg"));
                (
                    vec![
                        read(&models.join(dldl::face::landmarks::COMPACT_FILE)),
                        read(&models.join("shape_predictor_5_face_landmarks.dat")),
                    ],
                    false,
                    State::Landmarks(face),
                )
            }
            "burnpack" => {
                let stream = small_stream();
                (vec![stream.bpk, stream.half], false, State::Burnpack)
            }
            "model-card" => {
                let stream = small_stream();
                let folder = scratch.join("run");
                fs::create_dir_all(&folder)?;
                fs::write(folder.join(card::WEIGHTS_FILE), &stream.bpk)?;
                (vec![stream.card], true, State::Folder(folder))
            }
            "stream-json" | "index-json" => {
                let stream = small_stream();
                let folder = scratch.join("models");
                let dir = folder.join(exported::STREAMS_DIR).join("tiny");
                fs::create_dir_all(&dir)?;
                fs::write(dir.join(exported::WEIGHTS_FILE), &stream.half)?;
                let index = serde_json::to_vec(&StreamIndex {
                    streams: vec!["tiny".into()],
                    pretrained_weight: Some(0.25),
                })?;
                let seeds = if *name == "stream-json" {
                    fs::write(
                        folder
                            .join(exported::STREAMS_DIR)
                            .join(exported::INDEX_FILE),
                        &index,
                    )?;
                    vec![stream.stream_json]
                } else {
                    fs::write(dir.join(exported::CARD_FILE), &stream.stream_json)?;
                    vec![index, br#"{"streams":[]}"#.to_vec()]
                };
                (seeds, true, State::Folder(folder))
            }
            "pipeline-toml" => (
                vec![
                    read(&root.join("configs/dldl-v2.toml")),
                    read(&root.join("configs/two-stream-dldl.toml")),
                ],
                true,
                State::None,
            ),
            "csv" => (
                text_seeds(&[
                    "path,mean,std\nimages/0.png,23.5,3.1\nimages/1.png,61,2\n",
                    "a.png,40\nb.png,7.25\n",
                ]),
                true,
                State::None,
            ),
            "appa-real" => (
                text_seeds(&[
                    "file_name,num_ratings,apparent_age_avg,apparent_age_std,real_age\n\
                     000000.jpg,36,5.0,1.146423008,4\n000001.jpg,63,20.3,4.1,18\n",
                ]),
                true,
                State::None,
            ),
            "chalearn-2015" => (
                text_seeds(&["image_000001.jpg;24.7;5.2\nimage_000002.jpg;61;3\n"]),
                true,
                State::None,
            ),
            "chalearn-2016" => (
                text_seeds(&[
                    "image,mean,stdv\n000001.jpg,24.7,5.2\n000002.jpg,61,3\n",
                    "000003.jpg,8.5,1.25\n",
                ]),
                true,
                State::None,
            ),
            "morph" => (
                text_seeds(&[
                    "id_num,picture_num,dob,doa,race,gender,facial_hair,age,age_diff,glasses,photo\n\
                     350,0,05/11/1958,10/23/2003,W,M,0,45,0,0,Album2/350_00M45.JPG\n\
                     351,1,01/02/1970,01/02/2000,B,F,0,30,0,0,Album2/351_01F30.JPG\n",
                ]),
                true,
                State::None,
            ),
            "utkface" => (
                text_seeds(&[
                    "25_0_0_20170116174525125.jpg\n1_1_2_20161219140627985.jpg.chip.jpg\n\
                     116_0_0_20170120134921760.jpg\n",
                ]),
                true,
                State::None,
            ),
            "fgnet" => (
                text_seeds(&["001A02.JPG\n001A43a.JPG\n082A18.jpg\n"]),
                true,
                State::None,
            ),
            "imdb-wiki" => (
                vec![read(&root.join("tests/fixtures/imdb_wiki/wiki.mat"))],
                false,
                State::None,
            ),
            "images" => {
                let (estimator, _) =
                    models::estimator(&models, &[], FusionRule::default(), true, &device())?;
                (
                    image_seeds(&root)?,
                    false,
                    State::Images(Box::new(estimator)),
                )
            }
            "blazeface-decode" => {
                let detector = models::load_detector(&models, &device())?;
                let face = image::load_from_memory(&read(
                    &root.join("tests/fixtures/portraits/grace_hopper_512x512.jpg"),
                ))?
                .to_rgb8();
                let (input, _) = detector::input(&face)?;
                let (scores, boxes) = detector.raw_tensors(input, &device());
                let mut real = Vec::new();
                for value in scores
                    .into_data()
                    .iter::<f32>()
                    .chain(boxes.into_data().iter::<f32>())
                {
                    real.extend_from_slice(&value.to_le_bytes());
                }
                let zeros = vec![0; real.len()];
                (vec![real, zeros], false, State::Decode(Box::new(detector)))
            }
            _ => unreachable!("every target in TARGETS has seeds"),
        };
        Ok(Target {
            name,
            seeds,
            text,
            state,
        })
    }

    /// Case `index`: an unchanged seed for one case in 50, else a mutant.
    pub fn input(&self, index: u64) -> Vec<u8> {
        let mut rng = mutate::case_rng(self.name, index);
        let seed = &self.seeds[rng.random_range(0..self.seeds.len())];
        if rng.random_ratio(1, 50) {
            return seed.clone();
        }
        let mut input = mutate::mutate(&mut rng, seed, &self.seeds, self.text);
        if matches!(self.state, State::Decode(_)) && rng.random_bool(0.7) {
            mutate::poison_floats(&mut rng, &mut input);
        }
        input
    }

    /// Runs the reader on `input` inside `scratch` (a fresh, empty folder).
    pub fn run(&self, input: &[u8], scratch: &Path, rng: &mut StdRng) -> Result<()> {
        let device = device();
        match (&self.state, self.name) {
            (State::Onnx, _) => {
                let detector = BlazeFace::from_onnx(input, &device);
                let age = PretrainedAgeNet::from_onnx(input, &device);
                match (detector, age) {
                    (Ok(_), _) | (_, Ok(_)) => Ok(()),
                    (Err(a), Err(b)) => bail!("as the detector: {a}; as the age network: {b}"),
                }
            }
            (State::Landmarks(face), _) => {
                let predictor =
                    ShapePredictor::from_bytes(input).map_err(|e| anyhow::anyhow!("{e}"))?;
                let face = image::load_from_memory(face)?.to_rgb8();
                let points = predictor.predict(
                    Pixels {
                        rgb: face.as_raw(),
                        width: face.width() as usize,
                        height: face.height() as usize,
                    },
                    &FaceBox::from_dlib_rect([rng.random_range(-600..600), 150, 360, 400]),
                );
                assert_eq!(points.len(), predictor.parts());
                Ok(())
            }
            (State::Burnpack, _) => {
                let path = scratch.join(card::WEIGHTS_FILE);
                fs::write(&path, input)?;
                let as_trained = card::load_weights(&tiny(), &path, &device);
                let stream = ExportedStream {
                    format: exported::FORMAT.into(),
                    name: "tiny".into(),
                    model: tiny(),
                    precision: Precision::F16,
                    max_expected_age_change: 0.0,
                    data: "synthetic".into(),
                    description: String::new(),
                    validation: None,
                    weight: 1.0,
                    weights_bytes: None,
                };
                let as_exported = exported::load_stream(&stream, input.to_vec(), &device);
                match (as_trained, as_exported) {
                    (Ok(_), _) | (_, Ok(_)) => Ok(()),
                    (Err(a), Err(b)) => bail!("as model.bpk: {a:#}; as weights.bpk: {b}"),
                }
            }
            (State::Folder(folder), "model-card") => {
                let dir = scratch.join("run");
                fs::create_dir_all(&dir)?;
                fs::copy(
                    folder.join(card::WEIGHTS_FILE),
                    dir.join(card::WEIGHTS_FILE),
                )?;
                fs::write(dir.join(card::CARD_FILE), input)?;
                card::load_model(&dir, &device).map(|_| ())
            }
            (State::Folder(folder), name) => {
                let models_dir = scratch.join("models");
                copy_tree(folder, &models_dir)?;
                let streams = models_dir.join(exported::STREAMS_DIR);
                let file = if name == "stream-json" {
                    streams.join("tiny").join(exported::CARD_FILE)
                } else {
                    streams.join(exported::INDEX_FILE)
                };
                fs::write(file, input)?;
                models::load_exported(&models_dir, &device).map(|_| ())
            }
            (State::Images(estimator), _) => {
                let path = scratch.join("photo");
                fs::write(&path, input)?;
                let out = rng.random_ratio(1, 10).then(|| scratch.join("out"));
                if let Some(out) = &out {
                    fs::create_dir_all(out)?;
                }
                let result = predict_image(estimator, &path, out.as_deref(), &device);
                if let Some(error) = result.error {
                    bail!("{error}");
                }
                for face in &result.faces {
                    let sum: f32 = face.distribution.iter().sum();
                    assert!((sum - 1.0).abs() < 1e-3, "a distribution sums to {sum}");
                    assert!(
                        (0.0..=100.0).contains(&face.expected_age) && face.sigma.is_finite(),
                        "E[age] {} ± {}",
                        face.expected_age,
                        face.sigma
                    );
                    assert!(
                        face.bbox.iter().all(|v| v.is_finite()),
                        "box {:?}",
                        face.bbox
                    );
                }
                Ok(())
            }
            (State::Decode(detector), _) => {
                let floats: Vec<f32> = input
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                let split = floats.len().min(detector::anchors().len());
                let (scores, boxes) = floats.split_at(split);
                let side = [32, 128, 300, 4000][rng.random_range(0..4)];
                let other = [32, 128, 480, 7000][rng.random_range(0..4)];
                let (_, letterbox) = detector::input(&RgbImage::new(side, other))?;
                for face in detector.decode(scores, boxes, &letterbox) {
                    assert!(
                        face.score.is_finite() && face.score > 0.0 && face.score <= 1.0,
                        "score {}",
                        face.score
                    );
                    assert!(
                        face.bbox.iter().all(|v| v.is_finite())
                            && face.keypoints.iter().flatten().all(|v| v.is_finite()),
                        "a detection with a non-finite box: {face:?}"
                    );
                }
                Ok(())
            }
            (State::None, name) => run_text(name, input, scratch),
        }
    }
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// The pipelines and the data-set readers, on a mutated file.
fn run_text(name: &str, input: &[u8], scratch: &Path) -> Result<()> {
    if name == "pipeline-toml" {
        let path = scratch.join("pipeline.toml");
        fs::write(&path, input)?;
        let config = stages::load(&path)?;
        config.stages(&scratch.join("out"))?;
        return Ok(());
    }
    let file = |name: &str| -> Result<PathBuf> {
        let path = scratch.join(name);
        fs::write(&path, input)?;
        Ok(path)
    };
    let spec = match name {
        "csv" => DatasetSpec::Csv(CsvSpec {
            path: file("set.csv")?,
            sigma: Some(3.0.into()),
            faces: FaceMode::AsIs,
            limit: None,
        }),
        "appa-real" => {
            file("gt_avg_train.csv")?;
            DatasetSpec::AppaReal(AppaRealSpec {
                root: scratch.to_path_buf(),
                split: "train".into(),
                label: AppaLabel::Apparent,
                crops: false,
                sigma: None,
                faces: FaceMode::default(),
                limit: None,
            })
        }
        "chalearn-2015" | "chalearn-2016" => {
            let spec = ChalearnSpec {
                csv: file("gt.csv")?,
                images: None,
                faces: FaceMode::default(),
                limit: None,
            };
            if name == "chalearn-2015" {
                DatasetSpec::Chalearn2015(spec)
            } else {
                DatasetSpec::Chalearn2016(spec)
            }
        }
        "morph" => DatasetSpec::Morph(MorphSpec {
            csv: file("morph.csv")?,
            images: None,
            path_column: "photo".into(),
            age_column: "age".into(),
            sigma: None,
            faces: FaceMode::default(),
            limit: None,
        }),
        "utkface" | "fgnet" => {
            let dir = scratch.join("images");
            fs::create_dir_all(&dir)?;
            // Names as a file system takes them: no separators or NUL, at most 200 bytes.
            for line in String::from_utf8_lossy(input).lines().take(64) {
                if !line.is_empty()
                    && line.len() <= 200
                    && line != "."
                    && line != ".."
                    && !line.contains(['/', '\0'])
                {
                    fs::write(dir.join(line), b"")?;
                }
            }
            let spec = FolderSpec {
                dir,
                sigma: None,
                faces: FaceMode::default(),
                limit: None,
                list: None,
            };
            if name == "utkface" {
                DatasetSpec::Utkface(spec)
            } else {
                DatasetSpec::Fgnet(spec)
            }
        }
        "imdb-wiki" => DatasetSpec::ImdbWiki(ImdbWikiSpec {
            mat: file("wiki.mat")?,
            images: None,
            min_face_score: 1.0,
            max_second_face_score: None,
            sigma: None,
            faces: FaceMode::default(),
            limit: None,
        }),
        other => unreachable!("`{other}` is not a data-set target"),
    };
    let set = spec.read()?;
    for sample in &set.samples {
        assert!(
            sample.mu.is_finite()
                && (0.0..=100.0).contains(&sample.mu)
                && sample.sigma.is_finite()
                && sample.sigma >= 0.0,
            "a sample with μ {} and σ {} was read",
            sample.mu,
            sample.sigma
        );
    }
    Ok(())
}

/// The portraits, and images written here for what they are: 1×1 to 16384×1 and 4096×4096,
/// grey, grey with alpha, RGB, RGBA, 8 and 16 bits, CMYK and EXIF-rotated JPEGs.
fn image_seeds(root: &Path) -> Result<Vec<Vec<u8>>> {
    let portraits = root.join("tests/fixtures/portraits");
    let mut seeds: Vec<Vec<u8>> = ["grace_hopper_512x512.jpg", "astronaut.png", "coffee.png"]
        .iter()
        .map(|name| read(&portraits.join(name)))
        .collect();
    let face = image::load_from_memory(&seeds[0])?.to_rgb8();
    let png = |image: image::DynamicImage| -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        image.write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )?;
        Ok(bytes)
    };
    let small = image::DynamicImage::ImageRgb8(face.clone()).resize(
        96,
        96,
        image::imageops::FilterType::Triangle,
    );
    seeds.push(png(image::DynamicImage::new_rgb8(1, 1))?);
    seeds.push(png(image::DynamicImage::new_luma8(16384, 1))?);
    seeds.push(png(image::DynamicImage::new_rgb8(4096, 4096))?);
    seeds.push(png(image::DynamicImage::ImageLuma8(small.to_luma8()))?);
    seeds.push(png(image::DynamicImage::ImageLumaA8(
        small.to_luma_alpha8(),
    ))?);
    seeds.push(png(image::DynamicImage::ImageRgba8(small.to_rgba8()))?);
    seeds.push(png(image::DynamicImage::ImageRgb16(small.to_rgb16()))?);
    seeds.push(png(image::DynamicImage::ImageLuma16(small.to_luma16()))?);
    // A grey JPEG, a CMYK JPEG and one with an EXIF orientation (6: turned 90°).
    let jpeg = |pixels: &[u8], width: u16, height: u16, colour, exif: bool| -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut bytes, 90);
        if exif {
            encoder.add_app_segment(1, &exif_orientation(6))?;
        }
        encoder.encode(pixels, width, height, colour)?;
        Ok(bytes)
    };
    let luma = small.to_luma8();
    seeds.push(jpeg(
        luma.as_raw(),
        96,
        96,
        jpeg_encoder::ColorType::Luma,
        false,
    )?);
    let cmyk: Vec<u8> = small
        .to_rgb8()
        .pixels()
        .flat_map(|p| [255 - p.0[0], 255 - p.0[1], 255 - p.0[2], 0])
        .collect();
    seeds.push(jpeg(&cmyk, 96, 96, jpeg_encoder::ColorType::Cmyk, false)?);
    seeds.push(jpeg(
        face.as_raw(),
        face.width() as u16,
        face.height() as u16,
        jpeg_encoder::ColorType::Rgb,
        true,
    )?);
    // A 1×1 JPEG, too.
    seeds.push(jpeg(
        &[128, 64, 32],
        1,
        1,
        jpeg_encoder::ColorType::Rgb,
        false,
    )?);
    Ok(seeds)
}

/// An EXIF block (APP1's payload) holding only an orientation.
fn exif_orientation(orientation: u16) -> Vec<u8> {
    let mut exif = b"Exif\0\0II*\0".to_vec();
    exif.extend_from_slice(&8u32.to_le_bytes()); // the first IFD follows the header
    exif.extend_from_slice(&1u16.to_le_bytes()); // one entry
    exif.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    exif.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    exif.extend_from_slice(&1u32.to_le_bytes()); // one value
    exif.extend_from_slice(&orientation.to_le_bytes());
    exif.extend_from_slice(&[0, 0]);
    exif.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    exif
}
