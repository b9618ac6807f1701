//! One way of spreading per-item work over the machine's cores: workers take the next index
//! from a shared counter, each with state of its own, and the results come back in index order.

use std::sync::atomic::{AtomicUsize, Ordering};

use indicatif::ProgressBar;

/// `work(&mut state, i)` for every `i` in `0..count`, on one thread per core, each thread with
/// its own `state` from `init`; ticks `progress` once per item. Results in index order.
pub fn map_indexed<S, T: Send>(
    count: usize,
    progress: &ProgressBar,
    init: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, usize) -> T + Sync,
) -> Vec<T> {
    progress.set_length(count as u64);
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut results: Vec<(usize, T)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers.min(count.max(1)))
            .map(|_| {
                scope.spawn(|| {
                    let mut state = init();
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            break;
                        }
                        done.push((i, work(&mut state, i)));
                        progress.inc(1);
                    }
                    done
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a worker thread panicked"))
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, t)| t).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_order_with_per_worker_state() {
        let bar = ProgressBar::hidden();
        let out = map_indexed(
            100,
            &bar,
            || 0usize,
            |seen, i| {
                *seen += 1;
                i * i
            },
        );
        assert_eq!(out, (0..100).map(|i| i * i).collect::<Vec<_>>());
        assert_eq!(bar.position(), 100);
        assert!(map_indexed(0, &bar, || (), |_, i| i).is_empty());
    }
}
