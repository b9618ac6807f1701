//! Summaries of a distribution over the age grid: its expectation (the DLDL prediction,
//! ŷ = Σ p(a)·a) and its standard deviation (the spread shown to the user); and, in its
//! modules, the rest of the maths over the age grid.

pub mod fusion;
pub mod label;
pub mod loss;
pub mod metrics;

use burn::tensor::Tensor;

use crate::{AGE_BINS, DldlError, distribution::label::age_grid};

/// Checks that `p` is a distribution over the 101 ages; it need not be normalised.
fn checked_total(p: &[f32]) -> Result<f64, DldlError> {
    if p.len() != AGE_BINS {
        return Err(DldlError::WrongBins {
            expected: AGE_BINS,
            found: p.len(),
        });
    }
    if p.iter().any(|x| !x.is_finite() || *x < 0.0) {
        return Err(DldlError::InvalidDistribution);
    }
    let total: f64 = p.iter().map(|&x| f64::from(x)).sum();
    if total <= 0.0 {
        return Err(DldlError::InvalidDistribution);
    }
    Ok(total)
}

/// E[age] = Σ p(a)·a, after normalising `p`.
pub fn expected_age(p: &[f32]) -> Result<f32, DldlError> {
    let total = checked_total(p)?;
    let mean: f64 = p
        .iter()
        .enumerate()
        .map(|(a, &x)| a as f64 * f64::from(x))
        .sum::<f64>()
        / total;
    Ok(mean as f32)
}

/// √(Σ p(a)·(a − E[age])²), after normalising `p`.
pub fn std_dev(p: &[f32]) -> Result<f32, DldlError> {
    let total = checked_total(p)?;
    let mean = f64::from(expected_age(p)?);
    let var: f64 = p
        .iter()
        .enumerate()
        .map(|(a, &x)| {
            let d = a as f64 - mean;
            d * d * f64::from(x)
        })
        .sum::<f64>()
        / total;
    Ok(var.sqrt() as f32)
}

/// The ages with the highest probability, most probable first.
/// `p` raised to `1 / temperature` and renormalised: what dividing the logits that gave `p` by
/// `temperature` gives (sharper below 1, flatter above; 1 changes nothing).
pub fn sharpen(p: &[f32], temperature: f32) -> Vec<f32> {
    let inverse = 1.0 / f64::from(temperature);
    // In log space from the largest bin, so that small probabilities do not underflow first.
    let logs: Vec<f64> = p
        .iter()
        .map(|&x| f64::from(x).max(1e-300).ln() * inverse)
        .collect();
    let top = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let raised: Vec<f64> = logs.iter().map(|l| (l - top).exp()).collect();
    let sum: f64 = raised.iter().sum();
    raised.iter().map(|r| (r / sum) as f32).collect()
}

pub fn top_ages(p: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut ranked: Vec<(usize, f32)> = p.iter().copied().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(k);
    ranked
}

/// Batched E[age] of distributions `[batch, 101]` (assumed normalised) → `[batch]`.
pub fn expected_ages(p: Tensor<2>) -> Tensor<1> {
    let [batch, _] = p.dims();
    let grid = age_grid(&p.device());
    (p * grid).sum_dim(1).reshape([batch])
}

/// Batched standard deviation of distributions `[batch, 101]` (assumed normalised) → `[batch]`.
pub fn std_devs(p: Tensor<2>) -> Tensor<1> {
    let [batch, _] = p.dims();
    let grid = age_grid(&p.device());
    let mean = expected_ages(p.clone()).reshape([batch, 1]);
    let diff = grid - mean;
    (p * diff.clone() * diff)
        .sum_dim(1)
        .reshape([batch])
        .clamp_min(0.0)
        .sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharpening_narrows_a_distribution_and_one_changes_nothing() {
        let p = label::label_distribution(40.0, 6.0).unwrap();
        let same = sharpen(&p, 1.0);
        assert!(p.iter().zip(&same).all(|(a, b)| (a - b).abs() < 1e-6));
        // A Gaussian at temperature T is a Gaussian with σ·√T (before the grid's edges).
        let sharp = sharpen(&p, 0.25);
        assert!(
            (std_dev(&sharp).unwrap() - 3.0).abs() < 0.05,
            "{}",
            std_dev(&sharp).unwrap()
        );
        assert!((expected_age(&sharp).unwrap() - 40.0).abs() < 0.01);
        assert!((sharp.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    use burn::tensor::Device;

    #[test]
    fn one_hot_has_its_age_and_no_spread() {
        let mut p = vec![0.0; AGE_BINS];
        p[37] = 1.0;
        assert_eq!(expected_age(&p).unwrap(), 37.0);
        assert_eq!(std_dev(&p).unwrap(), 0.0);
    }

    #[test]
    fn two_point_distribution() {
        // Half at 20, half at 40: mean 30, std 10.
        let mut p = vec![0.0; AGE_BINS];
        p[20] = 2.0;
        p[40] = 2.0; // unnormalised on purpose
        assert!((expected_age(&p).unwrap() - 30.0).abs() < 1e-6);
        assert!((std_dev(&p).unwrap() - 10.0).abs() < 1e-6);
        assert_eq!(top_ages(&p, 1)[0].1, 2.0);
    }

    #[test]
    fn rejects_wrong_shapes_and_values() {
        assert_eq!(
            expected_age(&[1.0; 81]),
            Err(DldlError::WrongBins {
                expected: AGE_BINS,
                found: 81
            })
        );
        assert_eq!(
            expected_age(&[0.0; AGE_BINS]),
            Err(DldlError::InvalidDistribution)
        );
        let mut p = vec![0.01; AGE_BINS];
        p[3] = f32::NAN;
        assert!(std_dev(&p).is_err());
    }

    #[test]
    fn tensor_versions_match() {
        let device = Device::flex();
        let mut p = vec![0.0f32; 2 * AGE_BINS];
        p[20] = 0.5;
        p[40] = 0.5;
        p[AGE_BINS + 90] = 1.0;
        let t = Tensor::<2>::from_data(burn::tensor::TensorData::new(p, [2, AGE_BINS]), &device);
        let means: Vec<f32> = expected_ages(t.clone()).try_into_vec_as().unwrap();
        let stds: Vec<f32> = std_devs(t).try_into_vec_as().unwrap();
        assert!((means[0] - 30.0).abs() < 1e-4 && (means[1] - 90.0).abs() < 1e-4);
        assert!((stds[0] - 10.0).abs() < 1e-3 && stds[1].abs() < 1e-3);
    }
}
