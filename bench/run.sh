#!/bin/sh
# bench/run.sh - pollen's benchmark suite, side by side with Tokio and libuv.
#
# Run by `make bench` (after `make bench-build`) from the repository root:
#   make bench            full run: 5 runs of every figure (~26 minutes)
#   make bench QUICK=1    3 runs, shorter workloads (about 4 minutes)
# Environment: BENCH_BIN (default build/bench), QUICK=0|1, RUNS (override
# the number of runs), ONLY="sleep runtime sync timers sched fiber echo churn http
# idle" (suites), REPORT_ONLY=1 (no runs: rebuild the tables from the last raw.txt),
# BENCH_OUT (where latest.{md,json,svg} go, default bench/results),
# IDLE_CONNS (idle suite: connections, default 10000, QUICK 2000),
# ECHO_GRID / ECHO_MT_GRID (closed-loop echo rows conns:size),
# ECHO_RATE_GRID (fixed-rate echo rows conns:size:msgs_per_s, default
# "50:64:50000", none under QUICK), CHURN_GRID (connection-churn rows
# slots:size, default "50:64"), CHURN_SECS / CHURN_WARM (its measured window
# and warm-up, default ECHO_SECS / ECHO_WARM), HTTP_SECS, HTTP_WARM,
# HTTP_REPS (wrk windows per server per run), HTTP_CONNS.
#
# Two tables.  The first: pollen (current-thread runtime), pollen-uring
# (the same echo and HTTP servers, and the sleep-lateness program, run again
# with POLLEN_BACKEND=uring, the io_uring reactor; echo, churn, http and
# sleep suites only; every other pollen program
# runs with POLLEN_BACKEND=epoll), pollen multi-thread runtime with 1
# worker (the worker drives epoll and timers), Tokio current_thread, Tokio
# multi_thread with 1 worker, libuv (one loop); its ratio compares pollen's
# current-thread runtime (epoll) with the best of the other runtimes'
# columns (Tokio, libuv).  The second, multi-thread runtimes: pollen with 1
# and 2 workers in both driver modes (PN_DRIVER_WORKERS: the worker about to
# park drives epoll and timers; PN_DRIVER_REACTOR_THREAD: a dedicated
# reactor thread), then, on the closed-loop echo rows only (ECHO_MT_GRID),
# pollen mt(2) io_uring (2 workers, POLLEN_BACKEND=uring, a ring per
# worker) and pollen mt(2) io_uring shared (POLLEN_URING_RINGS=shared: one
# ring for both), pollen sharded 2 (epoll) and pollen sharded 2 (io_uring):
# `bench_echo_server --shards 2`, two threads each with its own
# current-thread runtime (its own epoll set, or io_uring ring) and its own
# SO_REUSEPORT listener on the port, with POLLEN_BACKEND=epoll and =uring
# (the io_uring one skipped with a line saying so when the uring servers do
# not start), against Tokio multi_thread with 1 and 2 workers; its ratios
# (mt(2) workers and mt(2) reactor vs Tokio mt(2), mt(2) workers vs
# reactor, sharded 2 (epoll) vs Tokio mt(2), mt(2) io_uring ring per worker
# vs shared, mt(2) io_uring vs epoll) say how many times better
# (> 1) or worse (< 1) one column is than another, whatever the direction
# of the figure.  The Tokio programs are built here (offline, Debian's
# librust-tokio-dev) from a copy of bench/peers/tokio in
# $BENCH_BIN/tokio/crate whose Cargo.lock the cargo at hand writes anew
# (Debian 12's cargo cannot read a newer cargo's lock file); a peer whose
# toolchain is missing is skipped with a line saying so.
#
# Every program prints lines `<figure> key=value ...`; each run appends them
# to build/bench/results/raw.txt prefixed with the peer and the run number.
# The runs of the peers are interleaved (run 1 of every peer, then run 2...)
# so that a slow minute of this noisy VM hits all of them.  This script only
# starts the programs and collects their output; at the end bench/report.py
# (Python 3, standard library) reads raw.txt and writes the tables: the
# median and the spread ((max-min)/median) of each figure (stdout and
# bench/results/latest.md), bench/results/latest.json (every run of every
# figure for every peer, with median, min, max, spread_pct) and the chart
# bench/results/latest.svg, then compares the run with the previous one of
# the same sizes (bench/compare.py; the rule is in docs/BENCHMARKS.md,
# "Repeatability").
#
# TCP echo: the server is pinned to CPU 0 and the load generator
# (bench/loadgen/echo_load.c, plain epoll) to CPU 1 when the machine has 2+
# CPUs; the 2-worker and 2-shard servers too (both their threads share CPU
# 0).  On 2 vCPUs the load generator is usually the bottleneck, so the
# figure that separates servers is the server's CPU time per message
# (utime+stime from /proc/PID/stat over the measured window / messages).
#
# Connection churn (ONLY=churn): the same echo servers, peers, pinning and
# order as the echo rows of the first table (pollen on epoll and on
# io_uring, pollen multi-thread 1 worker, Tokio current_thread and
# multi_thread 1 worker, libuv), loaded by `echo_load --churn`: N slots,
# each in a closed loop of non-blocking connect, one SIZE-byte echo, close
# (the client closes first) and connect again at once.  Figures: conns/s,
# p99 of the whole connect-to-close cycle and the server's CPU µs per
# connection (utime+stime over the window / connections completed).  The
# client's side of each connection stays in TIME_WAIT; this needs
# net.ipv4.tcp_tw_reuse (1, or 2: loopback only, the default) so that a
# port is reused after 1 s (so up to ~28,000 conns/s to one server port),
# or the ephemeral ports run out.  A connect or read error is counted; over
# 0.1% of the connections, the run is dropped (echo_load exits 1, the
# reasons are in run.log).  Not run on the 2-worker servers, so not in the
# multi-thread table.
#
# HTTP plaintext: examples/http_server (current-thread, multi-thread with 1
# and 2 workers) against bench/peers/uv_http_server.c and the Tokio
# http_server (current_thread, multi_thread 1 and 2), all with the same
# behaviour (keep-alive, pipelining, cached Date).  Load: `wrk -t1 -c50
# -d<secs>s --latency http://127.0.0.1:PORT/plaintext`, server pinned to CPU
# 0 and wrk to CPU 1; figures: req/s, latency p99 and the server's CPU
# µs/request (utime+stime of the server pid, all threads, before and after
# wrk, divided by the requests wrk completed).  The peers take turns in an
# order that rotates every run.
#
# The scheduler against Tokio's own benchmark shapes (ONLY=sched):
# bench/bench_sched.c and its peer bench/peers/tokio/src/bin/sched.rs run
# the figures of Tokio's benches/rt_multi_threaded.rs (spawn_many_local,
# spawn_many_remote_idle, _busy1, _busy2, yield_many, ping_pong,
# chained_spawn) and spawn_counter (one task spawns 1M, shared counter),
# each the median time per iteration of many iterations in one process,
# divided by the tasks, yields or round trips of an iteration.  Peers:
# pollen multi-thread with 1 and 2 workers (and as many as the CPUs when
# that is not 2), Tokio multi_thread with 1 and 2; the order rotates every
# run.  Rows in the multi-thread table; pollen's scheduler counters per
# unit of work (pn_runtime_metrics, over the timed iterations) in a third
# table.  An iteration longer than its deadline ends the program with a
# finished=0 line (Tokio 1.24 never finishes spawn_many_remote_busy2): its
# time cell is then "-", and the row "... finished" says 0.
#
# Fibers (stackful tasks, pollen/fiber.h): ONLY=fiber runs bench/bench_fiber.c
# (each figure a fiber and its stackless counterpart alternately in one
# process, on the current-thread runtime): the bare context switch against
# glibc swapcontext (FIBER_SWITCH_N switches), one task yielding
# (FIBER_YIELD_N yields), 1000 tasks x 1000 yields (the yield_many shape,
# beside Tokio current_thread's yield_many from the rt peer, column
# tokio_ct_f) and spawning 10k tasks that finish at once.  The echo suite
# also runs `bench_echo_server --fibers` (the same server as fibers:
# columns pollen_fib, current-thread, on every closed-loop row, next to
# pollen; pollen_fib_mt2w, 2 workers, on the ECHO_MT_GRID rows, next to
# pollen_mt2w), and the idle suite the current-thread one (pollen_fib).
# report.py puts them in a table of their own: each figure of a fiber
# beside its stackless (or glibc, or Tokio) counterpart, and the ratio.
set -u

