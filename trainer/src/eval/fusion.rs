//! `trainer fuse`: fits the fusion weights of several trained streams on a validation split,
//! minimising the ChaLearn ε-error of the fused expectation (MAE reported beside it).
//!
//! The weights are searched on a grid over the simplex (steps of 1/20 for up to three streams,
//! 1/10 beyond), every stream's distribution averaged over the image and its mirror image first.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use dldl::{
    burn::tensor::Device,
    distribution::metrics::{AgeMetrics, MetricsReport},
    distribution::{
        fusion::{FusionRule, fuse},
        sharpen,
    },
    face::pipeline::Stream,
};
use serde::{Deserialize, Serialize};

use crate::{
    artifacts::{card, models},
    data::load::LoadOptions,
    data::sets::DatasetSpec,
    eval::report::{calibration, evaluate},
    progress::bar,
};

/// What `trainer fuse` writes.
pub const FUSION_FILE: &str = "fusion.json";

/// A stream named so (and no file or folder of that name) is the published pretrained network
/// as it ships, which a fusion may keep beside the trained streams or leave out.
pub const PUBLISHED: &str = "pretrained";

/// Whether `model` names the published network rather than a trained stream.
pub fn is_published(model: &Path) -> bool {
    model == Path::new(PUBLISHED) && !model.exists()
}

