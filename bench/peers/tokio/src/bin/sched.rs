//! Tokio peer of bench/bench_sched.c: the scheduler shapes of Tokio's own
//! benches/rt_multi_threaded.rs (and of benches/rt_current_thread.rs at
//! --workers 0), written as they are there, plus spawn_counter, a
//! shared-counter spawn_many.  bench_sched.c mirrors this file shape for
//! shape (block_on where this one block_ons, a spawned task where this one
//! spawns).  Figures (sizes as in Tokio's benches; --n changes the count):
//!
//!   spawn_many_local        10,000 `tokio::spawn` from inside `block_on`;
//!                           each task decrements a shared counter, the
//!                           last one signals the waiter, which blocks in
//!                           `block_on` on a std::sync::mpsc::sync_channel.
//!                           --workers 0 (rt_current_thread.rs): 1,000
//!                           spawns keeping the JoinHandles, then awaits
//!                           each.  Unit: task
//!   spawn_many_remote_idle  10,000 (--workers 0: 1,000) `rt.spawn(async {})`
//!                           from the main thread, then one `block_on`
//!                           awaits every handle.  Unit: task
//!   spawn_many_remote_busy1 the same while 8 tasks loop `yield_now` +
//!                           stall(10 µs).  Multi-thread only.  Unit: task
//!   spawn_many_remote_busy2 1,000 remote spawns while 4 chains of tasks
//!                           stall(10 µs) and spawn their successor (LIFO
//!                           stress).  Multi-thread only; Tokio 1.24 does
//!                           not finish it (see the deadline).  Unit: task
//!   spawn_many_remote_busy  --workers 0 only (rt_current_thread.rs): 1,000
//!                           remote spawns while one task respawns itself
//!                           forever.  Unit: task
//!   yield_many              200 tasks spawned from the main thread, each
//!                           1,000 x `yield_now`, then signals; the main
//!                           thread waits for the 200 signals.  Unit: yield
//!   ping_pong               in `block_on`: a spawned task spawns 1,000
//!                           tasks; each spawns a peer and does a round
//!                           trip with it over two oneshots; the last to
//!                           finish signals.  Unit: round_trip
//!   chained_spawn           in `block_on`: a spawned task spawns the next,
//!                           1,000 deep (1,001 tasks); the last signals.
//!                           Unit: task (of the 1,000)
//!   spawn_counter           in `block_on`: ONE spawned task spawns
//!                           1,000,000 tasks; each decrements a shared
//!                           counter, the last one calls notify_one on a
//!                           tokio::sync::Notify that `block_on` awaits.
//!                           Unit: task
//!
//! The waiter's signal: Tokio's benches block the waiting thread on a
//! std::sync::mpsc::sync_channel(1000).  A current_thread runtime runs its
//! tasks only inside `block_on`, so at --workers 0 the waiter awaits
//! permits of a tokio::sync::Semaphore inside `block_on` instead.
//!
//! Measurement (criterion-like): iterations run back to back in one
//! runtime, first a warm-up of at least --warmup-ms (default 100), then at
//! least --min-iters (default 5) timed iterations and at least --ms
//! (default 300) of them.  Output, one line:
//!   <figure> workers=W n=N iters=I median_us=.. min_us=.. ns_per_<unit>=.. finished=1
//! A watchdog thread gives up when one iteration lasts longer than
//! --deadline-ms (default 2,000 + 1 per 100 units): it prints
//!   <figure> workers=W n=N iters=<completed> finished=0 deadline_ms=D
//! and ends the process at once (exit status 0).
//!
//! Usage: sched FIGURE [--n N] [--workers W|cpus] [--ms M] [--warmup-ms M]
//!                     [--min-iters K] [--deadline-ms D]

use pollen_bench_tokio::{arg, runtime, workers};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio::sync::{oneshot, Notify, Semaphore};

const STALL_DUR: Duration = Duration::from_micros(10);
const YIELD_TASKS: usize = 200;

fn stall() {
    let now = Instant::now();
    while now.elapsed() < STALL_DUR {
        std::thread::yield_now();
    }
}

