//! Evaluating a stream: predictions over a data set and the metrics of them.

use std::collections::VecDeque;

use anyhow::Result;
use dldl::{
    AGE_BINS,
    burn::tensor::{Device, Tensor},
    distribution::metrics::{AgeMetrics, MetricsReport},
    networks::preprocess::{Normalization, pixels_to_tensor},
    networks::vgg::AgeNet,
};
use indicatif::ProgressBar;

use crate::{
    data::augment::Augmentation,
    data::loaded::{LoadedSet, check_batch_size},
    data::loader::{self, HostBatch},
    device,
};

/// Batches evaluated on the device ahead of the one whose results are read.
pub const IN_FLIGHT: usize = 2;

/// What a stream predicted for every image of a set.
#[derive(Debug, Clone)]
pub struct Predictions {
    pub report: MetricsReport,
    /// E[age] per image.
    pub expected: Vec<f32>,
    /// p(age) per image.
    pub distributions: Vec<Vec<f32>>,
}

/// Runs `model` (in inference mode) over `set`: the metrics, each image's E[age] and
/// distribution. With `flip`, each image's distribution is averaged with its mirror image's: the
/// mirror images are made on the device, from the same upload, and go through the network in the
/// same batch.
///
/// The batches come from the loader's workers, prefetched; up to [`IN_FLIGHT`] batches are on the
/// device before the oldest one's results are read, so the device never waits for the read.
pub fn evaluate(
    model: &AgeNet,
    set: &LoadedSet,
    normalization: &Normalization,
    batch_size: usize,
    flip: bool,
    device: &Device,
    progress: &ProgressBar,
) -> Result<Predictions> {
    check_batch_size(batch_size)?;
    let mut metrics = AgeMetrics::default();
    let mut predictions = Vec::with_capacity(set.len());
    let mut distributions = Vec::with_capacity(set.len());
    let order: Vec<usize> = (0..set.len()).collect();
    progress.set_length(set.len() as u64);
    let mut in_flight: VecDeque<(Tensor<2>, HostBatch)> = VecDeque::new();
    let mut read = |p: Tensor<2>, batch: HostBatch| -> Result<()> {
        let rows = device::values(p, device)?;
        distributions.extend(rows.chunks_exact(AGE_BINS).map(<[f32]>::to_vec));
        let expected: Vec<f32> = rows
            .chunks_exact(AGE_BINS)
            .map(|row| row.iter().enumerate().map(|(a, p)| a as f32 * p).sum())
            .collect();
        metrics.update(&expected, &batch.mu, &batch.sigma);
        predictions.extend(expected);
        progress.inc(batch.len() as u64);
        Ok(())
    };
    loader::for_each_batch(
        set,
        &order,
        batch_size,
        &Augmentation::none(),
        0,
        loader::default_workers(),
        |mut batch| {
            let x = pixels_to_tensor(
                std::mem::take(&mut batch.pixels),
                set.size,
                normalization,
                device,
            );
            let p = if flip {
                let both = model.distribution(Tensor::cat(vec![x.clone(), x.flip([3])], 0));
                let [plain, mirrored] = <[Tensor<2>; 2]>::try_from(both.chunk(2, 0))
                    .expect("two halves of an even batch");
                (plain + mirrored) / 2.0
            } else {
                model.distribution(x)
            };
            in_flight.push_back((p, batch));
            if in_flight.len() > IN_FLIGHT {
                let (p, batch) = in_flight.pop_front().expect("a batch is in flight");
                read(p, batch)?;
            }
            Ok(())
        },
    )?;
    for (p, batch) in in_flight {
        read(p, batch)?;
    }
    let report = metrics
        .report()
        .expect("a loaded set holds at least one image");
    Ok(Predictions {
        report,
        expected: predictions,
        distributions,
    })
}

/// The metrics as a small table.
pub fn table(report: &MetricsReport) -> String {
    let mut out = format!(
        "images   {}\nMAE      {:.3}\nε-error  {:.4}\n",
        report.images, report.mae, report.epsilon_error
    );
    for (k, cs) in report.cs.iter().enumerate() {
        out.push_str(&format!("CS@{:<2}    {:.1} %\n", k + 1, cs * 100.0));
    }
    out
}

