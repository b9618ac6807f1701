//! `trainer bench`: training throughput of each stream on a device (forward, backward and an
//! Adam step on random batches), inference throughput, and how many images per second the
//! batch workers prepare with DLDL-v2's augmentation, so that one can see whether data loading
//! keeps the device busy.

use std::time::Instant;

use anyhow::{Result, bail};
use dldl::{
    burn::{
        module::Module,
        optim::{AdamConfig, GradientsParams},
        tensor::{Device, Tensor},
    },
    distribution::loss::LossKind,
    networks::preprocess::pixels_to_tensor,
    networks::vgg::{AgeNet, AgeNetConfig, Architecture},
};
use indicatif::ProgressBar;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;

use crate::{
    data::loaded::{Images, LoadedSet},
    data::loader,
    train::run::LOSS_READ_EVERY,
};

#[derive(Debug, Clone, Serialize)]
pub struct StreamThroughput {
    pub architecture: String,
    pub parameters: usize,
    pub input_size: usize,
    pub batch_size: usize,
    /// Training steps (forward, backward, Adam) per second × batch size.
    pub train_images_per_second: f64,
    pub inference_images_per_second: f64,
    /// The same with the normalisations folded into the convs, as `eval`, `predict` and the
    /// page run a stream ([`dldl::networks::vgg::AgeNet::for_inference`]).
    pub inference_folded_images_per_second: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub device: String,
    pub streams: Vec<StreamThroughput>,
    /// Images per second the batch workers read and augment (DLDL-v2's augmentation).
    pub loader_images_per_second: f64,
    pub loader_workers: usize,
}

fn random_images(count: usize, size: usize, rng: &mut StdRng) -> Vec<Vec<u8>> {
    (0..count)
        .map(|_| (0..size * size * 3).map(|_| rng.random::<u8>()).collect())
        .collect()
}

pub fn run(
    architectures: &[Architecture],
    input_size: usize,
    batch_size: usize,
    steps: usize,
    device: &Device,
    device_name: &str,
    progress: &ProgressBar,
) -> Result<BenchReport> {
    if steps == 0 || batch_size == 0 {
        bail!("--steps and --batch-size must be at least 1");
    }
    let mut rng = StdRng::seed_from_u64(7);
    let mu: Vec<f32> = (0..batch_size)
        .map(|_| rng.random_range(1.0..90.0))
        .collect();
    let mut streams = Vec::new();
    progress.set_length((architectures.len() * (2 * steps + 2)) as u64);
    for &architecture in architectures {
        // The pretrained network takes its own chip size whatever --input-size says.
        let input_size = if architecture == Architecture::Pretrained {
            architecture.default_input_size()
        } else {
            input_size
        };
        let config = AgeNetConfig::for_stream(architecture, input_size);
        // One step's images as the loader hands them over: u8, back to back; each step uploads
        // them and normalises them on the device.
        let pixels = random_images(batch_size, input_size, &mut rng).concat();
        let upload = |device: &Device| {
            pixels_to_tensor(pixels.clone(), input_size, &config.normalization, device)
        };
        let autodiff = device.clone().autodiff();
        let mut model = config.init(&autodiff)?;
        let parameters = model.trainable_params();
        let mut optim = AdamConfig::new().init();
        let mu_t = Tensor::<1>::from_floats(mu.as_slice(), &autodiff);
        let sigma_t = Tensor::<1>::full([batch_size], 3.0, &autodiff);
        // The losses are summed on the device and read every LOSS_READ_EVERY steps and at the
        // end, as the training loop does.
        let mut pending: Option<Tensor<1>> = None;
        let mut step = |model: dldl::networks::vgg::AgeNet, read: bool| {
            let loss = LossKind::KlL1 { lambda: 1.0 }.loss(
                model.forward(upload(&autodiff)),
                mu_t.clone(),
                sigma_t.clone(),
            );
            let detached = loss.clone().detach();
            let sum = match pending.take() {
                Some(sum) => sum + detached,
                None => detached,
            };
            if read {
                let _: f32 = sum.into_scalar();
            } else {
                pending = Some(sum);
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            optim.step(1e-4, model, grads)
        };
        // One warm-up step compiles the kernels.
        model = step(model, true);
        progress.inc(1);
        let started = Instant::now();
        for i in 1..=steps {
            model = step(model, i % LOSS_READ_EVERY == 0 || i == steps);
            progress.inc(1);
        }
        let train = (steps * batch_size) as f64 / started.elapsed().as_secs_f64();

        let valid = model.valid();
        let inference_rate = |network: &AgeNet, progress: &ProgressBar| -> Result<f64> {
            let _: Vec<f32> = network.distribution(upload(device)).try_into_vec_as()?;
            let started = Instant::now();
            for _ in 0..steps {
                let _: Vec<f32> = network.distribution(upload(device)).try_into_vec_as()?;
                progress.inc(1);
            }
            Ok((steps * batch_size) as f64 / started.elapsed().as_secs_f64())
        };
        progress.inc(1);
        let inference = inference_rate(&valid, progress)?;
        let inference_folded = inference_rate(&valid.for_inference(), &ProgressBar::hidden())?;
        streams.push(StreamThroughput {
            architecture: architecture.to_string(),
            parameters,
            input_size,
            batch_size,
            train_images_per_second: train,
            inference_images_per_second: inference,
            inference_folded_images_per_second: inference_folded,
        });
    }

    // The batch workers on in-memory chips with the full augmentation.
    let count = 512;
    let set = LoadedSet {
        images: Images::Memory(random_images(count, input_size, &mut rng)),
        targets: None,
        mu: vec![30.0; count],
        sigma: vec![3.0; count],
        size: input_size,
        skipped: 0,
    };
    let order: Vec<usize> = (0..count).collect();
    let workers = loader::default_workers();
    let started = Instant::now();
    loader::for_each_batch(
        &set,
        &order,
        batch_size,
        &crate::data::augment::Augmentation::dldl_v2(),
        1,
        workers,
        |_| Ok(()),
    )?;
    let loader_rate = count as f64 / started.elapsed().as_secs_f64();
    Ok(BenchReport {
        device: device_name.to_string(),
        streams,
        loader_images_per_second: loader_rate,
        loader_workers: workers,
    })
}

/// The report as a Markdown table.
pub fn markdown(report: &BenchReport) -> String {
    let mut out = format!(
        "Device: {}\n\n| stream | parameters | input | batch | train images/s | inference images/s \
         | inference, folded |\n|---|---:|---:|---:|---:|---:|---:|\n",
        report.device
    );
    for s in &report.streams {
        out.push_str(&format!(
            "| {} | {:.2} M | {} px | {} | {:.1} | {:.1} | {:.1} |\n",
            s.architecture,
            s.parameters as f64 / 1e6,
            s.input_size,
            s.batch_size,
            s.train_images_per_second,
            s.inference_images_per_second,
            s.inference_folded_images_per_second
        ));
    }
    out.push_str(&format!(
        "\nBatch workers ({} threads, DLDL-v2 augmentation): {:.0} images/s.\n",
        report.loader_workers, report.loader_images_per_second
    ));
    out
}
