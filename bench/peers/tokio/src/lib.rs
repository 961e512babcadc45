//! Shared helpers of the Tokio peer programs: argument parsing, runtime
//! construction (`--workers N`: 0 = current_thread, N >= 1 = multi_thread
//! with N workers, `cpus` = as many workers as CPUs) and the percentile
//! report in the same format as pollen's bench programs.

use std::time::Duration;

/// Value of `--name V` in the arguments, if present.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    for i in 0..args.len() {
        if args[i] == name {
            if let Some(v) = args.get(i + 1) {
                if let Ok(x) = v.parse() {
                    return x;
                }
            }
            eprintln!("bad value for {}", name);
            std::process::exit(2);
        }
    }
    default
}

/// `--workers N` (default 0); `--workers cpus`: as many as the CPUs.
pub fn workers() -> usize {
    let w: String = arg("--workers", String::from("0"));
    if w == "cpus" {
        return std::thread::available_parallelism().map_or(1, |n| n.get());
    }
    w.parse().unwrap_or_else(|_| {
        eprintln!("bad value for --workers");
        std::process::exit(2);
    })
}

/// The runtime selected by `--workers N` (default 0: current_thread).
pub fn runtime() -> tokio::runtime::Runtime {
    let workers = workers();
    let mut b = if workers == 0 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    b.enable_all().build().expect("runtime")
}

/// `<name> n=.. p50_us=.. p99_us=.. max_us=..` from nanosecond samples.
pub fn report(name: &str, v: &mut Vec<u64>) {
    v.sort_unstable();
    let n = v.len();
    let i50 = n / 2;
    let i99 = std::cmp::min(n * 99 / 100, n - 1);
    println!(
        "{} n={} p50_us={:.1} p99_us={:.1} max_us={:.1}",
        name,
        n,
        v[i50] as f64 / 1e3,
        v[i99] as f64 / 1e3,
        v[n - 1] as f64 / 1e3
    );
}

pub fn ns(d: Duration) -> u64 {
    d.as_nanos() as u64
}
