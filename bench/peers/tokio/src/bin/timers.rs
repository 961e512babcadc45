//! Tokio peer of bench/bench_timers.c: the same figures, shapes and output
//! lines.  Usage: timers timers_many|timer_memory|timer_cancel [--n N] [--workers W]
//!
//!   timers_many   N (1,000,000) spawned tasks each `sleep(1..=1000 ms)`
//!                 (xorshift, fixed seed); wall time from the first spawn to
//!                 the last wake, process CPU time (getrusage), peak RSS
//!   timer_memory  N (100,000) tasks sleeping 60-61 s, RSS growth per task
//!                 once each has been polled once (its timer registered)
//!   timer_cancel  1,000 tasks x K: `yield_now()` (base), then
//!                 `timeout(60 s, yield_now())` (armed on the first poll,
//!                 cancelled when the inner future completes on the second),
//!                 then `timeout(60 s, ready(()))`; second (warm) run of each

use pollen_bench_tokio::{arg, runtime};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn rusage() -> (u64, i64) {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let cpu = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) as u64 * 1_000_000_000
        + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) as u64 * 1000;
    (cpu, ru.ru_maxrss)
}

fn rss_bytes() -> i64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let res: i64 = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    res * 4096
}

fn xr(s: &mut u64) -> u64 {
    let mut x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    x
}

struct Many {
    polled: AtomicUsize,
    left: AtomicUsize,
    done: tokio::sync::Notify,
}

/// (wall ns, cpu ns, rss growth per task)
async fn many(n: usize, memory_only: bool) -> (u64, u64, f64) {
    let st = Arc::new(Many { polled: AtomicUsize::new(0), left: AtomicUsize::new(n), done: tokio::sync::Notify::new() });
    let mut seed: u64 = 88172645463325252;
    let rss0 = rss_bytes();
    let t0 = Instant::now();
    let (c0, _) = rusage();
    for _ in 0..n {
        let ms = 1 + xr(&mut seed) % 1000 + if memory_only { 60_000 } else { 0 };
        // The deadline is taken now, as pollen's pn_sleep_for does; the Sleep
        // itself is made inside the task (a Sleep captured by the async block
        // would be stored twice in the task: rust-lang/rust#62958).
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
        let st = st.clone();
        tokio::spawn(async move {
            st.polled.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep_until(deadline).await;
            if st.left.fetch_sub(1, Ordering::AcqRel) == 1 {
                st.done.notify_one();
            }
        });
    }
    while st.polled.load(Ordering::Relaxed) < n && st.left.load(Ordering::Relaxed) > 0 {
        tokio::task::yield_now().await;
    }
    let per = (rss_bytes() - rss0) as f64 / n as f64;
    if std::env::var_os("TIMERS_FUTURE_SIZE").is_some() {
        let f = async { tokio::time::sleep_until(tokio::time::Instant::now()).await };
        eprintln!("sleep task future: {} bytes", std::mem::size_of_val(&f));
    }
    if memory_only {
        return (0, 0, per);
    }
    while st.left.load(Ordering::Acquire) > 0 {
        st.done.notified().await; // notify_one stores a permit if nobody waits
    }
    let wall = t0.elapsed().as_nanos() as u64;
    let (c1, _) = rusage();
    (wall, c1 - c0, per)
}

async fn cancel_way(way: u32, tasks: usize, k: usize) -> u64 {
    let mut elapsed = 0;
    for _ in 0..2 {
        let t0 = Instant::now();
        let mut hs = Vec::with_capacity(tasks);
        for _ in 0..tasks {
            hs.push(tokio::spawn(async move {
                for _ in 0..k {
                    match way {
                        0 => tokio::task::yield_now().await,
                        1 => tokio::time::timeout(Duration::from_secs(60), tokio::task::yield_now())
                            .await
                            .expect("timeout fired"),
                        _ => tokio::time::timeout(Duration::from_secs(60), std::future::ready(()))
                            .await
                            .expect("timeout fired"),
                    }
                }
            }));
        }
        for h in hs {
            h.await.unwrap();
        }
        elapsed = t0.elapsed().as_nanos() as u64;
    }
    elapsed
}

fn main() {
    let fig = std::env::args().nth(1).unwrap_or_default();
    let n: usize = arg("--n", 0);
    let rt = runtime();
    match fig.as_str() {
        "timers_many" => {
            let n = if n > 0 { n } else { 1_000_000 };
            let (wall, cpu, _) = rt.block_on(async move { tokio::spawn(many(n, false)).await.unwrap() });
            let (_, maxrss) = rusage();
            println!(
                "timers_many n={} total_ms={:.1} cpu_ms={:.1} peak_rss_mb={:.1}",
                n, wall as f64 / 1e6, cpu as f64 / 1e6, maxrss as f64 / 1024.0
            );
        }
        "timer_memory" => {
            let n = if n > 0 { n } else { 100_000 };
            let (_, _, per) = rt.block_on(async move { tokio::spawn(many(n, true)).await.unwrap() });
            println!("timer_memory n={} bytes_per_timer={:.1}", n, per);
        }
        "timer_cancel" => {
            let n = if n > 0 { n } else { 1_000_000 };
            let tasks = 1000;
            let k = (n + tasks - 1) / tasks;
            let ops = (tasks * k) as f64;
            let e: Vec<u64> = (0..3).map(|w| rt.block_on(async move { tokio::spawn(cancel_way(w, tasks, k)).await.unwrap() })).collect();
            println!(
                "timer_cancel n={} base_ns={:.1} timeout_ns={:.1} arm_cancel_ns={:.1} ready_ns={:.1}",
                ops, e[0] as f64 / ops, e[1] as f64 / ops, (e[1] as f64 - e[0] as f64) / ops, e[2] as f64 / ops
            );
        }
        _ => {
            eprintln!("usage: timers timers_many|timer_memory|timer_cancel [--n N] [--workers W]");
            std::process::exit(2);
        }
    }
}