BENCH_BIN=${BENCH_BIN:-build/bench}
QUICK=${QUICK:-0}
[ "$QUICK" = 1 ] || QUICK=0
ONLY=${ONLY:-"sleep runtime sync timers sched fiber echo churn http idle"}
if [ "$QUICK" = 1 ]; then
    RUNS=${RUNS:-3}
    SLEEP_COUNT=100        # sequential sleeps per run (x5 ms = 0.5 s)
    SLEEP_ROUNDS=1
    RT_N=100000            # spawn_many, spawn_many_remote, chained_spawn tasks
    TIMERS_N=100000        # concurrent sleeps (deadlines still 1-1000 ms)
    TC_N=400000            # timer_cancel: 1000 tasks x 400 awaits, each way
    SYNC_MPSC_N=1000000    # mpsc_throughput messages
    SYNC_SEM_N=2000000     # semaphore_pair pairs
    SCHED_OPTS="--ms 100 --warmup-ms 30 --min-iters 3"   # bench_sched, sched.rs
    SCHED_DEADLINE="--deadline-ms 1000"                  # all but spawn_counter
    SCHED_COUNTER_N=100000 # spawn_counter tasks
    FIBER_SWITCH_N=2000000 # bench_fiber switch: context switches per rep
    FIBER_YIELD_N=200000   # bench_fiber yield: yields of the one task per rep
    ECHO_SECS=${ECHO_SECS:-0.8}
    ECHO_WARM=${ECHO_WARM:-0.1}
    ECHO_GRID=${ECHO_GRID:-"50:64 50:4096"}
    ECHO_MT_GRID=${ECHO_MT_GRID:-"50:64"}   # multi-thread servers (2 workers)
    ECHO_RATE_GRID=${ECHO_RATE_GRID-""}     # fixed-rate rows conns:size:msgs/s (none in QUICK)
    HTTP_SECS=${HTTP_SECS:-1}   # wrk -d (whole seconds)
    HTTP_WARM=${HTTP_WARM:-0}   # seconds of unmeasured wrk first (whole seconds)
    HTTP_REPS=${HTTP_REPS:-1}   # wrk windows per server per run (each one a sample)
    IDLE_CONNS=${IDLE_CONNS:-2000}
else
    RUNS=${RUNS:-5}
    SLEEP_COUNT=600        # 600 x (5 ms + 1 ms) sequential, ~4 s per program
    SLEEP_ROUNDS=3
    RT_N=1000000
    TIMERS_N=1000000
    TC_N=1000000
    SYNC_MPSC_N=4000000
    SYNC_SEM_N=10000000
    SCHED_OPTS="--ms 300 --warmup-ms 100 --min-iters 3"
    SCHED_DEADLINE=""      # the programs' default: 2 s + 1 ms per 100 units
    SCHED_COUNTER_N=1000000
    FIBER_SWITCH_N=10000000
    FIBER_YIELD_N=1000000
    ECHO_SECS=${ECHO_SECS:-2}
    ECHO_WARM=${ECHO_WARM:-0.5}
    ECHO_GRID=${ECHO_GRID:-"50:64 50:4096 1000:64 1000:4096"}
    ECHO_MT_GRID=${ECHO_MT_GRID:-"50:64 50:4096"}
    ECHO_RATE_GRID=${ECHO_RATE_GRID-"50:64:50000"}
    HTTP_SECS=${HTTP_SECS:-2}
    HTTP_WARM=${HTTP_WARM:-0}
    HTTP_REPS=${HTTP_REPS:-2}
    IDLE_CONNS=${IDLE_CONNS:-10000}
fi
HTTP_CONNS=${HTTP_CONNS:-50}
CHURN_GRID=${CHURN_GRID:-"50:64"}       # connection churn rows slots:size
CHURN_SECS=${CHURN_SECS:-$ECHO_SECS}
CHURN_WARM=${CHURN_WARM:-$ECHO_WARM}

RES=$BENCH_BIN/results
RAW=$RES/raw.txt
OUTDIR=${BENCH_OUT:-bench/results}
mkdir -p "$RES" "$OUTDIR"
REPORT_ONLY=${REPORT_ONLY:-0}   # 1: only rebuild the tables from the last raw.txt
[ "$REPORT_ONLY" = 1 ] || : > "$RAW"
LOG=$RES/run.log
[ "$REPORT_ONLY" = 1 ] || : > "$LOG"

say() { printf '%s\n' "$*"; }
# bench/report.py makes the tables (and parses wrk's output): without
# python3 a run would end with no results, so stop now.
command -v python3 >/dev/null 2>&1 ||
    { say "bench/run.sh: python3 not found (sh mk/deps.sh bench installs it as root)"; exit 1; }
T0=$(date +%s)
elapsed() { echo $(( $(date +%s) - T0 ))s; }

