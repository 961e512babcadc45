//! Tokio peer of bench/bench_sync.c: the coordination toolkit's figures,
//! same shapes, same output lines.  Usage: sync FIGURE [--n N] [--workers W]
//! (W = 0, the default: current_thread runtime; W >= 1: multi_thread).
//!
//!   mpsc_throughput   4 producer tasks send N/4 u64 each into one
//!                     mpsc::channel(1024); one consumer task receives all.
//!                     msgs_per_s = N / elapsed
//!   mutex_contention  100 tasks x N lock/unlock of one tokio::sync::Mutex,
//!                     each incrementing the guarded counter.
//!                     locks_per_s = 100 * N / elapsed
//!   semaphore_pair    one task, N x (acquire(1).await, drop the permit) on
//!                     an uncontended Semaphore.  ns_per_pair
//!   channel_memory    N idle mpsc::channel::<u64>(16) kept alive (sender
//!                     and receiver): RSS bytes per channel
//!   waiter_memory     N tasks waiting in Semaphore::acquire on a semaphore
//!                     with no permits: RSS bytes per waiting task (incl. the
//!                     task)
//!
//! Timed figures run twice in the same runtime and report the second run.

use pollen_bench_tokio::{arg, runtime};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, Mutex, Semaphore};

fn ns_since(t0: Instant) -> u64 {
    t0.elapsed().as_nanos() as u64
}

fn rss_bytes() -> i64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let res: i64 = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    res * 4096
}

async fn mpsc_throughput(n: usize) -> u64 {
    let mut elapsed = 0;
    for _ in 0..2 {
        let t0 = Instant::now();
        let (tx, mut rx) = mpsc::channel::<u64>(1024);
        let per = n / 4;
        for p in 0..4 {
            let tx = tx.clone();
            tokio::spawn(async move {
                for i in 0..per {
                    tx.send((p * per + i) as u64).await.unwrap();
                }
            });
        }
        drop(tx);
        let mut got = 0usize;
        let mut sum = 0u64;
        while let Some(v) = rx.recv().await {
            got += 1;
            sum = sum.wrapping_add(v);
        }
        let n4 = (per * 4) as u64;
        assert_eq!(got, per * 4);
        assert_eq!(sum, n4 * (n4 - 1) / 2);
        elapsed = ns_since(t0);
    }
    elapsed
}

async fn mutex_contention(tasks: usize, n: usize) -> u64 {
    let mut elapsed = 0;
    for _ in 0..2 {
        let m = Arc::new(Mutex::new(0usize));
        let t0 = Instant::now();
        let mut hs = Vec::with_capacity(tasks);
        for _ in 0..tasks {
            let m = m.clone();
            hs.push(tokio::spawn(async move {
                for _ in 0..n {
                    *m.lock().await += 1;
                }
            }));
        }
        for h in hs {
            h.await.unwrap();
        }
        assert_eq!(*m.lock().await, tasks * n);
        elapsed = ns_since(t0);
    }
    elapsed
}

async fn semaphore_pair(n: usize) -> u64 {
    let s = Semaphore::new(1);
    let mut elapsed = 0;
    for _ in 0..2 {
        let t0 = Instant::now();
        for _ in 0..n {
            let p = s.acquire().await.unwrap();
            drop(p);
        }
        elapsed = ns_since(t0);
    }
    elapsed
}

static WAITING: AtomicUsize = AtomicUsize::new(0);

fn main() {
    let fig = std::env::args().nth(1).unwrap_or_default();
    let n: usize = arg("--n", 0);
    let rt = runtime();
    let rate = |k: usize, ns: u64| k as f64 * 1e9 / ns as f64;
    match fig.as_str() {
        "mpsc_throughput" => {
            let n = if n > 0 { n } else { 4_000_000 };
            let ns = rt.block_on(async move { tokio::spawn(mpsc_throughput(n)).await.unwrap() });
            println!("mpsc_throughput n={} ns={} msgs_per_s={:.0}", n, ns, rate(n, ns));
        }
        "mutex_contention" => {
            let (t, k) = (100, if n > 0 { n } else { 1000 });
            let ns = rt.block_on(async move { tokio::spawn(mutex_contention(t, k)).await.unwrap() });
            println!("mutex_contention tasks={} locks={} ns={} locks_per_s={:.0}", t, k, ns, rate(t * k, ns));
        }
        "semaphore_pair" => {
            let n = if n > 0 { n } else { 10_000_000 };
            let ns = rt.block_on(async move { tokio::spawn(semaphore_pair(n)).await.unwrap() });
            println!("semaphore_pair n={} ns={} ns_per_pair={:.2}", n, ns, ns as f64 / n as f64);
        }
        "channel_memory" => {
            let n = if n > 0 { n } else { 100_000 };
            // The vector is written (so resident) before the first reading,
            // as pollen's program does with its arrays of handles.
            let mut keep: Vec<Option<(mpsc::Sender<u64>, mpsc::Receiver<u64>)>> =
                (0..n).map(|_| None).collect();
            let rss0 = rss_bytes();
            for k in keep.iter_mut() {
                *k = Some(mpsc::channel::<u64>(16));
            }
            let rss1 = rss_bytes();
            println!("channel_memory n={} bytes_per_channel={:.1}", n, (rss1 - rss0) as f64 / n as f64);
            drop(keep);
        }
        "waiter_memory" => {
            let n = if n > 0 { n } else { 100_000 };
            let per = rt.block_on(async move {
                tokio::spawn(async move {
                    let s = Arc::new(Semaphore::new(0));
                    let rss0 = rss_bytes();
                    for _ in 0..n {
                        let s = s.clone();
                        drop(tokio::spawn(async move {
                            WAITING.fetch_add(1, Ordering::Relaxed);
                            let _p = s.acquire().await;
                        }));
                    }
                    while WAITING.load(Ordering::Relaxed) < n {
                        tokio::task::yield_now().await;
                    }
                    tokio::task::yield_now().await;
                    (rss_bytes() - rss0) as f64 / n as f64
                })
                .await
                .unwrap()
            });
            println!("waiter_memory n={} bytes_per_waiter={:.1}", n, per);
        }
        _ => {
            eprintln!("usage: sync mpsc_throughput|mutex_contention|semaphore_pair|channel_memory|waiter_memory [--n N] [--workers W]");
            std::process::exit(2);
        }
    }
}
