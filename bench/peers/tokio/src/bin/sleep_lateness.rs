//! Tokio peer of bench/bench_sleep_lateness.c: how late do sleeps complete?
//!
//! Lateness = `Instant::now()` right after the `.await` minus the sleep's
//! deadline (`Sleep::deadline()`, i.e. the instant `sleep()` was called plus
//! the duration).  Same figures and output format as the pollen program:
//!   sleep_lateness_5ms / _1ms   1,000 sequential sleeps in one future
//!   sleep_lateness_10ms         count / 3 sequential 10 ms sleeps (333)
//!   sleep_lateness_concurrent   1,000 spawned tasks, deadlines uniform in
//!                               1-50 ms, repeated ROUNDS times
//! Usage: sleep_lateness [rounds] [count] [--workers N]  (defaults 3, 1000)

use pollen_bench_tokio::{ns, report, runtime};
use std::time::Duration;
use tokio::time::{sleep, sleep_until, Instant};

async fn seq(name: &str, dur: Duration, n: usize) {
    let mut late = Vec::with_capacity(n);
    for _ in 0..n {
        let s = sleep(dur);
        let deadline = s.deadline();
        s.await;
        late.push(ns(Instant::now().saturating_duration_since(deadline)));
    }
    report(name, &mut late);
}

fn xr(s: &mut u64) -> u64 {
    let mut x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    x
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3)
        .max(1);
    let count: usize = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000)
        .max(1);
    let rt = runtime();
    rt.block_on(async {
        seq("sleep_lateness_5ms", Duration::from_millis(5), count).await;
        seq("sleep_lateness_1ms", Duration::from_millis(1), count).await;
        seq("sleep_lateness_10ms", Duration::from_millis(10), (count / 3).max(1)).await;
        let mut all = Vec::new();
        for r in 0..rounds {
            let mut seed = 0x9e3779b97f4a7c15u64.wrapping_add(r as u64);
            let base = Instant::now();
            let mut hs = Vec::with_capacity(1000);
            for _ in 0..1000 {
                let deadline = base
                    + Duration::from_millis(1)
                    + Duration::from_nanos(xr(&mut seed) % 49_000_000);
                hs.push(tokio::spawn(async move {
                    sleep_until(deadline).await;
                    ns(Instant::now().saturating_duration_since(deadline))
                }));
            }
            for h in hs {
                all.push(h.await.unwrap());
            }
        }
        report("sleep_lateness_concurrent", &mut all);
    });
}