NCPU=$(nproc 2>/dev/null || echo 1)
if [ "$NCPU" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
    PIN_SERVER="taskset -c 0"
    PIN_CLIENT="taskset -c 1"
    PINNED=yes
else
    PIN_SERVER=""
    PIN_CLIENT=""
    PINNED=no
fi

# ---- peers ------------------------------------------------------------------
POLLEN_SLEEP=$BENCH_BIN/bench_sleep_lateness
POLLEN_RT=$BENCH_BIN/bench_runtime
POLLEN_SYNC=$BENCH_BIN/bench_sync
POLLEN_TIMERS=$BENCH_BIN/bench_timers
POLLEN_SCHED=$BENCH_BIN/bench_sched
POLLEN_FIBER=$BENCH_BIN/bench_fiber
UV_TIMERS=$BENCH_BIN/peers/uv_timers
POLLEN_ECHO=build/examples/echo_server
POLLEN_ECHO_W=$BENCH_BIN/bench_echo_server
UV_SLEEP=$BENCH_BIN/peers/uv_sleep_lateness
UV_ECHO=$BENCH_BIN/peers/uv_echo_server
LOADGEN=$BENCH_BIN/loadgen/echo_load
POLLEN_HTTP=build/examples/http_server
UV_HTTP=$BENCH_BIN/peers/uv_http_server

SKIPPED=""   # one "peer: why" per skipped peer, for the JSON
skip_peer() {  # PEER WHY...
    p=$1; shift
    say "skip $p: $*"
    SKIPPED="$SKIPPED${SKIPPED:+; }$p: $*"
}

# libuv: the C peers, built by `make bench-build` when libuv1-dev is there.
HAVE_UV=yes
for f in "$UV_SLEEP" "$UV_TIMERS" "$UV_ECHO" "$UV_HTTP"; do
    if [ ! -x "$f" ]; then
        HAVE_UV=no
        skip_peer libuv "$f not built (libuv1-dev missing? sh mk/deps.sh bench installs it as root)"
        break
    fi
done

# pollen's backend: every pollen program runs with POLLEN_BACKEND=epoll;
# the echo and HTTP servers run a second time as the column pollen-uring
# with POLLEN_BACKEND=uring.  A build that does not read the variable (no
# io_uring backend yet) runs epoll in both columns: say so.
export POLLEN_BACKEND=epoll
URING_NOTE=""
if [ -x "$POLLEN_ECHO" ] && ! grep -q POLLEN_BACKEND "$POLLEN_ECHO" 2>/dev/null; then
    URING_NOTE="$POLLEN_ECHO does not read POLLEN_BACKEND (no io_uring backend in this build): pollen-uring runs epoll like pollen"
elif [ "$(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo 0)" != 0 ]; then
    URING_NOTE="io_uring is disabled on this kernel (kernel.io_uring_disabled=$(cat /proc/sys/kernel/io_uring_disabled)): pollen-uring may fail or fall back to epoll"
fi
[ -n "$URING_NOTE" ] && say "note: $URING_NOTE"
HAVE_URING=yes   # cleared by check_uring when the uring server will not start

# The sharded echo server (bench_echo_server --shards 2, second table): a
# build from before --shards would take "--shards 2 PORT" for its port and
# run one current-thread runtime, so look for the option in the binary.
HAVE_SHARDS=yes
HAVE_URING_SH=yes   # cleared by check_uring, as HAVE_URING
if [ -x "$POLLEN_ECHO_W" ] && ! grep -q -e --shards "$POLLEN_ECHO_W" 2>/dev/null; then
    HAVE_SHARDS=no
    HAVE_URING_SH=no
    skip_peer "pollen sharded 2" "$POLLEN_ECHO_W has no --shards option (make bench-build)"
fi

# Tokio: cargo plus Debian's packaged sources; built offline, release.  The
# crate is copied to $BENCH_BIN/tokio/crate (times kept, so an unchanged
# source is not rebuilt) and built there without a Cargo.lock: the cargo at
# hand resolves the same crates from the directory source in a moment and
# writes a lock file it can read (Debian 12's cargo 1.65 stops at a
# version-4 lock file from a newer cargo, and the source tree stays clean).
TOKIO_DIR=$BENCH_BIN/tokio/release
HAVE_TOKIO=no
TOKIO_VERSION=
TOKIO_BUILT=   # yes: a build of 10 s or more just ran (it raises the load average)
if ! command -v cargo >/dev/null 2>&1; then
    skip_peer Tokio "cargo not found (sh mk/deps.sh bench installs Debian's cargo and rustc as root)"
elif ! cargo --version >/dev/null 2>&1; then
    skip_peer Tokio "'cargo --version' fails (a rustup proxy without a toolchain?)"
elif ! ls -d /usr/share/cargo/registry/tokio-1.* >/dev/null 2>&1; then
    skip_peer Tokio "/usr/share/cargo/registry/tokio-1.* missing (apt-get install librust-tokio-dev)"
else
    TOKIO_VERSION=$(ls -d /usr/share/cargo/registry/tokio-1.* | sed 's|.*/tokio-||' | sort -V | tail -1)
    say "building the Tokio peers (tokio $TOKIO_VERSION, $(cargo --version), cargo build --release --offline) ..."
    mkdir -p "$BENCH_BIN/tokio"
    ABS_TOKIO=$(cd "$BENCH_BIN/tokio" && pwd)
    tb=$(date +%s)
    if { rm -rf "$ABS_TOKIO/crate.new" && cp -Rp bench/peers/tokio "$ABS_TOKIO/crate.new" &&
         rm -f "$ABS_TOKIO/crate.new/Cargo.lock" && rm -rf "$ABS_TOKIO/crate.new/target" &&
         rm -rf "$ABS_TOKIO/crate" && mv "$ABS_TOKIO/crate.new" "$ABS_TOKIO/crate" &&
         (cd "$ABS_TOKIO/crate" && CARGO_TARGET_DIR="$ABS_TOKIO" cargo build --release --offline --quiet)
       } >>"$LOG" 2>&1; then
        HAVE_TOKIO=yes
        tb=$(( $(date +%s) - tb ))
        say "built the Tokio peers in ${tb}s"
        [ $tb -ge 10 ] && TOKIO_BUILT=yes
    else
        skip_peer Tokio "the build failed (see $LOG)"
        tail -5 "$LOG"
    fi
fi

# ---- running one program ------------------------------------------------------
# record PEER RUN CMD...: run CMD, append its figure lines to $RAW.
record() {
    peer=$1; run=$2; shift 2
    out=$("$@" 2>>"$LOG")
    rc=$?
    if [ $rc -ne 0 ]; then
        say "    $peer: '$*' failed (exit $rc), run dropped"
        echo "$peer run $run: $* -> exit $rc" >>"$LOG"
        return 1
    fi
    printf '%s\n' "$out" | while IFS= read -r line; do
        [ -n "$line" ] && printf '%s %s %s\n' "$peer" "$run" "$line" >>"$RAW"
    done
    return 0
}

# ---- suites -------------------------------------------------------------------
suite_sleep() {  # run
    r=$1
    say "  [run $r/$RUNS $(elapsed)] sleep lateness: ${SLEEP_COUNT} x 5 ms, ${SLEEP_COUNT} x 1 ms, $((SLEEP_COUNT / 3)) x 10 ms, ${SLEEP_ROUNDS} x 1000 concurrent"
    record pollen "$r" $POLLEN_SLEEP "$SLEEP_ROUNDS" "$SLEEP_COUNT"
    [ $HAVE_URING = yes ] &&
        record pollen-uring "$r" env POLLEN_BACKEND=uring $POLLEN_SLEEP "$SLEEP_ROUNDS" "$SLEEP_COUNT"
    record pollen_mt1 "$r" $POLLEN_SLEEP "$SLEEP_ROUNDS" "$SLEEP_COUNT" --workers 1
    record pollen_mt2w "$r" $POLLEN_SLEEP "$SLEEP_ROUNDS" "$SLEEP_COUNT" --workers 2
    if [ $HAVE_TOKIO = yes ]; then
        record tokio_ct "$r" "$TOKIO_DIR/sleep_lateness" "$SLEEP_ROUNDS" "$SLEEP_COUNT"
        record tokio_mt1 "$r" "$TOKIO_DIR/sleep_lateness" "$SLEEP_ROUNDS" "$SLEEP_COUNT" --workers 1
        record tokio_mt2 "$r" "$TOKIO_DIR/sleep_lateness" "$SLEEP_ROUNDS" "$SLEEP_COUNT" --workers 2
    fi
    [ $HAVE_UV = yes ] && record libuv "$r" $UV_SLEEP "$SLEEP_ROUNDS" "$SLEEP_COUNT"
}

RT_FIGS="spawn_many spawn_many_remote yield_many ping_pong chained_spawn task_memory"
suite_runtime() {  # run
    r=$1
    for f in $RT_FIGS; do
        say "  [run $r/$RUNS $(elapsed)] runtime: $f"
        nopt=""
        case $f in spawn_many|spawn_many_remote|chained_spawn) nopt="--n $RT_N" ;; esac
        record pollen "$r" $POLLEN_RT $f $nopt
        # the two driver modes swap places every run (neither always goes first)
        if [ $((r % 2)) = 1 ]; then
            record pollen_mt1 "$r" $POLLEN_RT $f $nopt --workers 1 --driver workers
            record pollen_mt1r "$r" $POLLEN_RT $f $nopt --workers 1 --driver reactor
            record pollen_mt2w "$r" $POLLEN_RT $f $nopt --workers 2 --driver workers
            record pollen_mt2r "$r" $POLLEN_RT $f $nopt --workers 2 --driver reactor
        else
            record pollen_mt2r "$r" $POLLEN_RT $f $nopt --workers 2 --driver reactor
            record pollen_mt2w "$r" $POLLEN_RT $f $nopt --workers 2 --driver workers
            record pollen_mt1r "$r" $POLLEN_RT $f $nopt --workers 1 --driver reactor
            record pollen_mt1 "$r" $POLLEN_RT $f $nopt --workers 1 --driver workers
        fi
        if [ $HAVE_TOKIO = yes ]; then
            record tokio_ct "$r" "$TOKIO_DIR/rt" $f $nopt
            record tokio_mt1 "$r" "$TOKIO_DIR/rt" $f $nopt --workers 1
            record tokio_mt2 "$r" "$TOKIO_DIR/rt" $f $nopt --workers 2
        fi
    done
}

