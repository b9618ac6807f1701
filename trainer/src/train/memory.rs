//! Whether a training batch fits in the CPU's memory, checked before the first step.
//!
//! On the CPU a batch too large for the memory does not fail with an error: the allocation that
//! does not fit aborts the process. So before a run trains, the step is measured on a copy of the
//! network: the process's peak resident memory (Linux's `VmHWM`, reset through
//! `/proc/self/clear_refs`) across a forward and backward pass of one image and of three. That
//! gives the step's fixed part (the gradients of the weights) and the part per image. A batch
//! whose step would need more than the memory available (`MemAvailable`) is refused in one line
//! that names the batch size that fits, before anything is written: the run's last checkpoint
//! stays as it was. Elsewhere than on Linux, and on GPUs, nothing is checked.

use std::fs;

use anyhow::{Result, bail};
use dldl::{
    burn::tensor::{Device, Tensor},
    distribution::loss::LossKind,
    networks::preprocess::pixels_to_tensor,
    networks::vgg::AgeNetConfig,
};

/// A field of `/proc/self/status` or `/proc/meminfo`, in bytes.
fn kib_field(path: &str, name: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line[name.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The peak resident memory of one forward and backward pass of `images` images, above
/// `baseline`; `None` where Linux's counters cannot be read or reset. The allocator keeps some
/// of what an earlier probe freed, so every probe is measured from the same baseline, taken
/// before the first.
fn step_peak(
    config: &AgeNetConfig,
    loss: LossKind,
    images: usize,
    device: &Device,
    baseline: u64,
) -> Result<Option<u64>> {
    if fs::write("/proc/self/clear_refs", "5").is_err() {
        return Ok(None);
    }
    {
        let autodiff = device.clone().autodiff();
        let model = config.init(&autodiff)?;
        let size = config.input_size;
        let pixels: Vec<u8> = (0..images * size * size * 3)
            .map(|i| (i % 251) as u8)
            .collect();
        let x = pixels_to_tensor(pixels, size, &config.normalization, &autodiff);
        let mu = Tensor::<1>::full([images], 30.0, &autodiff);
        let sigma = Tensor::<1>::full([images], 3.0, &autodiff);
        let grads = loss.loss(model.forward(x), mu, sigma).backward();
        drop(grads);
    }
    Ok(kib_field("/proc/self/status", "VmHWM:").map(|peak| peak.saturating_sub(baseline)))
}

fn gib(bytes: f64) -> String {
    format!("{:.1} GB", bytes / 1e9)
}

/// Refuses a batch whose training step would not fit in the memory available, on the CPU (see
/// the module documentation).
pub fn check_batch_fits(
    config: &AgeNetConfig,
    loss: LossKind,
    batch_size: usize,
    device: &Device,
) -> Result<()> {
    if *device != Device::flex() || batch_size <= 3 {
        return Ok(());
    }
    // The network is made afresh for the probe: a clone would share the run's batch-norm
    // statistics, which a training-mode pass updates.
    let Some(baseline) = kib_field("/proc/self/status", "VmRSS:") else {
        return Ok(());
    };
    let (Some(one), Some(three)) = (
        step_peak(config, loss, 1, device, baseline)?,
        step_peak(config, loss, 3, device, baseline)?,
    ) else {
        return Ok(());
    };
    let Some(available) = kib_field("/proc/meminfo", "MemAvailable:") else {
        return Ok(());
    };
    let per_image = (three.saturating_sub(one) / 2).max(1) as f64;
    let fixed = (one as f64 - per_image).max(0.0);
    let need = fixed + per_image * batch_size as f64;
    // A margin for what the measurement misses (the allocator's own pools, the loader's
    // batches in flight).
    let usable = available as f64 * 0.8;
    if need <= usable {
        return Ok(());
    }
    let fits = ((usable - fixed) / per_image).floor().max(0.0) as usize;
    // The largest power of two that fits, as batch sizes usually are.
    let suggestion = if fits == 0 { 0 } else { 1 << fits.ilog2() };
    let what = format!(
        "a batch of {batch_size} at {s}×{s} px needs about {} for {}'s training step on the \
         CPU, and {} is available",
        gib(need),
        config.architecture,
        gib(available as f64),
        s = config.input_size,
    );
    if suggestion == 0 {
        bail!("{what}: not even one image fits; use a smaller --input-size (input_size)");
    }
    bail!("{what}: use --batch-size {suggestion} (batch_size) or less, or a smaller --input-size");
}