/// MAE over the images whose true age lies in one decade.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DecadeMae {
    /// First age of the decade: 0, 10, …, 100.
    pub from: usize,
    pub images: usize,
    pub mae: f64,
}

/// MAE per decade of true age (decades without images left out).
pub fn per_decade(predictions: &[f32], mu: &[f32]) -> Vec<DecadeMae> {
    let mut sums = [(0usize, 0.0f64); 11];
    for (&p, &m) in predictions.iter().zip(mu) {
        let decade = ((m / 10.0).floor() as usize).min(10);
        sums[decade].0 += 1;
        sums[decade].1 += f64::from((p - m).abs());
    }
    sums.iter()
        .enumerate()
        .filter(|(_, (n, _))| *n > 0)
        .map(|(d, &(n, total))| DecadeMae {
            from: d * 10,
            images: n,
            mae: total / n as f64,
        })
        .collect()
}

/// How honest the predicted spread is: the share of faces whose true age lies within one and
/// two standard deviations of the predicted distribution around its mean (about 68 % and 95 %
/// for an honest σ), and the mean σ.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Calibration {
    pub within_1_sigma: f64,
    pub within_2_sigma: f64,
    pub mean_sigma: f64,
}

/// [`Calibration`] of the predicted `distributions` against the true ages `mu` (a
/// distribution that is not one counts as missing the age).
pub fn calibration(distributions: &[Vec<f32>], mu: &[f32]) -> Calibration {
    let (mut one, mut two, mut sigmas) = (0usize, 0usize, 0.0f64);
    for (p, &m) in distributions.iter().zip(mu) {
        let (Ok(e), Ok(sigma)) = (
            dldl::distribution::expected_age(p),
            dldl::distribution::std_dev(p),
        ) else {
            continue;
        };
        let error = (e - m).abs();
        one += usize::from(error <= sigma);
        two += usize::from(error <= 2.0 * sigma);
        sigmas += f64::from(sigma);
    }
    let n = mu.len().max(1) as f64;
    Calibration {
        within_1_sigma: one as f64 / n,
        within_2_sigma: two as f64 / n,
        mean_sigma: sigmas / n,
    }
}

/// The per-decade MAE as a small table.
pub fn decade_table(decades: &[DecadeMae]) -> String {
    let mut out = String::from(
        "MAE by true age
",
    );
    for d in decades {
        out.push_str(&format!(
            "  {:>3}–{:<3} {:>6.2}  ({} images)\n",
            d.from,
            d.from + 9,
            d.mae,
            d.images
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// σ's calibration counts the faces within ±1σ and ±2σ of each prediction.
    #[test]
    fn calibration_counts_the_ages_within_one_and_two_sigma() {
        let p = dldl::distribution::label::label_distribution(40.0, 5.0).unwrap();
        let sigma = dldl::distribution::std_dev(&p).unwrap();
        let e = dldl::distribution::expected_age(&p).unwrap();
        // True ages 0.5σ, 1.5σ and 3σ away: one within ±1σ, two within ±2σ.
        let mu = [e + 0.5 * sigma, e - 1.5 * sigma, e + 3.0 * sigma];
        let c = calibration(&vec![p; 3], &mu);
        assert!((c.within_1_sigma - 1.0 / 3.0).abs() < 1e-9, "{c:?}");
        assert!((c.within_2_sigma - 2.0 / 3.0).abs() < 1e-9, "{c:?}");
        assert!((c.mean_sigma - f64::from(sigma)).abs() < 1e-6, "{c:?}");
    }

    #[test]
    fn decades_split_by_true_age() {
        let decades = per_decade(&[12.0, 18.0, 35.0, 100.0], &[10.0, 19.0, 31.0, 100.0]);
        assert_eq!(decades.len(), 3);
        assert_eq!((decades[0].from, decades[0].images), (10, 2));
        assert!((decades[0].mae - 1.5).abs() < 1e-9);
        assert_eq!((decades[1].from, decades[1].mae), (30, 4.0));
        assert_eq!((decades[2].from, decades[2].mae), (100, 0.0));
    }
}
