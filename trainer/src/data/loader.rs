//! Batches for training and evaluation, read, augmented and laid out by worker threads while the
//! device works on the previous ones: each batch arrives as one buffer of bytes ready for the
//! upload (normalised on the device, `pixels_to_tensor`) with its labels, at least two batches
//! ahead of the step. Each image's augmentation is drawn from its own generator, seeded by the epoch's
//! seed and the image's place in the epoch, so the batches do not depend on which worker made
//! them: a resumed run sees exactly what an uninterrupted one saw.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc,
    },
};

use anyhow::Result;
use rand::{SeedableRng, rngs::StdRng};

use crate::data::{augment::Augmentation, loaded::LoadedSet};

/// One batch on the host, ready for the device.
#[derive(Debug, Clone, PartialEq)]
pub struct HostBatch {
    /// The interleaved RGB images of side `LoadedSet::size`, back to back.
    pub pixels: Vec<u8>,
    /// Which images of the set, in order.
    pub indices: Vec<usize>,
    /// Their labels μ and σ.
    pub mu: Vec<f32>,
    pub sigma: Vec<f32>,
    /// Their target distributions (101 bins each, back to back), when the set has them.
    pub targets: Option<Vec<f32>>,
}

impl HostBatch {
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// One worker per core: what training, validation and evaluation use unless told otherwise.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// The seed of the image at `position` of an epoch whose seed is `epoch_seed`.
fn image_seed(epoch_seed: u64, position: usize) -> u64 {
    epoch_seed ^ (position as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03)
}

fn make_batch(
    set: &LoadedSet,
    order: &[usize],
    start: usize,
    batch_size: usize,
    augment: &Augmentation,
    epoch_seed: u64,
) -> Result<HostBatch> {
    let end = (start + batch_size).min(order.len());
    let indices = order[start..end].to_vec();
    let mut pixels = Vec::with_capacity(indices.len() * set.size * set.size * 3);
    for (position, &index) in order.iter().enumerate().take(end).skip(start) {
        let image = set.pixels(index)?;
        if augment.is_identity() {
            pixels.extend_from_slice(&image);
        } else {
            let mut rng = StdRng::seed_from_u64(image_seed(epoch_seed, position));
            pixels.extend(augment.apply(&image, set.size, &mut rng));
        }
    }
    let pick = |v: &[f32]| indices.iter().map(|&i| v[i]).collect::<Vec<_>>();
    Ok(HostBatch {
        pixels,
        mu: pick(&set.mu),
        sigma: pick(&set.sigma),
        targets: set
            .targets
            .as_ref()
            .map(|t| indices.iter().flat_map(|&i| t[i].iter().copied()).collect()),
        indices,
    })
}

/// Hands the batches of `order` to `step` in order, prepared ahead by `workers` threads.
pub fn for_each_batch(
    set: &LoadedSet,
    order: &[usize],
    batch_size: usize,
    augment: &Augmentation,
    epoch_seed: u64,
    workers: usize,
    mut step: impl FnMut(HostBatch) -> Result<()>,
) -> Result<()> {
    let batches = order.len().div_ceil(batch_size);
    let workers = workers.clamp(1, batches.max(1));
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        // Room for two batches per worker ahead of the step (so at least two prefetched).
        let (sender, receiver) = mpsc::sync_channel::<(usize, Result<HostBatch>)>(2 * workers);
        for _ in 0..workers {
            let sender = sender.clone();
            let (next, stop) = (&next, &stop);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let b = next.fetch_add(1, Ordering::Relaxed);
                    if b >= batches {
                        break;
                    }
                    let batch =
                        make_batch(set, order, b * batch_size, batch_size, augment, epoch_seed);
                    if sender.send((b, batch)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(sender);
        let mut waiting = BTreeMap::new();
        let mut expected = 0;
        let result = (|| {
            for (b, batch) in receiver.iter() {
                waiting.insert(b, batch);
                while let Some(batch) = waiting.remove(&expected) {
                    step(batch?)?;
                    expected += 1;
                }
            }
            Ok(())
        })();
        // Stop the workers (and unblock any waiting on a full channel) before the scope joins.
        stop.store(true, Ordering::Relaxed);
        drop(receiver);
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::loaded::Images;

    fn set(n: usize) -> LoadedSet {
        LoadedSet {
            images: Images::Memory(
                (0..n)
                    .map(|i| vec![(i * 10 % 256) as u8; 4 * 4 * 3])
                    .collect(),
            ),
            targets: None,
            mu: (0..n).map(|i| i as f32).collect(),
            sigma: vec![1.0; n],
            size: 4,
            skipped: 0,
        }
    }

    #[test]
    fn batches_arrive_in_order_whatever_the_workers() {
        let set = set(23);
        let order: Vec<usize> = (0..23).rev().collect();
        let augment = Augmentation {
            brightness: 0.5,
            ..Augmentation::default()
        };
        let collect = |workers| {
            let mut seen = Vec::new();
            for_each_batch(&set, &order, 5, &augment, 7, workers, |b| {
                seen.push(b);
                Ok(())
            })
            .unwrap();
            seen
        };
        let one = collect(1);
        assert_eq!(one.len(), 5);
        assert_eq!(one[4].indices, vec![2, 1, 0]);
        assert_eq!(one[4].mu, vec![2.0, 1.0, 0.0]);
        assert_eq!(one[4].pixels.len(), 3 * 4 * 4 * 3);
        assert_eq!(one[4].targets, None);
        let flat: Vec<usize> = one.iter().flat_map(|b| b.indices.clone()).collect();
        assert_eq!(flat, order);
        assert_eq!(one, collect(4), "the same batches, augmentation included");
    }

    #[test]
    fn an_error_in_the_step_stops_the_epoch() {
        let set = set(40);
        let order: Vec<usize> = (0..40).collect();
        let mut steps = 0;
        let result = for_each_batch(&set, &order, 2, &Augmentation::none(), 1, 3, |_| {
            steps += 1;
            if steps == 3 {
                anyhow::bail!("the loss became NaN")
            }
            Ok(())
        });
        assert!(result.unwrap_err().to_string().contains("NaN"));
        assert_eq!(steps, 3);
    }
}
