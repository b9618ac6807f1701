//! Evaluating a stream: predictions over a data set and the metrics of them.

use dldl::{
    burn::tensor::Device,
    distribution::expected_ages,
    metrics::{AgeMetrics, MetricsReport},
    model::AgeNet,
    preprocess::Normalization,
};
use indicatif::ProgressBar;

use crate::data::LoadedSet;

/// Runs `model` (in inference mode) over `set` and returns the metrics and each image's E[age].
pub fn evaluate(
    model: &AgeNet,
    set: &LoadedSet,
    normalization: &Normalization,
    batch_size: usize,
    device: &Device,
    progress: &ProgressBar,
) -> (MetricsReport, Vec<f32>) {
    let mut metrics = AgeMetrics::default();
    let mut predictions = Vec::with_capacity(set.len());
    let indices: Vec<usize> = (0..set.len()).collect();
    progress.set_length(set.len() as u64);
    for chunk in indices.chunks(batch_size.max(1)) {
        let (x, _, _) = set.batch(chunk, normalization, device, None);
        let expected: Vec<f32> = expected_ages(model.distribution(x))
            .try_into_vec_as()
            .expect("predictions are readable");
        let mu: Vec<f32> = chunk.iter().map(|&i| set.mu[i]).collect();
        let sigma: Vec<f32> = chunk.iter().map(|&i| set.sigma[i]).collect();
        metrics.update(&expected, &mu, &sigma);
        predictions.extend(expected);
        progress.inc(chunk.len() as u64);
    }
    let report = metrics
        .report()
        .expect("a loaded set holds at least one image");
    (report, predictions)
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
