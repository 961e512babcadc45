#!/bin/sh
# bench/profile.sh - where a TCP echo server's CPU time goes, for pollen
# (epoll and io_uring) and its peers (Tokio current_thread, libuv), and so
# how much faster any runtime could make that server.
#
#   sh bench/profile.sh                  # 50 connections x 64 B, 3 runs
#   CONNS=1000 SIZE=4096 RUNS=5 sh bench/profile.sh
#   WORKLOAD=http sh bench/profile.sh    # HTTP plaintext, wrk -t1 -c$CONNS
#
# Needs perf (Debian: linux-perf) and the bench programs (`make
# bench-build`).  The server runs pinned to CPU 0, the load generator
# (bench/loadgen/echo_load) to CPU 1, as in bench/run.sh.  After a second of
# warm-up, `perf record -e cpu-clock -g -p SERVER` samples the server for
# SECS-1 seconds (cpu-clock is a software event: it samples on VMs that
# have no hardware performance counters).  Each sample is then put in one
# of three classes, from its call chain:
#
#   data path  - under tcp_sendmsg or tcp_recvmsg: the kernel's TCP work of
#                receiving each message and sending it back, which every
#                server does the same (on loopback the send also delivers
#                the segment into the client's socket and wakes it);
#   user       - the server's own code and its libraries (the runtime, the
#                allocator, libc);
#   other      - the rest of the kernel: syscall entry and exit, epoll or
#                io_uring bookkeeping, the scheduler, page faults.
#
# "user" and "other" are what a runtime decides; the data path is not.  So
# 100 / data-path% bounds how much less CPU per message an ideal runtime
# (no user code, no syscalls beyond the data path) could spend than this
# server: the "ceiling" column.  The load generator reports the server's
# CPU µs per message (utime+stime over the measured window), from which the
# µs columns are derived (HTTP: the server's utime+stime over the wrk
# window divided by the requests wrk completed, as in bench/run.sh).  Figures are medians of RUNS runs; the runs of the
# servers are interleaved.  Output: a Markdown table on stdout, raw
# `perf report` output in $OUT (build/bench/profile).
set -eu

BENCH_BIN=${BENCH_BIN:-build/bench}
WORKLOAD=${WORKLOAD:-echo}
CONNS=${CONNS:-50}
SIZE=${SIZE:-64}
SECS=${SECS:-4}
RUNS=${RUNS:-3}
OUT=${OUT:-build/bench/profile}
LOADGEN=$BENCH_BIN/loadgen/echo_load
TOKIO=$BENCH_BIN/tokio/release/${WORKLOAD}_server
UV=$BENCH_BIN/peers/uv_${WORKLOAD}_server
POLLEN=build/examples/${WORKLOAD}_server
case $WORKLOAD in
    echo) ;;
    http) command -v wrk >/dev/null 2>&1 || { echo "profile: wrk not found" >&2; exit 1; } ;;
    *) echo "profile: WORKLOAD is echo or http" >&2; exit 1 ;;
esac

command -v perf >/dev/null 2>&1 ||
    { echo "profile: perf not found (Debian: apt-get install linux-perf)" >&2; exit 1; }
[ -x "$LOADGEN" ] && [ -x "$POLLEN" ] ||
    { echo "profile: build first: make bench-build" >&2; exit 1; }
mkdir -p "$OUT"
PORT=$((20000 + $$ % 5000))

# utime+stime of a process (all its threads), in clock ticks
ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