SYNC_FIGS="mpsc_throughput mutex_contention semaphore_pair channel_memory waiter_memory"
suite_sync() {  # run: the coordination toolkit (bench_sync.c, tokio sync.rs)
    r=$1
    for f in $SYNC_FIGS; do
        say "  [run $r/$RUNS $(elapsed)] sync: $f"
        nopt=""
        [ $f = mpsc_throughput ] && nopt="--n $SYNC_MPSC_N"
        [ $f = semaphore_pair ] && nopt="--n $SYNC_SEM_N"
        record pollen "$r" $POLLEN_SYNC $f $nopt
        record pollen_mt1 "$r" $POLLEN_SYNC $f $nopt --workers 1 --driver workers
        record pollen_mt2w "$r" $POLLEN_SYNC $f $nopt --workers 2 --driver workers
        if [ $HAVE_TOKIO = yes ]; then
            record tokio_ct "$r" "$TOKIO_DIR/sync" $f $nopt
            record tokio_mt1 "$r" "$TOKIO_DIR/sync" $f $nopt --workers 1
            record tokio_mt2 "$r" "$TOKIO_DIR/sync" $f $nopt --workers 2
        fi
    done
}

TIMER_FIGS="timers_many timer_memory timer_cancel"
suite_timers() {  # run
    r=$1
    for f in $TIMER_FIGS; do
        nopt=""
        [ $f = timers_many ] && nopt="--n $TIMERS_N"
        [ $f = timer_cancel ] && nopt="--n $TC_N"
        say "  [run $r/$RUNS $(elapsed)] timers: $f"
        record pollen "$r" $POLLEN_TIMERS $f $nopt
        record pollen_mt1 "$r" $POLLEN_TIMERS $f $nopt --workers 1 --driver workers
        if [ $((r % 2)) = 1 ]; then
            record pollen_mt2w "$r" $POLLEN_TIMERS $f $nopt --workers 2 --driver workers
            record pollen_mt2r "$r" $POLLEN_TIMERS $f $nopt --workers 2 --driver reactor
        else
            record pollen_mt2r "$r" $POLLEN_TIMERS $f $nopt --workers 2 --driver reactor
            record pollen_mt2w "$r" $POLLEN_TIMERS $f $nopt --workers 2 --driver workers
        fi
        if [ $HAVE_TOKIO = yes ]; then
            record tokio_ct "$r" "$TOKIO_DIR/timers" $f $nopt
            record tokio_mt1 "$r" "$TOKIO_DIR/timers" $f $nopt --workers 1
            record tokio_mt2 "$r" "$TOKIO_DIR/timers" $f $nopt --workers 2
        fi
        [ $HAVE_UV = yes ] && [ -x "$UV_TIMERS" ] && record libuv "$r" $UV_TIMERS $f $nopt
    done
}

