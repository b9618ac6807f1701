//! One training step, on one device or data-parallel over several.
//!
//! With several devices the batch is split into contiguous parts, one per device, in order. Each
//! device runs its part's forward and backward pass on its own copy of the model
//! (`Module::fork`), its loss weighted by its share of the batch, so that the gradients summed
//! over the devices are those of the whole batch's mean loss. burn's optimiser then sums each
//! parameter's gradients from every device and updates it (`ModuleOptimizer::step_multi` over
//! `MultiGradientsParams`, the machinery burn-train's multi-device strategy runs on), and the
//! updated model is brought back to the first device.
//!
//! The parts are issued from one thread, in order. GPU backends run their kernels
//! asynchronously, so the devices compute at the same time; on the CPU the parts simply run one
//! after the other. Batch norm normalises each part by its own statistics (as PyTorch's
//! `DataParallel` does without `SyncBatchNorm`); its running statistics take each part's update
//! in turn. A network without batch norm takes the same step on any number of devices, up to
//! float rounding (the tests hold it to that).

use std::ops::Range;

use dldl::{
    AGE_BINS,
    burn::{
        module::Module,
        optim::{GradientsParams, ModuleOptimizer, MultiGradientsParams},
        tensor::{Device, Tensor, TensorData, activation::log_softmax},
    },
    distribution::loss::{LossKind, kl_loss},
    networks::preprocess::{Normalization, pixels_to_tensor},
    networks::vgg::AgeNet,
};

use crate::data::loader::HostBatch;

/// `len` items in at most `parts` contiguous ranges, as even as possible (the first ones one
/// larger); no empty range, so fewer ranges when `len < parts`.
pub fn split(len: usize, parts: usize) -> Vec<Range<usize>> {
    let parts = parts.clamp(1, len.max(1));
    let (base, extra) = (len / parts, len % parts);
    let mut start = 0;
    (0..parts)
        .map(|i| {
            let end = start + base + usize::from(i < extra);
            let range = start..end;
            start = end;
            range
        })
        .filter(|r| !r.is_empty())
        .collect()
}

/// What a step needs besides the model, the optimiser and the batch.
pub struct StepContext<'a> {
    /// The devices (with autodiff), the model's own first.
    pub devices: &'a [Device],
    pub learning_rate: f64,
    pub loss: LossKind,
    pub size: usize,
    pub normalization: &'a Normalization,
}

/// The mean loss of images `range` of `batch` on `model`, on `device`.
fn part_loss(
    model: &AgeNet,
    batch: &HostBatch,
    range: Range<usize>,
    context: &StepContext<'_>,
    device: &Device,
) -> Tensor<1> {
    let image = context.size * context.size * 3;
    let pixels = batch.pixels[range.start * image..range.end * image].to_vec();
    let x = pixels_to_tensor(pixels, context.size, context.normalization, device);
    let logits = model.forward(x);
    match &batch.targets {
        Some(rows) => {
            let rows = rows[range.start * AGE_BINS..range.end * AGE_BINS].to_vec();
            let target =
                Tensor::<2>::from_data(TensorData::new(rows, [range.len(), AGE_BINS]), device);
            kl_loss(target, log_softmax(logits, 1))
        }
        None => {
            let mu = Tensor::<1>::from_floats(&batch.mu[range.clone()], device);
            let sigma = Tensor::<1>::from_floats(&batch.sigma[range], device);
            context.loss.loss(logits, mu, sigma)
        }
    }
}