// ---- the waiter's signal ----------------------------------------------------

#[derive(Clone)]
enum DoneTx {
    Thread(mpsc::SyncSender<()>),
    Task(Arc<Semaphore>),
}

impl DoneTx {
    fn send(&self) {
        match self {
            DoneTx::Thread(tx) => tx.send(()).unwrap(),
            DoneTx::Task(s) => s.add_permits(1),
        }
    }
}

enum DoneRx {
    Thread(mpsc::Receiver<()>),
    Task(Arc<Semaphore>),
}

impl DoneRx {
    /// Inside block_on: wait for `n` signals (blocking the thread, or
    /// awaiting the semaphore at --workers 0).
    async fn recv(&self, n: usize) {
        match self {
            DoneRx::Thread(rx) => {
                for _ in 0..n {
                    rx.recv().unwrap();
                }
            }
            DoneRx::Task(s) => s.acquire_many(n as u32).await.unwrap().forget(),
        }
    }

    /// Outside the runtime: the same (at --workers 0 through a block_on).
    fn recv_outside(&self, rt: &Runtime, n: usize) {
        match self {
            DoneRx::Thread(rx) => {
                for _ in 0..n {
                    rx.recv().unwrap();
                }
            }
            DoneRx::Task(_) => rt.block_on(self.recv(n)),
        }
    }
}

fn done_channel(ct: bool) -> (DoneTx, DoneRx) {
    if ct {
        let s = Arc::new(Semaphore::new(0));
        (DoneTx::Task(s.clone()), DoneRx::Task(s))
    } else {
        let (tx, rx) = mpsc::sync_channel(1000);
        (DoneTx::Thread(tx), DoneRx::Thread(rx))
    }
}

// ---- measuring --------------------------------------------------------------

/// Start of the running iteration (ns since `Bench::base`, plus 1), 0
/// between iterations; iterations completed.  Read by the watchdog.
static ITER_T0: AtomicU64 = AtomicU64::new(0);
static ITERS: AtomicU64 = AtomicU64::new(0);

struct Bench {
    fig: String,
    workers: usize,
    n: usize,
    unit: &'static str,
    units: f64, // units of work per iteration
    base: Instant,
}

impl Bench {
    fn head(&self) -> String {
        format!("{} workers={} n={}", self.fig, self.workers, self.n)
    }

    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64 + 1
    }

    /// Give up (print the finished=0 line, exit 0) when one iteration
    /// lasts longer than the deadline.
    fn watchdog(&self) {
        let dflt = 2000 + (self.units / 100.0) as u64;
        let deadline_ms: u64 = arg("--deadline-ms", dflt);
        let head = self.head();
        let base = self.base;
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(50));
            let t0 = ITER_T0.load(SeqCst);
            let now = base.elapsed().as_nanos() as u64 + 1;
            if t0 != 0 && now - t0 > deadline_ms * 1_000_000 && ITER_T0.load(SeqCst) == t0 {
                println!(
                    "{} iters={} finished=0 deadline_ms={}",
                    head,
                    ITERS.load(SeqCst),
                    deadline_ms
                );
                std::process::exit(0);
            }
        });
    }

    fn timed<F: FnMut()>(&self, iter: &mut F) -> u64 {
        let t0 = self.now();
        ITER_T0.store(t0, SeqCst);
        iter();
        let t1 = self.now();
        ITER_T0.store(0, SeqCst);
        ITERS.fetch_add(1, SeqCst);
        t1 - t0
    }

    fn run<F: FnMut()>(&self, mut iter: F) {
        let warmup = Duration::from_millis(arg("--warmup-ms", 100u64));
        let window = Duration::from_millis(arg("--ms", 300u64));
        let min_iters: usize = arg("--min-iters", 5usize).max(1);
        self.watchdog();
        let w0 = Instant::now();
        loop {
            self.timed(&mut iter);
            if w0.elapsed() >= warmup {
                break;
            }
        }
        let mut v = Vec::new();
        let m0 = Instant::now();
        while v.len() < min_iters || (m0.elapsed() < window && v.len() < 100_000) {
            v.push(self.timed(&mut iter));
        }
        v.sort_unstable();
        let med = v[v.len() / 2] as f64;
        println!(
            "{} iters={} median_us={:.1} min_us={:.1} ns_per_{}={:.1} finished=1",
            self.head(),
            v.len(),
            med / 1e3,
            v[0] as f64 / 1e3,
            self.unit,
            med / self.units
        );
    }
}