# The scheduler against Tokio's benches/rt_multi_threaded.rs shapes
# (bench_sched.c, sched.rs).  pollen_mtc: as many workers as the CPUs,
# only when that is not 2.
SCHED_FIGS="spawn_many_local spawn_many_remote_idle spawn_many_remote_busy1 spawn_many_remote_busy2 yield_many ping_pong chained_spawn spawn_counter"
SCHED_MTC=
[ "$NCPU" != 2 ] && SCHED_MTC=pollen_mtc
suite_sched() {  # run
    r=$1
    [ -x "$POLLEN_SCHED" ] || { say "  skip sched: $POLLEN_SCHED not built"; return; }
    for f in $SCHED_FIGS; do
        say "  [run $r/$RUNS $(elapsed)] sched: $f"
        o="$SCHED_OPTS $SCHED_DEADLINE"
        [ $f = spawn_counter ] && o="$SCHED_OPTS --n $SCHED_COUNTER_N"
        # the order rotates every run, so no peer always goes first
        set -- pollen_mt1 tokio_mt1 pollen_mt2w tokio_mt2 $SCHED_MTC
        k=$(( (r - 1) % $# ))
        while [ $k -gt 0 ]; do p=$1; shift; set -- "$@" "$p"; k=$((k - 1)); done
        for p in "$@"; do
            case $p in
                pollen_mt1) record $p "$r" $POLLEN_SCHED $f $o --workers 1 --driver workers ;;
                pollen_mt2w) record $p "$r" $POLLEN_SCHED $f $o --workers 2 --driver workers ;;
                pollen_mtc) record $p "$r" $POLLEN_SCHED $f $o --workers cpus --driver workers ;;
                tokio_mt1) [ $HAVE_TOKIO = yes ] && record $p "$r" "$TOKIO_DIR/sched" $f $o --workers 1 ;;
                tokio_mt2) [ $HAVE_TOKIO = yes ] && record $p "$r" "$TOKIO_DIR/sched" $f $o --workers 2 ;;
            esac
        done
        # say so when an iteration passed its deadline (the program gave up)
        grep " $r $f .*finished=0" "$RAW" | while IFS= read -r line; do
            say "    ${line%% *}: $f did not finish an iteration within its deadline (finished=0)"
        done
    done
}

# Fibers against stackless tasks (bench_fiber.c; each line of a figure is
# the median of 5 repetitions in one process) and Tokio current_thread's
# yield_many (rt peer; the same shape as fiber_yield_many).
suite_fiber() {  # run
    r=$1
    [ -x "$POLLEN_FIBER" ] || { say "  skip fiber: $POLLEN_FIBER not built"; return; }
    say "  [run $r/$RUNS $(elapsed)] fibers: context switch x $FIBER_SWITCH_N, yield x $FIBER_YIELD_N, yield_many, spawn"
    record pollen "$r" $POLLEN_FIBER switch --n "$FIBER_SWITCH_N"
    record pollen "$r" $POLLEN_FIBER yield --n "$FIBER_YIELD_N"
    record pollen "$r" $POLLEN_FIBER yield_many
    [ $HAVE_TOKIO = yes ] && record tokio_ct_f "$r" "$TOKIO_DIR/rt" yield_many
    record pollen "$r" $POLLEN_FIBER spawn
}

# ---- starting a server ----------------------------------------------------------
# Listening ports below the ephemeral range (32768-60999 by default), where
# other programs' client sockets could hold the port we pick.
PORT=$(( 20000 + $$ % 10000 ))

# run_on_port PORT CMD...: exec CMD (pinned like the echo servers) with each
# argument @PORT@ replaced by PORT; run in the background, the pid stays
# the server's (taskset and env exec too).
run_on_port() {
    p=$1; shift
    n=$#
    while [ $n -gt 0 ]; do
        a=$1; shift
        [ "$a" = @PORT@ ] && a=$p
        set -- "$@" "$a"
        n=$((n - 1))
    done
    exec $PIN_SERVER "$@"
}

# start_server PEER CMD...: start CMD (each @PORT@ replaced by a free port)
# pinned like the echo servers, its output appended to $SERVER_LOG (default
# $LOG); sets spid and PORT once it listens.  A server that exits or does
# not listen within 5 s is retried on the next port, 3 ports in all; then
# spid is empty and it returns 1.
SERVER_LOG=
start_server() {
    peer=$1; shift
    slog=${SERVER_LOG:-$LOG}
    tries=0
    while :; do
        PORT=$((PORT + 1))
        run_on_port "$PORT" "$@" >>"$slog" 2>&1 &
        spid=$!
        # wait until it listens (up to 5 s)
        i=0
        while ! $LOADGEN --probe --port "$PORT" 2>/dev/null; do
            i=$((i + 1))
            if [ $i -gt 250 ] || ! kill -0 $spid 2>/dev/null; then
                kill $spid 2>/dev/null; wait $spid 2>/dev/null
                spid=
                break
            fi
            sleep 0.02
        done
        # listening, and it is ours (not another program's on the same port)
        if [ -n "$spid" ]; then
            sleep 0.05
            kill -0 $spid 2>/dev/null && return 0
            wait $spid 2>/dev/null
        fi
        tries=$((tries + 1))
        if [ $tries -ge 3 ]; then
            say "    $peer: server '$*' did not start (3 ports tried, see $slog)"
            spid=
            return 1
        fi
    done
}

# echo_one PEER RUN CONNS SIZE SERVER-CMD...  (ECHO_RATE set: fixed rate;
# ECHO_CHURN set: connection churn, CONNS slots)
echo_one() {
    peer=$1; run=$2; conns=$3; size=$4; shift 4
    ename=echo_c${conns}_s${size}
    eopt=""
    esecs=$ECHO_SECS; ewarm=$ECHO_WARM
    if [ -n "${ECHO_RATE:-}" ]; then
        ename=${ename}_r$ECHO_RATE
        eopt="--rate $ECHO_RATE"
    elif [ -n "${ECHO_CHURN:-}" ]; then
        ename=churn_c${conns}_s${size}
        eopt=--churn
        esecs=$CHURN_SECS; ewarm=$CHURN_WARM
    fi
    start_server "$peer" "$@" @PORT@ || return 1
    if record "$peer" "$run" $PIN_CLIENT $LOADGEN --port "$PORT" --conns "$conns" --size "$size" \
        --secs "$esecs" --warmup "$ewarm" --server-pid "$spid" --name "$ename" $eopt &&
       [ -n "${ECHO_CHURN:-}" ]; then
        # errors below the limit, or descriptors the server kept: say so
        last=$(tail -n 1 "$RAW")
        case " $last " in
            *" errors=0 "*) ;;
            *) say "    $peer: connection errors in $ename, under 0.1%, run kept (see $LOG):$(printf '%s\n' "$last" | tr ' ' '\n' | grep -e '^started=' -e '^errors=' | tr '\n' ' ')" ;;
        esac
        case " $last " in
            *" server_fds_left=0 "*) ;;
            *" server_fds_left="*) say "    $peer: the server holds more descriptors after $ename than before (see $LOG)" ;;
        esac
    fi
    kill $spid 2>/dev/null
    wait $spid 2>/dev/null
    return 0
}