/// The most streams the grid search takes.
const MAX_STREAMS: usize = 6;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FusedStream {
    pub model: PathBuf,
    pub architecture: String,
    pub weight: f32,
    /// The stream alone on the validation sets (with test-time flip).
    pub alone: MetricsReport,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FusionFit {
    pub rule: FusionRule,
    pub streams: Vec<FusedStream>,
    /// The fused estimate on the validation sets (with the temperature).
    pub fused: MetricsReport,
    pub valid: Vec<String>,
    /// Each trained stream's logits are divided by this before fusing (temperature scaling,
    /// fitted after the weights so that about 68 % of the true validation ages lie within ±1σ
    /// of the fused distribution), so that the fused spread is honest; `trainer export --fusion` stores it in the weights. The
    /// published network is left as it ships.
    #[serde(default = "no_temperature")]
    pub temperature: f32,
    /// The share of validation faces whose true age lies within ±1σ and ±2σ of the fused
    /// distribution, with the temperature.
    #[serde(default)]
    pub within_sigma: Option<[f64; 2]>,
}

fn no_temperature() -> f32 {
    1.0
}

/// The temperatures tried: 0.30 to 2.00 in steps of 0.02.
fn temperatures() -> impl Iterator<Item = f32> {
    (15..=100).map(|k| k as f32 * 0.02)
}

/// Each stream's distributions at `temperature` (the published network's left as they are).
pub fn at_temperature(
    distributions: &[Vec<Vec<f32>>],
    published: &[bool],
    temperature: f32,
) -> Vec<Vec<Vec<f32>>> {
    distributions
        .iter()
        .zip(published)
        .map(|(stream, &published)| {
            if published || temperature == 1.0 {
                stream.clone()
            } else {
                stream.iter().map(|p| sharpen(p, temperature)).collect()
            }
        })
        .collect()
}

/// The fused distribution of each image.
fn fused_distributions(
    distributions: &[Vec<Vec<f32>>],
    weights: &[f32],
    rule: FusionRule,
) -> Result<Vec<Vec<f32>>> {
    (0..distributions.first().map_or(0, Vec::len))
        .map(|i| {
            let streams: Vec<&[f32]> = distributions.iter().map(|d| d[i].as_slice()).collect();
            Ok(fuse(&streams, weights, rule)?.distribution)
        })
        .collect()
}

/// The share of true ages an honest σ holds within ±1σ (a Gaussian's).
pub const ONE_SIGMA: f64 = 0.6827;

/// The temperature (see [`FusionFit::temperature`]) whose fused distributions hold the true
/// validation ages within ±1σ as often as an honest σ would ([`ONE_SIGMA`]): the page shows
/// E[age] ± σ, so that is the promise to keep. Of equally close temperatures, the one nearest 1.
pub fn fit_temperature(
    distributions: &[Vec<Vec<f32>>],
    published: &[bool],
    weights: &[f32],
    rule: FusionRule,
    mu: &[f32],
) -> Result<f32> {
    let mut best = (1.0f32, f64::INFINITY);
    for t in temperatures() {
        let fused =
            fused_distributions(&at_temperature(distributions, published, t), weights, rule)?;
        let miss = (calibration(&fused, mu).within_1_sigma - ONE_SIGMA).abs();
        if miss < best.1 - 1e-9 || (miss < best.1 + 1e-9 && (t - 1.0).abs() < (best.0 - 1.0).abs())
        {
            best = (t, miss);
        }
    }
    Ok(best.0)
}

impl FusionFit {
    /// The weight fitted for `model` (a stream's folder or its model card), however the path is
    /// written.
    pub fn weight_of(&self, model: &Path) -> Option<f32> {
        let key = |p: &Path| {
            let p = if p.is_dir() {
                p.join(card::CARD_FILE)
            } else {
                p.to_path_buf()
            };
            std::fs::canonicalize(&p).unwrap_or(p)
        };
        self.streams
            .iter()
            .find(|s| key(&s.model) == key(model))
            .map(|s| s.weight)
    }

    /// The weight fitted for the published network, when the fusion weighed it.
    pub fn published_weight(&self) -> Option<f32> {
        self.streams
            .iter()
            .find(|s| is_published(&s.model))
            .map(|s| s.weight)
    }
}

/// Every weight vector on the simplex grid with `steps` steps per unit.
fn simplex_grid(streams: usize, steps: usize) -> Vec<Vec<f32>> {
    fn fill(prefix: &mut Vec<usize>, left: usize, slots: usize, out: &mut Vec<Vec<usize>>) {
        if slots == 1 {
            prefix.push(left);
            out.push(prefix.clone());
            prefix.pop();
            return;
        }
        for k in 0..=left {
            prefix.push(k);
            fill(prefix, left - k, slots - 1, out);
            prefix.pop();
        }
    }
    let mut out = Vec::new();
    fill(&mut Vec::new(), steps, streams, &mut out);
    out.into_iter()
        .map(|w| w.into_iter().map(|k| k as f32 / steps as f32).collect())
        .collect()
}

/// The metrics of the fused expectation under `weights`.
fn fused_metrics(
    distributions: &[Vec<Vec<f32>>],
    weights: &[f32],
    rule: FusionRule,
    mu: &[f32],
    sigma: &[f32],
) -> Result<MetricsReport> {
    let mut metrics = AgeMetrics::default();
    let mut expected = Vec::with_capacity(mu.len());
    for i in 0..mu.len() {
        let streams: Vec<&[f32]> = distributions.iter().map(|d| d[i].as_slice()).collect();
        expected.push(fuse(&streams, weights, rule)?.expected_age);
    }
    metrics.update(&expected, mu, sigma);
    metrics.report().context("no validation images")
}

/// Finds the weights minimising ε (then MAE) over the streams' distributions.
pub fn fit_weights(
    distributions: &[Vec<Vec<f32>>],
    rule: FusionRule,
    mu: &[f32],
    sigma: &[f32],
) -> Result<(Vec<f32>, MetricsReport)> {
    let k = distributions.len();
    if !(2..=MAX_STREAMS).contains(&k) {
        bail!("fusion takes 2 to {MAX_STREAMS} streams, not {k}");
    }
    let steps = if k <= 3 { 20 } else { 10 };
    let mut best: Option<(Vec<f32>, MetricsReport)> = None;
    for weights in simplex_grid(k, steps) {
        let report = fused_metrics(distributions, &weights, rule, mu, sigma)?;
        let better = best.as_ref().is_none_or(|(_, b)| {
            (report.epsilon_error, report.mae) < (b.epsilon_error - 1e-12, b.mae)
        });
        if better {
            best = Some((weights, report));
        }
    }
    Ok(best.expect("the grid is not empty"))
}

/// Evaluates each stream on the validation sets and fits the fusion weights.
pub fn fit_streams(
    models: &[PathBuf],
    valid: &[DatasetSpec],
    rule: FusionRule,
    options: &LoadOptions,
    device: &Device,
) -> Result<FusionFit> {
    let mut distributions = Vec::new();
    let mut streams = Vec::new();
    let mut labels: Option<(Vec<f32>, Vec<f32>)> = None;
    for model in models {
        let (network, size, normalization, architecture) = if is_published(model) {
            let published = Stream::pretrained(models::load_pretrained(&options.models, device)?);
            (
                published.network,
                published.input_size,
                published.normalization,
                "pretrained (published)".to_string(),
            )
        } else {
            let loaded = card::load_model(model, device)?;
            (
                loaded.model.for_inference(),
                loaded.card.model.input_size,
                loaded.card.model.normalization,
                loaded.card.model.architecture.to_string(),
            )
        };
        let set = crate::data::load::load_sets(valid, size, options, "valid")?;
        let progress = bar(
            options.quiet,
            "fuse     [{bar:30}] {pos}/{len} images {eta}",
        );
        let predictions = evaluate(&network, &set, &normalization, 64, true, device, &progress)?;
        progress.finish_and_clear();
        match &labels {
            None => labels = Some((set.mu.clone(), set.sigma.clone())),
            Some((mu, _)) if *mu != set.mu => bail!(
                "the streams see different validation images ({} and {}): use the same \
                 preprocessing for all",
                mu.len(),
                set.mu.len()
            ),
            Some(_) => {}
        }
        streams.push(FusedStream {
            model: model.clone(),
            architecture,
            weight: 0.0,
            alone: predictions.report,
        });
        distributions.push(predictions.distributions);
    }
    let (mu, sigma) = labels.context("no streams to fuse")?;
    let (weights, _) = fit_weights(&distributions, rule, &mu, &sigma)?;
    let published: Vec<bool> = models.iter().map(|m| is_published(m)).collect();
    let temperature = fit_temperature(&distributions, &published, &weights, rule, &mu)?;
    let calibrated = at_temperature(&distributions, &published, temperature);
    let fused = fused_metrics(&calibrated, &weights, rule, &mu, &sigma)?;
    let within = calibration(&fused_distributions(&calibrated, &weights, rule)?, &mu);
    for (stream, weight) in streams.iter_mut().zip(weights) {
        stream.weight = weight;
    }
    Ok(FusionFit {
        rule,
        streams,
        fused,
        valid: valid.iter().map(DatasetSpec::name).collect(),
        temperature,
        within_sigma: Some([within.within_1_sigma, within.within_2_sigma]),
    })
}

/// The fit as a small table.
pub fn describe(fit: &FusionFit) -> String {
    let mut out = format!("fusion ({:?}) on {} images\n", fit.rule, fit.fused.images);
    out.push_str("  weight  ε-error  MAE    stream\n");
    for s in &fit.streams {
        out.push_str(&format!(
            "  {:>6.2}  {:.4}   {:<6.3} {}\n",
            s.weight,
            s.alone.epsilon_error,
            s.alone.mae,
            s.model.display()
        ));
    }
    out.push_str(&format!(
        "  fused   {:.4}   {:<6.3}\n",
        fit.fused.epsilon_error, fit.fused.mae
    ));
    out.push_str(&format!(
        "  temperature {:.2}{}\n",
        fit.temperature,
        fit.within_sigma.map_or(String::new(), |[one, two]| format!(
            ": true ages within ±1σ {:.1} %, ±2σ {:.1} %",
            one * 100.0,
            two * 100.0
        ))
    ));
    out
}

/// Reads a fusion file.
pub fn load(path: &Path) -> Result<FusionFit> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a fusion file", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dldl::distribution::label::label_distribution;

    /// Streams whose spread is twice their error get a temperature below 1 that brings the
    /// fused ±1σ share near 68 %; the published network is left as it is.
    #[test]
    fn an_over_wide_spread_is_sharpened() {
        let mu: Vec<f32> = (0..400).map(|i| 10.0 + (i % 60) as f32).collect();
        // Errors of about ±3 years (σ 3), predicted with σ 6.
        let noise =
            |i: usize| (((i * 7919) % 1000) as f32 / 1000.0 - 0.5) * 2.0 * 3.0 * 3f32.sqrt();
        let stream: Vec<Vec<f32>> = mu
            .iter()
            .enumerate()
            .map(|(i, &m)| label_distribution(m + noise(i), 6.0).unwrap())
            .collect();
        let streams = vec![stream.clone(), stream];
        let t = fit_temperature(
            &streams,
            &[false, false],
            &[0.5, 0.5],
            FusionRule::Arithmetic,
            &mu,
        )
        .unwrap();
        assert!((0.15..0.5).contains(&t), "{t}");
        let calibrated = at_temperature(&streams, &[false, true], t);
        assert_eq!(
            calibrated[1], streams[1],
            "the published network is left as it is"
        );
        let fused = fused_distributions(
            &at_temperature(&streams, &[false, false], t),
            &[0.5, 0.5],
            FusionRule::Arithmetic,
        )
        .unwrap();
        let c = calibration(&fused, &mu);
        let (one, two) = (c.within_1_sigma, c.within_2_sigma);
        assert!((0.5..0.85).contains(&one) && two > 0.9, "{one} {two}");
    }

    #[test]
    fn the_grid_covers_the_simplex() {
        let grid = simplex_grid(3, 4);
        assert_eq!(grid.len(), 15);
        assert!(
            grid.iter()
                .all(|w| (w.iter().sum::<f32>() - 1.0).abs() < 1e-6)
        );
        assert!(grid.contains(&vec![0.25, 0.5, 0.25]));
    }

    /// Stream A reads every face 4 years too old, stream B 4 years too young, with a little
    /// noise of its own: each alone misses by ~4 years, the even mixture by little.
    #[test]
    fn fused_weights_beat_either_stream_alone() {
        let mu: Vec<f32> = (0..60).map(|i| 10.0 + i as f32).collect();
        let sigma = vec![3.0; mu.len()];
        let jitter = |i: usize| ((i * 7919) % 11) as f32 / 10.0 - 0.5;
        let a: Vec<Vec<f32>> = mu
            .iter()
            .enumerate()
            .map(|(i, &m)| label_distribution(m + 4.0 + jitter(i), 2.0).unwrap())
            .collect();
        let b: Vec<Vec<f32>> = mu
            .iter()
            .enumerate()
            .map(|(i, &m)| label_distribution(m - 4.0 + jitter(i + 3), 2.0).unwrap())
            .collect();
        let streams = vec![a, b];
        let alone =
            |w: Vec<f32>| fused_metrics(&streams, &w, FusionRule::Arithmetic, &mu, &sigma).unwrap();
        let (a_alone, b_alone) = (alone(vec![1.0, 0.0]), alone(vec![0.0, 1.0]));
        let (weights, fused) = fit_weights(&streams, FusionRule::Arithmetic, &mu, &sigma).unwrap();
        assert!(
            fused.epsilon_error < a_alone.epsilon_error.min(b_alone.epsilon_error) - 0.3,
            "{fused:?} vs {a_alone:?} / {b_alone:?}"
        );
        assert!(fused.mae < 1.0 && a_alone.mae > 3.0 && b_alone.mae > 3.0);
        assert!((weights[0] - 0.5).abs() <= 0.1, "{weights:?}");
        // An uninformative third stream gets no weight.
        let flat = vec![vec![1.0 / 101.0; 101]; mu.len()];
        let three = vec![streams[0].clone(), streams[1].clone(), flat];
        let (weights, _) = fit_weights(&three, FusionRule::Arithmetic, &mu, &sigma).unwrap();
        assert!(weights[2] <= 0.05, "{weights:?}");
    }
}
