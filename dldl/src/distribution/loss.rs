//! The training losses, each a scalar averaged over the batch.
//!
//! Normalisation: every loss is summed over the 101 age bins of one image and then averaged over
//! the images of the batch ("batchmean"), so its value does not depend on the batch size and the
//! KL term is the true Kullback–Leibler divergence of each image, in nats.

use std::{fmt, str::FromStr};

use burn::tensor::{Tensor, activation::log_softmax};

use crate::{
    DldlError,
    distribution::expected_ages,
    distribution::label::{SIGMA_FLOOR, label_distributions},
};

/// Target probabilities below this are treated as 0 in `t·log t` (whose limit at 0 is 0).
const LOG_FLOOR: f32 = 1e-30;

/// KL(target ‖ prediction) = Σₐ t(a)·(log t(a) − log p(a)), the DLDL loss (Gao et al. 2017, eq. 7).
///
/// `target` is `[batch, 101]`, `log_prediction` the log-softmax of the network's logits. The
/// `t·log t` term does not depend on the network; it is kept so that the loss is 0 exactly when
/// the prediction equals the target.
pub fn kl_loss(target: Tensor<2>, log_prediction: Tensor<2>) -> Tensor<1> {
    let log_target = target.clone().clamp_min(LOG_FLOOR).log();
    (target * (log_target - log_prediction)).sum_dim(1).mean()
}

/// Softmax cross-entropy on the rounded age: −log p(round(μ)).
pub fn cross_entropy_loss(log_prediction: Tensor<2>, mu: Tensor<1>) -> Tensor<1> {
    let [batch] = mu.dims();
    // A label of σ below the floor is a one-hot on its nearest age, which is the rounded age.
    let sigma = Tensor::<1>::zeros([batch], &mu.device());
    let one_hot = label_distributions(mu.round(), sigma);
    -(one_hot * log_prediction).sum_dim(1).mean()
}

/// |E[age] − μ| averaged over the batch: DLDL-v2's expectation loss (Gao et al. 2018, eq. 6).
pub fn l1_expectation_loss(prediction: Tensor<2>, mu: Tensor<1>) -> Tensor<1> {
    (expected_ages(prediction) - mu).abs().mean()
}

/// The loss a stream is trained with.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LossKind {
    /// KL(target ‖ prediction) on the label distribution (DLDL).
    Kl,
    /// Softmax cross-entropy on the rounded age.
    CrossEntropy,
    /// KL + λ·|E[age] − μ| (DLDL-v2's joint loss; the paper uses λ = 1).
    KlL1 { lambda: f32 },
}

impl LossKind {
    /// The loss of a batch of logits `[batch, 101]` against labels (μ, σ) of shape `[batch]`.
    pub fn loss(&self, logits: Tensor<2>, mu: Tensor<1>, sigma: Tensor<1>) -> Tensor<1> {
        let log_prediction = log_softmax(logits, 1);
        match *self {
            LossKind::Kl => kl_loss(label_distributions(mu, sigma), log_prediction),
            LossKind::CrossEntropy => cross_entropy_loss(log_prediction, mu),
            LossKind::KlL1 { lambda } => {
                let target = label_distributions(mu.clone(), sigma);
                let kl = kl_loss(target, log_prediction.clone());
                kl + l1_expectation_loss(log_prediction.exp(), mu) * lambda
            }
        }
    }
}

impl fmt::Display for LossKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LossKind::Kl => write!(f, "kl"),
            LossKind::CrossEntropy => write!(f, "cross-entropy"),
            LossKind::KlL1 { lambda } => write!(f, "kl-l1 (λ = {lambda})"),
        }
    }
}

impl FromStr for LossKind {
    type Err = DldlError;

    /// `kl`, `cross-entropy` (or `ce`), `kl-l1` (λ = 1) or `kl-l1:λ`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "kl" => Ok(LossKind::Kl),
            "cross-entropy" | "ce" => Ok(LossKind::CrossEntropy),
            "kl-l1" => Ok(LossKind::KlL1 { lambda: 1.0 }),
            other => other
                .strip_prefix("kl-l1:")
                .and_then(|l| l.parse::<f32>().ok())
                .filter(|l| l.is_finite() && *l >= 0.0)
                .map(|lambda| LossKind::KlL1 { lambda })
                .ok_or_else(|| DldlError::UnknownLoss(s.to_string())),
        }
    }
}

