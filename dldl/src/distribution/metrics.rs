//! Evaluation metrics, accumulated batch by batch.
//!
//! - MAE: mean |ŷ − μ|.
//! - ε-error (ChaLearn LAP): mean of 1 − exp(−(ŷ − μ)² / 2σ²), with σ = 0 replaced by 1e-10.
//! - CS@k (cumulative score): the fraction of images with |ŷ − μ| ≤ k years.

use serde::{Deserialize, Serialize};

/// The σ that replaces a zero σ in the ε-error, as the ChaLearn evaluation script does.
pub const EPSILON_SIGMA_FLOOR: f64 = 1e-10;

/// The largest k reported for CS@k.
pub const MAX_CS_K: usize = 10;

/// The ChaLearn ε-error of one prediction.
pub fn epsilon_error(prediction: f32, mu: f32, sigma: f32) -> f64 {
    let sigma = if sigma == 0.0 {
        EPSILON_SIGMA_FLOOR
    } else {
        f64::from(sigma)
    };
    let d = f64::from(prediction) - f64::from(mu);
    1.0 - (-d * d / (2.0 * sigma * sigma)).exp()
}

/// Mean absolute error.
#[derive(Debug, Default, Clone)]
pub struct Mae {
    sum: f64,
    count: usize,
}

impl Mae {
    pub fn update(&mut self, predictions: &[f32], mu: &[f32]) {
        for (p, m) in predictions.iter().zip(mu) {
            self.sum += (f64::from(*p) - f64::from(*m)).abs();
            self.count += 1;
        }
    }

    /// `None` before any image was seen.
    pub fn value(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}

/// Mean ChaLearn ε-error.
#[derive(Debug, Default, Clone)]
pub struct EpsilonError {
    sum: f64,
    count: usize,
}

impl EpsilonError {
    pub fn update(&mut self, predictions: &[f32], mu: &[f32], sigma: &[f32]) {
        for ((p, m), s) in predictions.iter().zip(mu).zip(sigma) {
            self.sum += epsilon_error(*p, *m, *s);
            self.count += 1;
        }
    }

    pub fn value(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}

/// Cumulative scores CS@0..=10.
#[derive(Debug, Default, Clone)]
pub struct CumulativeScore {
    within: [usize; MAX_CS_K + 1],
    count: usize,
}

impl CumulativeScore {
    pub fn update(&mut self, predictions: &[f32], mu: &[f32]) {
        for (p, m) in predictions.iter().zip(mu) {
            let error = (f64::from(*p) - f64::from(*m)).abs();
            for (k, within) in self.within.iter_mut().enumerate() {
                if error <= k as f64 {
                    *within += 1;
                }
            }
            self.count += 1;
        }
    }

    /// CS@k, for k in 0..=10.
    pub fn value(&self, k: usize) -> Option<f64> {
        (self.count > 0 && k <= MAX_CS_K).then(|| self.within[k] as f64 / self.count as f64)
    }
}

/// All metrics of an evaluation, accumulated together.
#[derive(Debug, Default, Clone)]
pub struct AgeMetrics {
    pub mae: Mae,
    pub epsilon: EpsilonError,
    pub cs: CumulativeScore,
}

/// The finished figures of an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsReport {
    pub images: usize,
    pub mae: f64,
    pub epsilon_error: f64,
    /// CS@1..=10, index 0 holding CS@1.
    pub cs: Vec<f64>,
}

impl AgeMetrics {
    pub fn update(&mut self, predictions: &[f32], mu: &[f32], sigma: &[f32]) {
        self.mae.update(predictions, mu);
        self.epsilon.update(predictions, mu, sigma);
        self.cs.update(predictions, mu);
    }

    /// `None` before any image was seen.
    pub fn report(&self) -> Option<MetricsReport> {
        Some(MetricsReport {
            images: self.mae.count,
            mae: self.mae.value()?,
            epsilon_error: self.epsilon.value()?,
            cs: (1..=MAX_CS_K)
                .map(|k| self.cs.value(k))
                .collect::<Option<_>>()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_guess_has_zero_error() {
        assert_eq!(epsilon_error(30.0, 30.0, 4.0), 0.0);
        assert_eq!(epsilon_error(30.0, 30.0, 0.0), 0.0);
    }

    #[test]
    fn epsilon_at_one_sigma() {
        // 1 − e^(−1/2) at one σ away.
        let e = epsilon_error(35.0, 30.0, 5.0);
        assert!((e - (1.0 - (-0.5f64).exp())).abs() < 1e-12);
    }

    #[test]
    fn zero_sigma_makes_any_miss_a_full_error() {
        assert_eq!(epsilon_error(30.01, 30.0, 0.0), 1.0);
    }

    #[test]
    fn accumulates_over_batches() {
        let mut m = AgeMetrics::default();
        assert!(m.report().is_none());
        m.update(&[10.0, 20.0], &[12.0, 20.0], &[2.0, 3.0]);
        m.update(&[50.0], &[41.0], &[0.0]);
        let r = m.report().unwrap();
        assert_eq!(r.images, 3);
        assert!((r.mae - 11.0 / 3.0).abs() < 1e-12);
        let expected_eps = ((1.0 - (-0.5f64).exp()) + 0.0 + 1.0) / 3.0;
        assert!((r.epsilon_error - expected_eps).abs() < 1e-12);
        // Errors 2, 0, 9: CS@1 = 1/3, CS@2 = 2/3, CS@9 = 1.
        assert!((r.cs[0] - 1.0 / 3.0).abs() < 1e-12);
        assert!((r.cs[1] - 2.0 / 3.0).abs() < 1e-12);
        assert!((r.cs[7] - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(r.cs[8], 1.0);
        assert_eq!(r.cs.len(), MAX_CS_K);
    }
}