// ---- the shapes -------------------------------------------------------------

/// Remote spawns from the main thread, then one block_on awaits them all
/// (spawn_many_remote_idle, _busy1, _busy2, and _busy at --workers 0).
fn remote_spawns(b: &Bench, rt: &Runtime) {
    let n = b.n;
    let rt_handle = rt.handle();
    let mut handles = Vec::with_capacity(n);
    b.run(|| {
        for _ in 0..n {
            handles.push(rt_handle.spawn(async {}));
        }
        rt.block_on(async {
            for handle in handles.drain(..) {
                handle.await.unwrap();
            }
        });
    });
}

fn chain(done_tx: DoneTx, n: usize) {
    if n == 0 {
        done_tx.send();
    } else {
        tokio::spawn(async move {
            chain(done_tx, n - 1);
        });
    }
}

struct Counter {
    rem: AtomicUsize,
    notify: Notify,
}

fn usage() -> ! {
    eprintln!(
        "usage: sched spawn_many_local|spawn_many_remote_idle|spawn_many_remote_busy1|\
         spawn_many_remote_busy2|spawn_many_remote_busy|yield_many|ping_pong|chained_spawn|\
         spawn_counter [--n N] [--workers W|cpus] [--ms M] [--warmup-ms M] [--min-iters K] \
         [--deadline-ms D]"
    );
    std::process::exit(2);
}

