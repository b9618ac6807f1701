//! Batches for training, read and augmented by worker threads while the device trains on the
//! previous ones. Each image's augmentation is drawn from its own generator, seeded by the epoch's
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

/// One batch on the host: interleaved RGB images back to back, and their labels.
#[derive(Debug, Clone, PartialEq)]
pub struct HostBatch {
    pub images: Vec<Vec<u8>>,
    pub indices: Vec<usize>,
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
    let mut images = Vec::with_capacity(end - start);
    for (position, &index) in order.iter().enumerate().take(end).skip(start) {
        let pixels = set.pixels(index)?;
        let mut rng = StdRng::seed_from_u64(image_seed(epoch_seed, position));
        images.push(augment.apply(&pixels, set.size, &mut rng));
    }
    Ok(HostBatch {
        images,
        indices: order[start..end].to_vec(),
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
        // Room for two batches per worker ahead of the training step.
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
