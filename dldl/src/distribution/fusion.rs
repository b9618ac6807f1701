//! Fusion of several streams' distributions on the 0..=100 grid into one.
//!
//! The fused distribution is the weighted mixture Σᵢ wᵢ·pᵢ / Σᵢ wᵢ (the two-stream DLDL average),
//! or, with [`FusionRule::Geometric`], the normalised weighted geometric mean Πᵢ pᵢ^wᵢ, which
//! rewards the ages the streams agree on.

use serde::{Deserialize, Serialize};

use crate::{
    AGE_BINS, DldlError,
    distribution::{expected_age, std_dev},
};

/// How the streams' distributions are combined.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FusionRule {
    #[default]
    Arithmetic,
    Geometric,
}

impl FusionRule {
    /// The rules by name, as written in TOML, JSON and on the command line.
    pub const NAMES: [&'static str; 2] = ["arithmetic", "geometric"];

    pub fn name(self) -> &'static str {
        match self {
            FusionRule::Arithmetic => "arithmetic",
            FusionRule::Geometric => "geometric",
        }
    }
}

impl std::fmt::Display for FusionRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for FusionRule {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "arithmetic" => Ok(FusionRule::Arithmetic),
            "geometric" => Ok(FusionRule::Geometric),
            other => Err(format!(
                "unknown fusion rule {other:?}; use {}",
                FusionRule::NAMES.join(" or ")
            )),
        }
    }
}

/// A fused distribution with its summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fused {
    pub distribution: Vec<f32>,
    pub expected_age: f32,
    pub sigma: f32,
}

/// Fuses `streams` (each 101 probabilities) with `weights` (one per stream, ≥ 0, not all 0).
pub fn fuse(streams: &[&[f32]], weights: &[f32], rule: FusionRule) -> Result<Fused, DldlError> {
    if streams.is_empty() {
        return Err(DldlError::NoStreams);
    }
    if weights.len() != streams.len() {
        return Err(DldlError::FusionWeights {
            streams: streams.len(),
            weights: weights.len(),
        });
    }
    if weights.iter().any(|w| !w.is_finite() || *w < 0.0) || weights.iter().sum::<f32>() <= 0.0 {
        return Err(DldlError::InvalidFusionWeights);
    }
    for p in streams {
        // Validates shape and values of every stream.
        expected_age(p)?;
    }
    let total_weight: f64 = weights.iter().map(|&w| f64::from(w)).sum();
    let mut fused = vec![0.0f64; AGE_BINS];
    match rule {
        FusionRule::Arithmetic => {
            for (p, &w) in streams.iter().zip(weights) {
                let sum: f64 = p.iter().map(|&x| f64::from(x)).sum();
                for (f, &x) in fused.iter_mut().zip(p.iter()) {
                    *f += f64::from(w) * f64::from(x) / sum;
                }
            }
        }
        FusionRule::Geometric => {
            // In log space, with a floor so that one stream's zero does not veto an age outright.
            for (p, &w) in streams.iter().zip(weights) {
                let sum: f64 = p.iter().map(|&x| f64::from(x)).sum();
                for (f, &x) in fused.iter_mut().zip(p.iter()) {
                    *f += f64::from(w) / total_weight * (f64::from(x) / sum).max(1e-30).ln();
                }
            }
            let max = fused.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            fused.iter_mut().for_each(|f| *f = (*f - max).exp());
        }
    }
    let sum: f64 = fused.iter().sum();
    let distribution: Vec<f32> = fused.iter().map(|f| (f / sum) as f32).collect();
    Ok(Fused {
        expected_age: expected_age(&distribution)?,
        sigma: std_dev(&distribution)?,
        distribution,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distribution::label::label_distribution;

    #[test]
    fn a_rule_reads_back_from_its_name_as_serde_writes_it() {
        for name in FusionRule::NAMES {
            let rule: FusionRule = name.parse().unwrap();
            assert_eq!(rule.to_string(), name);
            assert_eq!(serde_json::to_string(&rule).unwrap(), format!("\"{name}\""));
        }
        assert!(
            "mean"
                .parse::<FusionRule>()
                .unwrap_err()
                .contains("arithmetic or geometric")
        );
    }

    #[test]
    fn arithmetic_fusion_is_the_weighted_mixture() {
        let a = label_distribution(20.0, 2.0).unwrap();
        let b = label_distribution(60.0, 2.0).unwrap();
        let fused = fuse(&[&a, &b], &[3.0, 1.0], FusionRule::Arithmetic).unwrap();
        assert!((fused.expected_age - 30.0).abs() < 1e-3);
        let sum: f32 = fused.distribution.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5);
        // Mixture variance: Σw(σ² + μ²) − m² = 4 + (0.75·400 + 0.25·3600) − 900.
        assert!((fused.sigma - 304f32.sqrt()).abs() < 1e-2);
    }

    #[test]
    fn geometric_fusion_of_equal_gaussians_lands_between() {
        let a = label_distribution(30.0, 4.0).unwrap();
        let b = label_distribution(40.0, 4.0).unwrap();
        let fused = fuse(&[&a, &b], &[1.0, 1.0], FusionRule::Geometric).unwrap();
        // √(p₁·p₂) of two equal-σ Gaussians is a Gaussian at the midpoint with the same σ.
        assert!((fused.expected_age - 35.0).abs() < 1e-3);
        assert!((fused.sigma - 4.0).abs() < 1e-2);
    }

    #[test]
    fn single_stream_passes_through() {
        let a = label_distribution(45.0, 3.0).unwrap();
        let fused = fuse(&[&a], &[0.7], FusionRule::Arithmetic).unwrap();
        for (x, y) in fused.distribution.iter().zip(&a) {
            assert!((x - y).abs() < 1e-6);
        }
    }

    #[test]
    fn rejects_mismatched_inputs() {
        let a = label_distribution(45.0, 3.0).unwrap();
        assert_eq!(
            fuse(&[], &[], FusionRule::Arithmetic),
            Err(DldlError::NoStreams)
        );
        assert!(matches!(
            fuse(&[&a], &[1.0, 1.0], FusionRule::Arithmetic),
            Err(DldlError::FusionWeights { .. })
        ));
        assert_eq!(
            fuse(&[&a], &[0.0], FusionRule::Arithmetic),
            Err(DldlError::InvalidFusionWeights)
        );
        assert!(matches!(
            fuse(&[&a, &a[..81]], &[1.0, 1.0], FusionRule::Geometric),
            Err(DldlError::WrongBins { .. })
        ));
    }
}