# echo_pollen RUN CONNS SIZE: pollen's current-thread echo server on epoll,
# then on io_uring (column pollen-uring); the two swap places every run.
echo_pollen() {
    if [ $(($1 % 2)) = 1 ]; then
        echo_one pollen "$1" "$2" "$3" env POLLEN_BACKEND=epoll $POLLEN_ECHO
        [ $HAVE_URING = yes ] && echo_one pollen-uring "$1" "$2" "$3" env POLLEN_BACKEND=uring $POLLEN_ECHO
    else
        [ $HAVE_URING = yes ] && echo_one pollen-uring "$1" "$2" "$3" env POLLEN_BACKEND=uring $POLLEN_ECHO
        echo_one pollen "$1" "$2" "$3" env POLLEN_BACKEND=epoll $POLLEN_ECHO
    fi
}

# echo_peers RUN CONNS SIZE: the echo servers of the first table, in this
# order: pollen (epoll and io_uring, alternating), pollen multi-thread 1
# worker, Tokio current_thread and multi_thread 1 worker, libuv.
echo_peers() {
    echo_pollen "$1" "$2" "$3"
    echo_one pollen_mt1 "$1" "$2" "$3" $POLLEN_ECHO_W --workers 1
    if [ $HAVE_TOKIO = yes ]; then
        echo_one tokio_ct "$1" "$2" "$3" "$TOKIO_DIR/echo_server" --workers 0 --port
        echo_one tokio_mt1 "$1" "$2" "$3" "$TOKIO_DIR/echo_server" --workers 1 --port
    fi
    [ $HAVE_UV = yes ] && echo_one libuv "$1" "$2" "$3" $UV_ECHO
    return 0
}

# echo_sharded RUN CONNS SIZE: the 2-shard echo server on epoll (column
# pollen sharded 2 (epoll)), then on io_uring (pollen sharded 2
# (io_uring)); the two swap places every run.
echo_sharded() {
    [ $HAVE_SHARDS = yes ] || return 0
    if [ $(($1 % 2)) = 1 ]; then set -- "$@" epoll uring; else set -- "$@" uring epoll; fi
    for be in $4 $5; do
        case $be in epoll) p=pollen_sh2 ;; *) p=pollen_sh2u; [ $HAVE_URING_SH = yes ] || continue ;; esac
        echo_one $p "$1" "$2" "$3" env POLLEN_BACKEND=$be $POLLEN_ECHO_W --shards 2
    done
    return 0
}

# echo_mt_uring RUN CONNS SIZE: the 2-worker server on io_uring, with a
# ring per worker (column pollen mt(2) io_uring) and with one ring shared
# by the workers (pollen mt(2) io_uring shared); the two swap places every
# run.
echo_mt_uring() {
    [ $HAVE_URING = yes ] || return 0
    if [ $(($1 % 2)) = 1 ]; then set -- "$@" per-worker shared; else set -- "$@" shared per-worker; fi
    for rings in $4 $5; do
        case $rings in per-worker) p=pollen_mt2wu ;; *) p=pollen_mt2wus ;; esac
        echo_one $p "$1" "$2" "$3" env POLLEN_BACKEND=uring POLLEN_URING_RINGS=$rings \
            $POLLEN_ECHO_W --workers 2 --driver workers
    done
    return 0
}

suite_echo() {  # run
    r=$1
    [ -x "$LOADGEN" ] || { say "  skip echo: $LOADGEN not built"; return; }
    for g in $ECHO_GRID; do
        c=${g%%:*}; s=${g#*:}
        say "  [run $r/$RUNS $(elapsed)] tcp echo: $c connections x $s B, ${ECHO_SECS} s"
        # the fiber server next to pollen's (the first of echo_peers) or,
        # every other run, after the last peer
        [ $((r % 2)) = 1 ] && echo_one pollen_fib "$r" "$c" "$s" $POLLEN_ECHO_W --fibers
        echo_peers "$r" "$c" "$s"
        [ $((r % 2)) = 0 ] && echo_one pollen_fib "$r" "$c" "$s" $POLLEN_ECHO_W --fibers
        case " $ECHO_MT_GRID " in *" $g "*) ;; *) continue ;; esac
        # multi-thread servers with 2 workers and the 2-shard servers (both
        # threads pinned to CPU 0 like the others); the order reverses every run
        if [ $((r % 2)) = 1 ]; then
            echo_one pollen_fib_mt2w "$r" "$c" "$s" $POLLEN_ECHO_W --workers 2 --driver workers --fibers
            echo_one pollen_mt2w "$r" "$c" "$s" $POLLEN_ECHO_W --workers 2 --driver workers
            echo_one pollen_mt2r "$r" "$c" "$s" $POLLEN_ECHO_W --workers 2 --driver reactor
            echo_mt_uring "$r" "$c" "$s"
            echo_sharded "$r" "$c" "$s"
        else
            echo_sharded "$r" "$c" "$s"
            echo_mt_uring "$r" "$c" "$s"
            echo_one pollen_mt2r "$r" "$c" "$s" $POLLEN_ECHO_W --workers 2 --driver reactor
            echo_one pollen_mt2w "$r" "$c" "$s" $POLLEN_ECHO_W --workers 2 --driver workers
            echo_one pollen_fib_mt2w "$r" "$c" "$s" $POLLEN_ECHO_W --workers 2 --driver workers --fibers
        fi
        [ $HAVE_TOKIO = yes ] && echo_one tokio_mt2 "$r" "$c" "$s" "$TOKIO_DIR/echo_server" --workers 2 --port
    done
    # fixed rate (open loop): latency from the intended send time
    for g in $ECHO_RATE_GRID; do
        c=${g%%:*}; rest=${g#*:}; s=${rest%%:*}; ECHO_RATE=${rest#*:}
        say "  [run $r/$RUNS $(elapsed)] tcp echo, fixed rate: $c connections x $s B, $ECHO_RATE msgs/s, ${ECHO_SECS} s"
        echo_peers "$r" "$c" "$s"
        echo_one pollen_mt2w "$r" "$c" "$s" $POLLEN_ECHO_W --workers 2 --driver workers
        [ $HAVE_TOKIO = yes ] && echo_one tokio_mt2 "$r" "$c" "$s" "$TOKIO_DIR/echo_server" --workers 2 --port
        ECHO_RATE=
    done
}

