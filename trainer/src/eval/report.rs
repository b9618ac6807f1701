//! Evaluating a stream: predictions over a data set and the metrics of them.

use anyhow::Result;
use dldl::{
    AGE_BINS,
    burn::tensor::Device,
    distribution::metrics::{AgeMetrics, MetricsReport},
    networks::preprocess::Normalization,
    networks::vgg::AgeNet,
};
use indicatif::ProgressBar;

use crate::{
    data::loaded::{LoadedSet, check_batch_size},
    device,
};

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
/// distribution. With `flip`, each image's distribution is averaged with its mirror image's.
pub fn evaluate(
    model: &AgeNet,
    set: &LoadedSet,
    normalization: &Normalization,
    batch_size: usize,
    flip: bool,
    device: &Device,
    progress: &ProgressBar,
) -> Result<Predictions> {
    let mut metrics = AgeMetrics::default();
    let mut predictions = Vec::with_capacity(set.len());
    let mut distributions = Vec::with_capacity(set.len());
    let indices: Vec<usize> = (0..set.len()).collect();
    check_batch_size(batch_size)?;
    progress.set_length(set.len() as u64);
    for chunk in indices.chunks(batch_size) {
        let (x, _, _) = set.batch(chunk, normalization, device, false)?;
        let mut p = model.distribution(x);
        if flip {
            let (mirrored, _, _) = set.batch(chunk, normalization, device, true)?;
            p = (p + model.distribution(mirrored)) / 2.0;
        }
        let rows = device::values(p, device)?;
        distributions.extend(rows.chunks_exact(AGE_BINS).map(<[f32]>::to_vec));
        let expected: Vec<f32> = rows
            .chunks_exact(AGE_BINS)
            .map(|row| row.iter().enumerate().map(|(a, p)| a as f32 * p).sum())
            .collect();
        let mu: Vec<f32> = chunk.iter().map(|&i| set.mu[i]).collect();
        let sigma: Vec<f32> = chunk.iter().map(|&i| set.sigma[i]).collect();
        metrics.update(&expected, &mu, &sigma);
        predictions.extend(expected);
        progress.inc(chunk.len() as u64);
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