// `cross_entropy_loss` builds its one-hot target from σ = 0, which is a one-hot only while the
// floor is far below one bin.
const _: () = assert!(SIGMA_FLOOR < 0.01);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AGE_BINS, distribution::label::label_distribution};
    use burn::tensor::{Device, TensorData};

    fn row(p: Vec<f32>, device: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(p, [1, AGE_BINS]), device)
    }

    fn scalar(t: Tensor<1>) -> f32 {
        t.into_scalar::<f32>()
    }

    #[test]
    fn kl_of_equal_distributions_is_zero() {
        let device = Device::flex();
        let p = label_distribution(33.0, 4.0).unwrap();
        let log_p: Vec<f32> = p.iter().map(|x| x.max(LOG_FLOOR).ln()).collect();
        let kl = scalar(kl_loss(row(p, &device), row(log_p, &device)));
        assert!(kl.abs() < 1e-5, "kl {kl}");
    }

    #[test]
    fn kl_of_one_hot_against_uniform_is_log_bins() {
        let device = Device::flex();
        let mut t = vec![0.0; AGE_BINS];
        t[10] = 1.0;
        let log_uniform = vec![-(AGE_BINS as f32).ln(); AGE_BINS];
        let kl = scalar(kl_loss(row(t, &device), row(log_uniform, &device)));
        assert!((kl - (AGE_BINS as f32).ln()).abs() < 1e-4, "kl {kl}");
    }

    #[test]
    fn cross_entropy_uses_rounded_age() {
        let device = Device::flex();
        // Uniform logits: −log(1/101) whatever the age.
        let logits = Tensor::<2>::zeros([2, AGE_BINS], &device);
        let mu = Tensor::<1>::from_floats([20.4, 70.6], &device);
        let sigma = Tensor::<1>::from_floats([3.0, 3.0], &device);
        let ce = scalar(LossKind::CrossEntropy.loss(logits, mu, sigma));
        assert!((ce - (AGE_BINS as f32).ln()).abs() < 1e-4);
        // A prediction sure of 20 costs nothing for μ = 20.4 (rounds to 20).
        let mut log_p = vec![-1e4; AGE_BINS];
        log_p[20] = 0.0;
        let ce = scalar(cross_entropy_loss(
            row(log_p, &device),
            Tensor::from_floats([20.4], &device),
        ));
        assert!(ce.abs() < 1e-5, "ce {ce}");
    }

    #[test]
    fn l1_is_distance_of_expectation() {
        let device = Device::flex();
        let mut p = vec![0.0; AGE_BINS];
        p[20] = 0.5;
        p[40] = 0.5; // E = 30
        let l1 = scalar(l1_expectation_loss(
            row(p, &device),
            Tensor::from_floats([36.0], &device),
        ));
        assert!((l1 - 6.0).abs() < 1e-4);
    }

    #[test]
    fn joint_loss_is_kl_plus_lambda_l1() {
        let device = Device::flex();
        let logits = || {
            Tensor::<2>::from_data(
                TensorData::new(
                    (0..AGE_BINS)
                        .map(|a| -(a as f32 - 50.0).abs() / 10.0)
                        .collect(),
                    [1, AGE_BINS],
                ),
                &device,
            )
        };
        let mu = || Tensor::<1>::from_floats([30.0], &device);
        let sigma = || Tensor::<1>::from_floats([5.0], &device);
        let kl = scalar(LossKind::Kl.loss(logits(), mu(), sigma()));
        let joint = scalar(LossKind::KlL1 { lambda: 2.0 }.loss(logits(), mu(), sigma()));
        let prediction = log_softmax(logits(), 1).exp();
        let l1 = scalar(l1_expectation_loss(prediction, mu()));
        assert!(l1 > 1.0);
        assert!(
            (joint - (kl + 2.0 * l1)).abs() < 1e-3,
            "{joint} vs {kl} + 2·{l1}"
        );
    }

    #[test]
    fn batch_mean_does_not_depend_on_batch_size() {
        let device = Device::flex();
        let logits = |n: usize| Tensor::<2>::ones([n, AGE_BINS], &device);
        let one = scalar(LossKind::Kl.loss(
            logits(1),
            Tensor::from_floats([25.0], &device),
            Tensor::from_floats([3.0], &device),
        ));
        let three = scalar(LossKind::Kl.loss(
            logits(3),
            Tensor::from_floats([25.0, 25.0, 25.0], &device),
            Tensor::from_floats([3.0, 3.0, 3.0], &device),
        ));
        assert!((one - three).abs() < 1e-5);
    }

    #[test]
    fn parses_names() {
        assert_eq!("kl".parse::<LossKind>(), Ok(LossKind::Kl));
        assert_eq!("CE".parse::<LossKind>(), Ok(LossKind::CrossEntropy));
        assert_eq!(
            "kl-l1:0.5".parse::<LossKind>(),
            Ok(LossKind::KlL1 { lambda: 0.5 })
        );
        assert!("mse".parse::<LossKind>().is_err());
        assert!("kl-l1:-1".parse::<LossKind>().is_err());
    }
}