# ---- connection churn ----------------------------------------------------------
# The echo servers of the first table, each loaded by `echo_load --churn`:
# CONNS slots, each connecting, echoing SIZE bytes once and closing, again
# and again.
suite_churn() {  # run
    r=$1
    [ -x "$LOADGEN" ] || { say "  skip churn: $LOADGEN not built"; return; }
    ECHO_CHURN=1
    for g in $CHURN_GRID; do
        c=${g%%:*}; s=${g#*:}
        say "  [run $r/$RUNS $(elapsed)] tcp connection churn: $c slots x $s B (connect, echo, close), ${CHURN_SECS} s"
        echo_peers "$r" "$c" "$s"
    done
    ECHO_CHURN=
}

# ---- HTTP plaintext ----------------------------------------------------------
# utime+stime of a process (all its threads), in clock ticks
cpu_ticks() {  # PID: fields 14 and 15 of /proc/PID/stat, after "(comm) "
    st=$(cat "/proc/$1/stat") || return 1
    set -- ${st##*) }
    echo $(( ${12} + ${13} ))
}
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)

# http_one PEER RUN SERVER-CMD... (with @PORT@)
http_one() {
    peer=$1; run=$2; shift 2
    start_server "$peer" "$@" || return 1
    url=http://127.0.0.1:$PORT/plaintext
    [ "$HTTP_WARM" -gt 0 ] && $PIN_CLIENT wrk -t1 -c"$HTTP_CONNS" -d"${HTTP_WARM}s" "$url" >/dev/null 2>>"$LOG"
    t0=$(cpu_ticks $spid)
    out=$($PIN_CLIENT wrk -t1 -c"$HTTP_CONNS" -d"${HTTP_SECS}s" --latency "$url" 2>>"$LOG")
    rc=$?
    t1=$(cpu_ticks $spid)
    kill $spid 2>/dev/null
    wait $spid 2>/dev/null
    printf '%s %s wrk:\n%s\n' "$peer" "$run" "$out" >>"$LOG"
    line=$(printf '%s\n' "$out" | python3 bench/report.py wrk --t0 "$t0" --t1 "$t1" \
        --hz "$CLK_TCK" --name "http_c$HTTP_CONNS")
    if [ $rc -ne 0 ] || [ -z "$line" ]; then
        say "    $peer: wrk failed or saw errors (exit $rc), run dropped (see $LOG)"
        return 1
    fi
    printf '%s %s %s\n' "$peer" "$run" "$line" >>"$RAW"
}

suite_http() {  # run
    r=$1
    command -v wrk >/dev/null 2>&1 || { say "  skip http: wrk not found"; return; }
    [ -x "$LOADGEN" ] || { say "  skip http: $LOADGEN (used to probe the port) not built"; return; }
    if [ ! -x "$POLLEN_HTTP" ]; then
        make --no-print-directory "$POLLEN_HTTP" >>"$LOG" 2>&1 ||
            { say "  skip http: $POLLEN_HTTP not built"; return; }
    fi
    say "  [run $r/$RUNS $(elapsed)] http plaintext: wrk -t1 -c$HTTP_CONNS, ${HTTP_SECS} s x $HTTP_REPS per server"
    # the order rotates every run, so no peer always goes first; with
    # HTTP_REPS > 1 the whole round is repeated (each window one sample)
    set -- pollen pollen-uring pollen_mt1 tokio_ct tokio_mt1 libuv pollen_mt2w tokio_mt2
    k=$(( (r - 1) % $# ))
    while [ $k -gt 0 ]; do p=$1; shift; set -- "$@" "$p"; k=$((k - 1)); done
    rep=1
    while [ $rep -le "$HTTP_REPS" ]; do
        http_round "$r" "$@"
        rep=$((rep + 1))
    done
}

http_round() {  # RUN PEER...: one wrk window for each peer, in that order
    r=$1; shift
    for p in "$@"; do
        case $p in
            pollen) http_one pollen "$r" env POLLEN_BACKEND=epoll $POLLEN_HTTP @PORT@ ;;
            pollen-uring) [ $HAVE_URING = yes ] && http_one pollen-uring "$r" env POLLEN_BACKEND=uring $POLLEN_HTTP @PORT@ ;;
            pollen_mt1) http_one pollen_mt1 "$r" $POLLEN_HTTP @PORT@ 1 ;;
            pollen_mt2w) http_one pollen_mt2w "$r" $POLLEN_HTTP @PORT@ 2 ;;
            tokio_*)
                [ $HAVE_TOKIO = yes ] || continue
                case $p in tokio_ct) w=0 ;; tokio_mt1) w=1 ;; *) w=2 ;; esac
                http_one $p "$r" "$TOKIO_DIR/http_server" --workers $w --port @PORT@ ;;
            libuv) [ $HAVE_UV = yes ] && http_one libuv "$r" $UV_HTTP @PORT@ ;;
        esac
    done
}

# ---- memory per idle connection ------------------------------------------------
# Each echo server, started with its open-file soft limit raised (through
# $RES/nofile.sh: `ulimit -Sn` then exec, so the pid stays the server's),
# gets IDLE_CONNS connections that never send, from `echo_load --idle`
# (which raises its own limit): (VmRSS after they are all accepted - VmRSS
# before) / IDLE_CONNS.
NOFILE_SH=$RES/nofile.sh
printf '%s\n' 'ulimit -Sn "$1" || exit 1; shift; exec "$@"' >"$NOFILE_SH"
idle_one() {  # PEER RUN SERVER-CMD... (with @PORT@)
    peer=$1; run=$2; shift 2
    start_server "$peer" sh "$NOFILE_SH" "$IDLE_NOFILE" "$@" || return 1
    record "$peer" "$run" $PIN_CLIENT $LOADGEN --port "$PORT" --idle "$IDLE_CONNS" \
        --server-pid "$spid" --name "idle_c$IDLE_CONNS"
    kill $spid 2>/dev/null
    wait $spid 2>/dev/null
}

