//! Label distributions: the Gaussian N(μ, σ) over the integer ages, renormalised over the bins
//! (DLDL, Gao et al. 2017, eq. 2).

use burn::tensor::{Device, Int, Tensor, activation::softmax};

use crate::{AGE_BINS, DldlError, MAX_AGE};

/// σ is raised to this floor before the Gaussian is built. As σ → 0 the distribution tends to a
/// one-hot at the nearest age (an even split between two ages equally near μ); the floor keeps
/// that limit finite without visibly changing any σ a label would really carry.
pub const SIGMA_FLOOR: f32 = 1e-3;

/// Checks that (μ, σ) describe a label on the age grid.
pub fn validate_label(mu: f32, sigma: f32) -> Result<(), DldlError> {
    if !mu.is_finite() || !(0.0..=MAX_AGE as f32).contains(&mu) {
        return Err(DldlError::AgeOutOfRange(mu));
    }
    if !sigma.is_finite() || sigma < 0.0 {
        return Err(DldlError::InvalidSigma(sigma));
    }
    Ok(())
}

/// The label distribution of one image: p(a) ∝ exp(−(a − μ)² / 2σ²) over a = 0..=100, summing to 1.
///
/// Computed in log space with the maximum subtracted, so even a tiny σ gives a finite one-hot
/// instead of 0/0.
pub fn label_distribution(mu: f32, sigma: f32) -> Result<Vec<f32>, DldlError> {
    validate_label(mu, sigma)?;
    let sigma = f64::from(sigma.max(SIGMA_FLOOR));
    let mu = f64::from(mu);
    let log_p: Vec<f64> = (0..AGE_BINS)
        .map(|a| {
            let d = a as f64 - mu;
            -d * d / (2.0 * sigma * sigma)
        })
        .collect();
    let max = log_p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let unnormalised: Vec<f64> = log_p.iter().map(|l| (l - max).exp()).collect();
    let total: f64 = unnormalised.iter().sum();
    Ok(unnormalised.iter().map(|p| (p / total) as f32).collect())
}

/// The ages 0..=100 as a `[1, 101]` float tensor.
pub fn age_grid(device: &Device) -> Tensor<2> {
    Tensor::<1, Int>::arange(0..AGE_BINS as i64, device)
        .float()
        .reshape([1, AGE_BINS])
}

/// The batched label distributions `[batch, 101]` for `mu`, `sigma` of shape `[batch]`.
///
/// The renormalisation over the bins is a softmax of the Gaussian's log density, which is the
/// same log-space computation as [`label_distribution`]. Labels are assumed validated.
pub fn label_distributions(mu: Tensor<1>, sigma: Tensor<1>) -> Tensor<2> {
    let [batch] = mu.dims();
    let device = mu.device();
    let mu = mu.reshape([batch, 1]);
    let sigma = sigma.clamp_min(SIGMA_FLOOR).reshape([batch, 1]);
    let diff = age_grid(&device) - mu; // [batch, 101]
    let log_density = -(diff.clone() * diff) / (sigma.clone() * sigma * 2.0);
    softmax(log_density, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distribution::{expected_age, std_dev};

    #[test]
    fn sums_to_one_and_peaks_at_mu() {
        for (mu, sigma) in [(30.0, 5.0), (0.0, 3.0), (100.0, 8.0), (47.3, 0.7)] {
            let p = label_distribution(mu, sigma).unwrap();
            assert_eq!(p.len(), AGE_BINS);
            let sum: f32 = p.iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "sum {sum}");
            let argmax = (0..AGE_BINS)
                .max_by(|&a, &b| p[a].total_cmp(&p[b]))
                .unwrap();
            assert_eq!(argmax, mu.round() as usize);
        }
    }

    #[test]
    fn interior_label_has_mean_mu_and_std_sigma() {
        let p = label_distribution(42.0, 4.0).unwrap();
        assert!((expected_age(&p).unwrap() - 42.0).abs() < 1e-3);
        assert!((std_dev(&p).unwrap() - 4.0).abs() < 1e-3);
    }

    #[test]
    fn edge_label_is_truncated_and_renormalised() {
        // At μ = 0 only the right half of the Gaussian lies on the grid: the mean moves inwards
        // to σ·√(2/π) (the half-normal mean), up to the discretisation.
        let p = label_distribution(0.0, 10.0).unwrap();
        let mean = expected_age(&p).unwrap();
        let half_normal = 10.0 * (2.0 / std::f32::consts::PI).sqrt();
        assert!((mean - half_normal).abs() < 0.6, "mean {mean}");
    }

    #[test]
    fn zero_sigma_is_one_hot_and_ties_split() {
        let p = label_distribution(30.0, 0.0).unwrap();
        assert_eq!(p[30], 1.0);
        assert_eq!(p.iter().filter(|&&x| x > 0.0).count(), 1);
        let p = label_distribution(30.5, 0.0).unwrap();
        assert!((p[30] - 0.5).abs() < 1e-6 && (p[31] - 0.5).abs() < 1e-6);
    }

    #[test]
    fn rejects_bad_labels() {
        assert_eq!(
            label_distribution(30.0, -1.0),
            Err(DldlError::InvalidSigma(-1.0))
        );
        assert_eq!(
            label_distribution(101.0, 1.0),
            Err(DldlError::AgeOutOfRange(101.0))
        );
        assert!(label_distribution(-0.5, 1.0).is_err());
        assert!(label_distribution(f32::NAN, 1.0).is_err());
        assert!(label_distribution(20.0, f32::INFINITY).is_err());
    }

    #[test]
    fn tensor_version_matches_scalar_version() {
        let device = Device::flex();
        let mus = [12.0f32, 55.5, 99.0, 0.0];
        let sigmas = [2.0f32, 6.5, 0.0, 3.0];
        let batch = label_distributions(
            Tensor::from_floats(mus, &device),
            Tensor::from_floats(sigmas, &device),
        );
        let values: Vec<f32> = batch.try_into_vec_as().unwrap();
        for (i, (&mu, &sigma)) in mus.iter().zip(&sigmas).enumerate() {
            let expected = label_distribution(mu, sigma).unwrap();
            for (a, e) in expected.iter().enumerate() {
                let got = values[i * AGE_BINS + a];
                assert!((got - e).abs() < 1e-5, "row {i} age {a}: {got} vs {e}");
            }
        }
    }
}