fn main() {
    let fig = std::env::args().nth(1).unwrap_or_default();
    let w = workers();
    let ct = w == 0;
    let n_arg: usize = arg("--n", 0);
    let nn = |d: usize| if n_arg > 0 { n_arg } else { d };
    let (n, unit, units) = match fig.as_str() {
        "spawn_many_local" | "spawn_many_remote_idle" => {
            let n = nn(if ct { 1_000 } else { 10_000 });
            (n, "task", n as f64)
        }
        "spawn_many_remote_busy1" if !ct => (nn(10_000), "task", nn(10_000) as f64),
        "spawn_many_remote_busy2" if !ct => (nn(1_000), "task", nn(1_000) as f64),
        "spawn_many_remote_busy" if ct => (nn(1_000), "task", nn(1_000) as f64),
        "spawn_many_remote_busy1" | "spawn_many_remote_busy2" => {
            eprintln!("sched: {} runs on the multi-thread runtime only (--workers >= 1)", fig);
            std::process::exit(2);
        }
        "spawn_many_remote_busy" => {
            eprintln!("sched: {} runs on the current-thread runtime only (--workers 0)", fig);
            std::process::exit(2);
        }
        "yield_many" => (nn(1_000), "yield", (YIELD_TASKS * nn(1_000)) as f64),
        "ping_pong" => (nn(1_000), "round_trip", nn(1_000) as f64),
        "chained_spawn" => (nn(1_000), "task", nn(1_000) as f64),
        "spawn_counter" => (nn(1_000_000), "task", nn(1_000_000) as f64),
        _ => usage(),
    };
    let rt = runtime();
    let b = Bench { fig: fig.clone(), workers: w, n, unit, units, base: Instant::now() };

    match fig.as_str() {
        "spawn_many_local" if ct => {
            let mut handles = Vec::with_capacity(n);
            b.run(|| {
                rt.block_on(async {
                    for _ in 0..n {
                        handles.push(tokio::spawn(async move {}));
                    }
                    for handle in handles.drain(..) {
                        handle.await.unwrap();
                    }
                });
            });
        }
        "spawn_many_local" => {
            let (tx, rx) = done_channel(ct);
            let rem = Arc::new(AtomicUsize::new(0));
            b.run(|| {
                rem.store(n, Relaxed);
                rt.block_on(async {
                    for _ in 0..n {
                        let tx = tx.clone();
                        let rem = rem.clone();
                        tokio::spawn(async move {
                            if 1 == rem.fetch_sub(1, Relaxed) {
                                tx.send();
                            }
                        });
                    }
                    rx.recv(1).await;
                });
            });
        }
        "spawn_many_remote_idle" => remote_spawns(&b, &rt),
        "spawn_many_remote_busy1" => {
            let flag = Arc::new(AtomicBool::new(true));
            // 2 * NUM_WORKERS (4 in Tokio's bench) tasks keep the workers busy
            for _ in 0..8 {
                let flag = flag.clone();
                rt.spawn(async move {
                    while flag.load(Relaxed) {
                        tokio::task::yield_now().await;
                        stall();
                    }
                });
            }
            remote_spawns(&b, &rt);
            flag.store(false, Relaxed);
        }
        "spawn_many_remote_busy2" => {
            let flag = Arc::new(AtomicBool::new(true));
            // NUM_WORKERS (4 in Tokio's bench) chains keep the workers busy
            fn iter(flag: Arc<AtomicBool>) {
                tokio::spawn(async {
                    if flag.load(Relaxed) {
                        stall();
                        iter(flag);
                    }
                });
            }
            for _ in 0..4 {
                let flag = flag.clone();
                rt.spawn(async {
                    iter(flag);
                });
            }
            remote_spawns(&b, &rt);
            flag.store(false, Relaxed);
        }
        "spawn_many_remote_busy" => {
            rt.spawn(async {
                fn iter() {
                    tokio::spawn(async { iter() });
                }
                iter()
            });
            remote_spawns(&b, &rt);
        }
        "yield_many" => {
            let (tx, rx) = done_channel(ct);
            b.run(|| {
                for _ in 0..YIELD_TASKS {
                    let tx = tx.clone();
                    rt.spawn(async move {
                        for _ in 0..n {
                            tokio::task::yield_now().await;
                        }
                        tx.send();
                    });
                }
                rx.recv_outside(&rt, YIELD_TASKS);
            });
        }
        "ping_pong" => {
            let (done_tx, done_rx) = done_channel(ct);
            let rem = Arc::new(AtomicUsize::new(0));
            b.run(|| {
                let done_tx = done_tx.clone();
                let rem = rem.clone();
                rem.store(n, Relaxed);
                rt.block_on(async {
                    tokio::spawn(async move {
                        for _ in 0..n {
                            let rem = rem.clone();
                            let done_tx = done_tx.clone();
                            tokio::spawn(async move {
                                let (tx1, rx1) = oneshot::channel();
                                let (tx2, rx2) = oneshot::channel();
                                tokio::spawn(async move {
                                    rx1.await.unwrap();
                                    tx2.send(()).unwrap();
                                });
                                tx1.send(()).unwrap();
                                rx2.await.unwrap();
                                if 1 == rem.fetch_sub(1, Relaxed) {
                                    done_tx.send();
                                }
                            });
                        }
                    });
                    done_rx.recv(1).await;
                });
            });
        }
        "chained_spawn" => {
            let (done_tx, done_rx) = done_channel(ct);
            b.run(|| {
                let done_tx = done_tx.clone();
                rt.block_on(async {
                    tokio::spawn(async move {
                        chain(done_tx, n);
                    });
                    done_rx.recv(1).await;
                });
            });
        }
        "spawn_counter" => {
            let st = Arc::new(Counter { rem: AtomicUsize::new(0), notify: Notify::new() });
            b.run(|| {
                st.rem.store(n, Relaxed);
                rt.block_on(async {
                    let st2 = st.clone();
                    tokio::spawn(async move {
                        for _ in 0..n {
                            let st = st2.clone();
                            tokio::spawn(async move {
                                if 1 == st.rem.fetch_sub(1, Relaxed) {
                                    st.notify.notify_one();
                                }
                            });
                        }
                    });
                    st.notify.notified().await;
                });
            });
        }
        _ => usage(),
    }
}