# one PEER RUN CMD... (the port is appended): one profiled window; appends
# "PEER us_per_msg user_pct data_pct" to $OUT/samples.
one() {
    peer=$1; run=$2; shift 2
    PORT=$((PORT + 1))
    taskset -c 0 "$@" "$PORT" >/dev/null 2>&1 &
    spid=$!
    i=0
    until "$LOADGEN" --probe --port "$PORT" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt 250 ]; then echo "profile: $peer did not start" >&2; kill $spid; return 1; fi
        sleep 0.02
    done
    if [ "$WORKLOAD" = echo ]; then
        taskset -c 1 "$LOADGEN" --port "$PORT" --conns "$CONNS" --size "$SIZE" --secs "$SECS" \
            --warmup 1 --server-pid "$spid" --name x >"$OUT/load.txt" 2>&1 &
    else
        t0=$(ticks $spid)
        taskset -c 1 wrk -t1 -c"$CONNS" -d"$((SECS + 1))s" "http://127.0.0.1:$PORT/plaintext" \
            >"$OUT/load.txt" 2>&1 &
    fi
    lpid=$!
    sleep 1.2
    data=$OUT/$peer.$run.data
    perf record -q -e cpu-clock -F 4999 -g -p "$spid" -o "$data" -- sleep $((SECS - 1)) 2>/dev/null
    wait $lpid
    if [ "$WORKLOAD" = echo ]; then
        us=$(sed -n 's/.*server_us_per_msg=\([0-9.]*\).*/\1/p' "$OUT/load.txt" | tail -1)
    else
        t1=$(ticks $spid)
        n=$(awk '$2 == "requests" && $3 == "in" { print $1 }' "$OUT/load.txt")
        us=$(echo "$t0 $t1 $n $(getconf CLK_TCK)" | awk '{ printf "%.3f", ($2 - $1) * 1e6 / $4 / $3 }')
    fi
    kill $spid; wait $spid 2>/dev/null || true
    # kernel share (by object), then the data path (children of the two
    # TCP entry points; a chain holds at most one of them)
    perf report -i "$data" --no-children --stdio -g none --sort dso 2>/dev/null >"$OUT/$peer.$run.dso"
    perf report -i "$data" --children --stdio -g none --sort sym 2>/dev/null >"$OUT/$peer.$run.sym"
    kern=$(awk '$2 == "[kernel.kallsyms]" { sub(/%/, "", $1); print $1 }' "$OUT/$peer.$run.dso")
    dp=$(awk '$NF == "tcp_sendmsg" || $NF == "tcp_recvmsg" { sub(/%/, "", $1); s += $1 } END { print s + 0 }' \
        "$OUT/$peer.$run.sym")
    echo "$peer $us $(echo "${kern:-100}" | awk '{ print 100 - $1 }') $dp" >>"$OUT/samples"
}

: >"$OUT/samples"
r=1
while [ $r -le "$RUNS" ]; do
    one pollen-epoll $r env POLLEN_BACKEND=epoll "$POLLEN"
    one pollen-uring $r env POLLEN_BACKEND=uring "$POLLEN"
    [ -x "$TOKIO" ] && one tokio_ct $r "$TOKIO" --workers 0 --port
    [ -x "$UV" ] && one libuv $r "$UV"
    r=$((r + 1))
done

if [ "$WORKLOAD" = echo ]; then
    echo "TCP echo, $CONNS connections x $SIZE B, server on CPU 0, medians of $RUNS runs"
else
    echo "HTTP plaintext, wrk -t1 -c$CONNS, server on CPU 0, medians of $RUNS runs"
fi
echo "($(uname -r), $(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ))"
echo
echo "| server | µs/$( [ "$WORKLOAD" = echo ] && echo msg || echo req) | user % | data path % | other % | user µs | other µs | data path µs | ceiling |"
echo "|---|---|---|---|---|---|---|---|---|"
for p in pollen-epoll pollen-uring tokio_ct libuv; do
    awk -v p="$p" '
        function median(a, n,   i, j, t) {
            for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
            return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        $1 == p { n++; us[n] = $2; u[n] = $3; d[n] = $4; o[n] = 100 - $3 - $4 }
        END {
            if (!n) exit
            mu = median(us, n); mu_u = median(u, n); md = median(d, n); mo = median(o, n)
            printf "| %s | %.2f | %.1f | %.1f | %.1f | %.2f | %.2f | %.2f | %.2fx |\n",
                p, mu, mu_u, md, mo, mu * mu_u / 100, mu * mo / 100, mu * md / 100, 100 / md
        }' "$OUT/samples"
done
