//! Tokio peer of bench/bench_runtime.c: the same five figures, same shapes,
//! same output lines.  Usage: rt FIGURE [--n N] [--workers W]
//! (W = 0, the default: current_thread runtime; W >= 1: multi_thread with W
//! workers).
//!
//!   spawn_many     a task spawns N `async {}` tasks keeping the JoinHandles,
//!                  then awaits each in turn
//!   spawn_many_remote  the same N spawns from the main thread, outside the
//!                  runtime (`rt.spawn`), then one `block_on` awaits them
//!   yield_many     1,000 tasks x Y `tokio::task::yield_now().await`
//!   ping_pong      1,000 pairs x R round trips; each direction is a
//!                  tokio::sync::mpsc channel of capacity 1 (pollen's program:
//!                  a pn_mpsc channel of capacity 1)
//!   chained_spawn  each task spawns the next, N deep; the last one signals a
//!                  tokio::sync::oneshot
//!   task_memory    N detached tasks pending forever (std::future::pending)
//!
//! Timed figures run twice in the same runtime and report the second run.

use pollen_bench_tokio::{arg, runtime};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

fn ns_since(t0: Instant) -> u64 {
    t0.elapsed().as_nanos() as u64
}

async fn spawn_many(n: usize) -> u64 {
    let mut elapsed = 0;
    let mut hs = Vec::with_capacity(n);
    for _ in 0..2 {
        let t0 = Instant::now();
        for _ in 0..n {
            hs.push(tokio::spawn(async {}));
        }
        for h in hs.drain(..) {
            h.await.unwrap();
        }
        elapsed = ns_since(t0);
    }
    elapsed
}

async fn yield_many(tasks: usize, yields: usize) -> u64 {
    let mut elapsed = 0;
    let mut hs = Vec::with_capacity(tasks);
    for _ in 0..2 {
        let t0 = Instant::now();
        for _ in 0..tasks {
            hs.push(tokio::spawn(async move {
                for _ in 0..yields {
                    tokio::task::yield_now().await;
                }
            }));
        }
        for h in hs.drain(..) {
            h.await.unwrap();
        }
        elapsed = ns_since(t0);
    }
    elapsed
}

async fn ping_pong(pairs: usize, rounds: usize) -> u64 {
    let mut elapsed = 0;
    let mut hs = Vec::with_capacity(2 * pairs);
    for _ in 0..2 {
        let t0 = Instant::now();
        for _ in 0..pairs {
            let (ab_tx, mut ab_rx) = tokio::sync::mpsc::channel::<usize>(1);
            let (ba_tx, mut ba_rx) = tokio::sync::mpsc::channel::<usize>(1);
            hs.push(tokio::spawn(async move {
                for i in 0..rounds {
                    ab_tx.send(i).await.unwrap();
                    ba_rx.recv().await.unwrap();
                }
            }));
            hs.push(tokio::spawn(async move {
                for _ in 0..rounds {
                    let v = ab_rx.recv().await.unwrap();
                    ba_tx.send(v).await.unwrap();
                }
            }));
        }
        for h in hs.drain(..) {
            h.await.unwrap();
        }
        elapsed = ns_since(t0);
    }
    elapsed
}

fn chain(left: usize, done: tokio::sync::oneshot::Sender<()>) {
    tokio::spawn(async move {
        if left == 1 {
            let _ = done.send(());
        } else {
            chain(left - 1, done);
        }
    });
}

async fn chained_spawn(n: usize) -> u64 {
    let mut elapsed = 0;
    for _ in 0..2 {
        let t0 = Instant::now();
        let (tx, rx) = tokio::sync::oneshot::channel();
        chain(n, tx);
        rx.await.unwrap();
        elapsed = ns_since(t0);
    }
    elapsed
}

static POLLED: AtomicUsize = AtomicUsize::new(0);

fn rss_bytes() -> i64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let res: i64 = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    res * 4096
}

async fn idle_task() {
    POLLED.fetch_add(1, Ordering::Relaxed);
    std::future::pending::<()>().await
}

async fn task_memory(n: usize) -> (usize, f64) {
    let fut_bytes = std::mem::size_of_val(&idle_task());
    let rss0 = rss_bytes();
    for _ in 0..n {
        drop(tokio::spawn(idle_task()));
    }
    while POLLED.load(Ordering::Relaxed) < n {
        tokio::task::yield_now().await;
    }
    let rss1 = rss_bytes();
    (fut_bytes, (rss1 - rss0) as f64 / n as f64)
}

fn main() {
    let fig = std::env::args().nth(1).unwrap_or_default();
    let n: usize = arg("--n", 0);
    let rt = runtime();
    let rate = |k: usize, ns: u64| k as f64 * 1e9 / ns as f64;
    // Every figure runs inside a spawned task, as in the pollen program.
    match fig.as_str() {
        "spawn_many" => {
            let n = if n > 0 { n } else { 1_000_000 };
            let ns = rt.block_on(async move { tokio::spawn(spawn_many(n)).await.unwrap() });
            println!("spawn_many n={} ns={} tasks_per_s={:.0}", n, ns, rate(n, ns));
        }
        "spawn_many_remote" => {
            let n = if n > 0 { n } else { 1_000_000 };
            let mut hs = Vec::with_capacity(n);
            let mut ns = 0;
            for _ in 0..2 {
                let t0 = Instant::now();
                for _ in 0..n {
                    hs.push(rt.spawn(async {}));
                }
                rt.block_on(async {
                    for h in hs.drain(..) {
                        h.await.unwrap();
                    }
                });
                ns = ns_since(t0);
            }
            println!("spawn_many_remote n={} ns={} tasks_per_s={:.0}", n, ns, rate(n, ns));
        }
        "yield_many" => {
            let (t, y) = (1000, if n > 0 { n } else { 1000 });
            let ns = rt.block_on(async move { tokio::spawn(yield_many(t, y)).await.unwrap() });
            println!("yield_many tasks={} yields={} ns={} yields_per_s={:.0}", t, y, ns, rate(t * y, ns));
        }
        "ping_pong" => {
            let (p, r) = (1000, if n > 0 { n } else { 1000 });
            let ns = rt.block_on(async move { tokio::spawn(ping_pong(p, r)).await.unwrap() });
            println!("ping_pong pairs={} rounds={} ns={} round_trips_per_s={:.0}", p, r, ns, rate(p * r, ns));
        }
        "chained_spawn" => {
            let n = if n > 0 { n } else { 1_000_000 };
            let ns = rt.block_on(async move { tokio::spawn(chained_spawn(n)).await.unwrap() });
            println!("chained_spawn n={} ns={} tasks_per_s={:.0}", n, ns, rate(n, ns));
        }
        "task_memory" => {
            let n = if n > 0 { n } else { 100_000 };
            let (fb, per) = rt.block_on(async move { tokio::spawn(task_memory(n)).await.unwrap() });
            println!("task_memory n={} future_bytes={} rss_bytes_per_task={:.1}", n, fb, per);
        }
        _ => {
            eprintln!("usage: rt spawn_many|spawn_many_remote|yield_many|ping_pong|chained_spawn|task_memory [--n N] [--workers W]");
            std::process::exit(2);
        }
    }
}
