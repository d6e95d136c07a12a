//! Work spread over a fixed number of threads: pods added or removed together, probes from many pods.

use anyhow::{Context, Result};
use rayon::prelude::*;

/// `f` over `items` on a pool of `workers` threads (at most that many calls at once); results in the
/// order of `items`. The work here waits on processes and sockets, not the CPU, so the pool is sized by
/// how much may run at once rather than by the number of cores.
pub fn map<T: Send, R: Send>(
    items: Vec<T>,
    workers: usize,
    f: impl Fn(T) -> R + Sync + Send,
) -> Result<Vec<R>> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers.max(1))
        .thread_name(|i| format!("lab-worker-{i}"))
        .build()
        .context("starting worker threads")?;
    Ok(pool.install(|| items.into_par_iter().map(f).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn results_keep_the_input_order() {
        let out = map((0..100).collect(), 4, |i: u32| i * 3).unwrap();
        assert_eq!(out, (0..100).map(|i| i * 3).collect::<Vec<_>>());
    }

    #[test]
    fn no_more_than_workers_run_at_once() {
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        map((0..24).collect(), 3, |_: u32| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
            running.fetch_sub(1, Ordering::SeqCst);
        })
        .unwrap();
        assert!(most.load(Ordering::SeqCst) <= 3, "{most:?}");
    }
}
