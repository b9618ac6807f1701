//! Weight averaging (a "model soup", Wortsman et al. 2022): streams of one network fine-tuned
//! from the same start, averaged parameter by parameter into one stream of the same size, which
//! costs the page nothing more than one of them. Streams trained from different starts do not
//! average into a working network; `trainer fuse` combines those.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::{
    module::{Module, ModuleMapper, ModuleVisitor, Param},
    tensor::{Device, Tensor},
};
use dldl::networks::vgg::AgeNet;

use crate::{
    artifacts::card::{CARD_FILE, ModelCard, WEIGHTS_FILE, load_model, save_weights},
    files,
};

/// Every float parameter, flattened, in the order the module visits them.
#[derive(Default)]
struct Collect(Vec<Tensor<1>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.val().flatten::<1>(0, D - 1));
    }
}

/// Adds the collected tensors of the other streams to each parameter, in the same order, and
/// divides by the number of streams.
struct Mean {
    others: Vec<Vec<Tensor<1>>>,
    at: usize,
}

impl ModuleMapper for Mean {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let at = self.at;
        self.at += 1;
        let others = &self.others;
        let n = (others.len() + 1) as f32;
        param.map(|t| {
            let shape = t.shape();
            let mut sum = t.clone();
            for other in others {
                sum = sum.add(other[at].clone().reshape(shape.clone()));
            }
            sum.div_scalar(n)
        })
    }
}

/// The parameter-wise mean of `models`, which must be one network (architecture, input size,
/// parameter shapes).
pub fn average(models: Vec<AgeNet>) -> AgeNet {
    let mut models = models.into_iter();
    let first = models.next().expect("at least one model");
    let others: Vec<Vec<Tensor<1>>> = models
        .map(|m| {
            let mut collect = Collect::default();
            m.visit(&mut collect);
            collect.0
        })
        .collect();
    first.map(&mut Mean { others, at: 0 })
}

/// Averages the streams in `runs` (run folders or their model.json) into `out` (model.bpk and
/// model.json: the first stream's card, with the streams averaged named and no validation
/// figures, since the average was not validated). Returns the card written.
pub fn average_runs(runs: &[PathBuf], out: &Path, device: &Device) -> Result<ModelCard> {
    if runs.len() < 2 {
        bail!("averaging needs two or more streams (--model, once each)");
    }
    let mut loaded = Vec::new();
    for run in runs {
        loaded.push(load_model(run, device)?);
    }
    let first = loaded[0].card.clone();
    for (run, model) in runs.iter().zip(&loaded).skip(1) {
        if model.card.model != first.model {
            bail!(
                "{} is a {} at {} px, {} a {} at {} px: only streams of one network, fine-tuned \
                 from the same start, can be averaged; fuse the others (`trainer fuse`)",
                run.display(),
                model.card.model.architecture,
                model.card.model.input_size,
                runs[0].display(),
                first.model.architecture,
                first.model.input_size
            );
        }
    }
    let model = average(loaded.into_iter().map(|l| l.model).collect());
    let mut card = first;
    card.validation = None;
    card.averaged_from = Some(runs.iter().map(|r| r.display().to_string()).collect());
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    save_weights(model, &out.join(WEIGHTS_FILE))?;
    files::write(&out.join(CARD_FILE), &serde_json::to_vec_pretty(&card)?)?;
    Ok(card)
}

#[cfg(test)]
mod tests {
    use dldl::networks::vgg::{AgeNetConfig, Architecture};

    use super::*;

    fn parameters(model: &AgeNet) -> Vec<f32> {
        let mut collect = Collect::default();
        model.visit(&mut collect);
        collect
            .0
            .into_iter()
            .flat_map(|t| t.into_data().try_to_vec::<f32>().unwrap())
            .collect()
    }

    #[test]
    fn the_average_is_the_mean_of_every_parameter() {
        let device = Device::flex();
        let config = AgeNetConfig::new(Architecture::TinyAgeNet).with_input_size(32);
        let a = config.init(&device).unwrap();
        let b = config.init(&device).unwrap();
        let (pa, pb) = (parameters(&a), parameters(&b));
        assert_ne!(pa, pb, "two initialisations differ");
        let mean = parameters(&average(vec![a, b]));
        assert_eq!(mean.len(), pa.len());
        for ((m, x), y) in mean.iter().zip(&pa).zip(&pb) {
            assert!((m - (x + y) / 2.0).abs() <= 1e-6 * (1.0 + x.abs() + y.abs()));
        }
    }
}