suite_idle() {  # run
    r=$1
    [ -x "$LOADGEN" ] || { say "  skip idle: $LOADGEN not built"; return; }
    IDLE_NOFILE=$((IDLE_CONNS + 1024))
    h=$(ulimit -Hn)
    if [ "$h" != unlimited ] && [ "$h" -lt "$IDLE_NOFILE" ]; then
        IDLE_NOFILE=$h
        [ "$h" -lt $((IDLE_CONNS + 64)) ] &&
            { say "  skip idle: open-file hard limit $h < $IDLE_CONNS + 64"; return; }
    fi
    say "  [run $r/$RUNS $(elapsed)] idle connections: $IDLE_CONNS per echo server, RSS bytes/conn"
    # the order rotates every run, so no peer always goes first
    set -- pollen pollen_fib pollen_mt1 tokio_ct tokio_mt1 libuv pollen_mt2w tokio_mt2
    k=$(( (r - 1) % $# ))
    while [ $k -gt 0 ]; do p=$1; shift; set -- "$@" "$p"; k=$((k - 1)); done
    for p in "$@"; do
        case $p in
            pollen) idle_one pollen "$r" $POLLEN_ECHO @PORT@ ;;
            pollen_fib) idle_one pollen_fib "$r" $POLLEN_ECHO_W --fibers @PORT@ ;;
            pollen_mt1) idle_one pollen_mt1 "$r" $POLLEN_ECHO_W --workers 1 @PORT@ ;;
            pollen_mt2w) idle_one pollen_mt2w "$r" $POLLEN_ECHO_W --workers 2 --driver workers @PORT@ ;;
            tokio_*)
                [ $HAVE_TOKIO = yes ] || continue
                case $p in tokio_ct) w=0 ;; tokio_mt1) w=1 ;; *) w=2 ;; esac
                idle_one $p "$r" "$TOKIO_DIR/echo_server" --workers $w --port @PORT@ ;;
            libuv) [ $HAVE_UV = yes ] && idle_one libuv "$r" $UV_ECHO @PORT@ ;;
        esac
    done
}

# check_uring: start the echo server once with POLLEN_BACKEND=uring; when
# it does not listen (it exits at start: io_uring not built in, or refused
# by the kernel), skip the pollen-uring column with its last output line.
# Then the same for the 2-shard server (column pollen sharded 2
# (io_uring)), when the echo suite runs it; a shard whose runtime fails
# says "stopped" while the other one keeps the process alive.
check_uring() {
    [ -x "$POLLEN_ECHO" ] && [ -x "$LOADGEN" ] || return 0
    : >"$RES/uring_check.log"
    SERVER_LOG=$RES/uring_check.log
    if start_server pollen-uring env POLLEN_BACKEND=uring $POLLEN_ECHO @PORT@; then
        kill $spid 2>/dev/null
        wait $spid 2>/dev/null
    else
        HAVE_URING=no
        skip_peer pollen-uring "POLLEN_BACKEND=uring $POLLEN_ECHO does not start: $(tail -n 1 "$RES/uring_check.log")"
    fi
    case " $ONLY " in *" echo "*) ;; *) SERVER_LOG=; return 0 ;; esac
    [ -n "$ECHO_MT_GRID" ] && [ $HAVE_URING_SH = yes ] || { SERVER_LOG=; return 0; }
    if [ $HAVE_URING = no ]; then
        HAVE_URING_SH=no
        skip_peer "pollen sharded 2 (io_uring)" "io_uring unavailable (see pollen-uring)"
    else
        : >"$RES/uring_check.log"
        if start_server "pollen sharded 2 (io_uring)" env POLLEN_BACKEND=uring $POLLEN_ECHO_W --shards 2 @PORT@; then
            kill $spid 2>/dev/null
            wait $spid 2>/dev/null
            if grep -q stopped "$RES/uring_check.log"; then
                HAVE_URING_SH=no
                skip_peer "pollen sharded 2 (io_uring)" "POLLEN_BACKEND=uring $POLLEN_ECHO_W --shards 2: $(grep -m1 stopped "$RES/uring_check.log")"
            fi
        else
            HAVE_URING_SH=no
            skip_peer "pollen sharded 2 (io_uring)" "POLLEN_BACKEND=uring $POLLEN_ECHO_W --shards 2 does not start: $(tail -n 1 "$RES/uring_check.log")"
        fi
    fi
    SERVER_LOG=
    return 0
}
case " $ONLY " in
    *" echo "*|*" churn "*|*" http "*) [ "$REPORT_ONLY" = 1 ] || check_uring ;;
esac

LOAD0=$(cut -d' ' -f1 /proc/loadavg)
say "pollen bench: QUICK=$QUICK, $RUNS runs per figure, suites: $ONLY, pinned: $PINNED, load average $LOAD0"
if python3 bench/report.py busy "$LOAD0" "$NCPU"; then
    say "warning: load average $LOAD0 on $NCPU CPUs: other work is running, expect wide spreads${TOKIO_BUILT:+ (or the Tokio build that just ran)}"
fi
r=1
[ "$REPORT_ONLY" = 1 ] && r=$((RUNS + 1))
while [ $r -le "$RUNS" ]; do
    for s in $ONLY; do
        case $s in
            sleep) suite_sleep $r ;;
            runtime) suite_runtime $r ;;
            sync) suite_sync $r ;;
            timers) suite_timers $r ;;
            sched) suite_sched $r ;;
            fiber) suite_fiber $r ;;
            echo) suite_echo $r ;;
            churn) suite_churn $r ;;
            http) suite_http $r ;;
            idle) suite_idle $r ;;
        esac
    done
    r=$((r + 1))
done
LOAD1=$(cut -d' ' -f1 /proc/loadavg)
say "done in $(elapsed), load average $LOAD1"

# ---- the tables ---------------------------------------------------------------------
# bench/report.py: latest.md, latest.json and latest.svg in $OUTDIR from
# $RAW, the table on stdout, then the comparison with the previous run.
python3 bench/report.py report --raw "$RAW" --out "$OUTDIR" --res "$RES" \
    --runs "$RUNS" --quick "$QUICK" --ncpu "$NCPU" --pinned "$PINNED" \
    --load "$LOAD0 -> $LOAD1" --skipped "$SKIPPED" --uring-note "$URING_NOTE" \
    --tokio-version "$TOKIO_VERSION" \
    --sleep-count "$SLEEP_COUNT" --rt-n "$RT_N" --timers-n "$TIMERS_N" --tc-n "$TC_N" \
    --sync-mpsc-n "$SYNC_MPSC_N" --sched-counter-n "$SCHED_COUNTER_N" \
    --echo-grid "$ECHO_GRID" --echo-mt-grid "$ECHO_MT_GRID" --echo-rate-grid "$ECHO_RATE_GRID" --churn-grid "$CHURN_GRID" \
    --echo-secs "$ECHO_SECS" --echo-warm "$ECHO_WARM" \
    --churn-secs "$CHURN_SECS" --churn-warm "$CHURN_WARM" \
    --http-secs "$HTTP_SECS" --http-reps "$HTTP_REPS" --http-conns "$HTTP_CONNS" \
    --idle-conns "$IDLE_CONNS" --fiber-switch-n "$FIBER_SWITCH_N" --fiber-yield-n "$FIBER_YIELD_N"