/// One optimiser step on `batch`; see the module documentation. Returns the updated model, on
/// the first device, and the batch's summed loss (its mean × its images), detached, there too.
pub fn step(
    model: AgeNet,
    optim: &mut ModuleOptimizer,
    batch: &HostBatch,
    context: &StepContext<'_>,
) -> (AgeNet, Tensor<1>) {
    let first = &context.devices[0];
    let images = batch.len();
    if context.devices.len() == 1 {
        let loss = part_loss(&model, batch, 0..images, context, first);
        let summed = loss.clone().detach() * images as f32;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        return (optim.step(context.learning_rate, model, grads), summed);
    }
    let mut grads = MultiGradientsParams::default();
    let mut summed: Option<Tensor<1>> = None;
    for (range, device) in split(images, context.devices.len())
        .into_iter()
        .zip(context.devices)
    {
        let copy = model.clone().fork(device);
        let share = range.len() as f32 / images as f32;
        let count = range.len() as f32;
        let loss = part_loss(&copy, batch, range, context, device);
        let part = (loss.clone().detach() * count).to_device(first);
        summed = Some(match summed {
            Some(sum) => sum + part,
            None => part,
        });
        let part_grads = GradientsParams::from_grads((loss * share).backward(), &copy);
        grads.grads.push((part_grads, device.clone()));
    }
    let model = optim
        .step_multi(context.learning_rate, model, grads)
        .fork(first);
    (model, summed.expect("a batch holds at least one image"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dldl::{
        burn::{module::ModuleVisitor, module::Param, optim::AdamConfig},
        networks::vgg::{AgeNetConfig, Architecture},
    };

    #[test]
    fn parts_cover_the_batch_in_order() {
        assert_eq!(split(7, 3), vec![0..3, 3..5, 5..7]);
        assert_eq!(split(2, 4), vec![0..1, 1..2]);
        assert_eq!(split(5, 1), vec![0..5]);
        assert_eq!(split(6, 2), vec![0..3, 3..6]);
    }

    /// Every float parameter's values, in the module's order.
    struct Values(Vec<f32>);

    impl ModuleVisitor for Values {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0
                .extend(param.val().try_into_vec_as::<f32>().expect("readable"));
        }
    }

    fn values(model: &AgeNet) -> Vec<f32> {
        let mut visitor = Values(Vec::new());
        model.visit(&mut visitor);
        visitor.0
    }

    /// Two steps of Adam on the same batches, on `devices`, from the same start.
    fn train(devices: &[Device], start: &AgeNet, batches: &[HostBatch]) -> (Vec<f32>, Vec<f32>) {
        let mut model = start.clone().fork(&devices[0]);
        let mut optim = AdamConfig::new().init();
        let normalization = Architecture::Pretrained.normalization();
        let context = StepContext {
            devices,
            learning_rate: 1e-3,
            loss: LossKind::KlL1 { lambda: 1.0 },
            size: 64,
            normalization: &normalization,
        };
        let mut losses = Vec::new();
        for batch in batches {
            let (next, loss) = step(model, &mut optim, batch, &context);
            model = next;
            losses.push(loss.into_scalar::<f32>());
        }
        (values(&model), losses)
    }

    #[test]
    fn a_data_parallel_step_equals_one_step_on_the_whole_batch() {
        // The pretrained network has no batch norm, so its step is the same on any number of
        // devices up to rounding. This machine's CPU is one burn device: the two "devices" are
        // the same, but each part still takes the multi-device path (fork, per-device
        // gradients, step_multi).
        let cpu = Device::flex().autodiff();
        let start = AgeNetConfig::for_stream(Architecture::Pretrained, 64)
            .init(&cpu)
            .unwrap();
        let batches: Vec<HostBatch> = (0..2)
            .map(|b| HostBatch {
                pixels: (0..5 * 64 * 64 * 3)
                    .map(|i| ((i * 31 + b * 17) % 251) as u8)
                    .collect(),
                indices: (0..5).collect(),
                mu: vec![3.0, 25.0, 41.5, 60.0, 88.0],
                sigma: vec![2.0, 3.0, 4.0, 5.0, 6.0],
                targets: None,
            })
            .collect();
        let (one, one_losses) = train(std::slice::from_ref(&cpu), &start, &batches);
        let (two, two_losses) = train(&[cpu.clone(), cpu.clone()], &start, &batches);
        let (three, _) = train(&[cpu.clone(), cpu.clone(), cpu], &start, &batches);
        assert_eq!(one.len(), two.len());
        for (a, b) in one_losses.iter().zip(&two_losses) {
            assert!((a - b).abs() <= 1e-5 * a.abs(), "loss {a} against {b}");
        }
        let moved: f32 = one
            .iter()
            .zip(values(&start).iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(moved > 1e-4, "the steps moved the weights ({moved})");
        for (other, name) in [(&two, "two"), (&three, "three")] {
            let worst = one
                .iter()
                .zip(other)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            // The summed gradients differ from the whole batch's by rounding alone, and so do
            // the weights after Adam (whose ε keeps tiny gradients from being blown up).
            assert!(worst < 1e-5, "{name} devices: weights differ by {worst}");
        }
    }
}
