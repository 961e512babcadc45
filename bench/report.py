#!/usr/bin/env python3
"""report.py - the tables, the JSON and the chart of pollen's benchmarks.

bench/run.sh starts the programs and appends their output to raw.txt; this
script turns raw.txt into the results (standard library only):

    python3 bench/report.py report --raw RAW --out DIR --res RES [sizes...]
        latest.md (three tables, and a fourth for fibers when the run
        measured them), latest.json (every run of every figure
        for every peer, with median, min, max, spread_pct) and latest.svg
        (the first table's ratios as bars) in DIR; the table on stdout;
        then, when RES/previous.json (the DIR/latest.json before this one)
        has the same sizes, the verdict of bench/compare.py on the two.
    python3 bench/report.py wrk --t0 T --t1 T --hz HZ --name NAME < wrk-output
        one raw line `NAME requests=... req_per_s=... p50_us=... p99_us=...
        server_us_per_req=...` from `wrk --latency` output and the server's
        CPU ticks before and after; exit 1 (no line) when wrk saw errors.
    python3 bench/report.py busy LOAD NCPU
        exit 0 when the load average LOAD is above NCPU / 2.

raw.txt lines: `<peer> <run> <figure> key=value ...`.  A row of a table
names a figure and a key; its cell for a peer is the median over every
line of that peer and figure, with ±half the spread (max-min)/median.
The rows and their labels follow the sizes run.sh ran with (the options).
Numbers in the JSON: integers as they are, others to 12 significant digits.
"""
import argparse
import contextlib
import datetime
import io
import json
import math
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys

# ---- what the tables show ------------------------------------------------

TITLES1 = {
    "pollen": "pollen", "pollen-uring": "pollen-uring",
    "pollen_mt1": "pollen multi_thread(1)", "tokio_ct": "Tokio current_thread",
    "tokio_mt1": "Tokio multi_thread(1)", "libuv": "libuv",
}
PEERS1 = ["pollen", "pollen-uring", "pollen_mt1", "tokio_ct", "tokio_mt1", "libuv"]

TITLES2 = {
    "pollen_mt1": "pollen mt(1) workers", "pollen_mt1r": "pollen mt(1) reactor",
    "pollen_mt2w": "pollen mt(2) workers", "pollen_mt2r": "pollen mt(2) reactor",
    "pollen_mt2wu": "pollen mt(2) io_uring", "pollen_mt2wus": "pollen mt(2) io_uring shared",
    "pollen_sh2": "pollen sharded 2 (epoll)", "pollen_sh2u": "pollen sharded 2 (io_uring)",
    "tokio_mt1": "Tokio mt(1)", "tokio_mt2": "Tokio mt(2)",
}
PEERS2 = ["pollen_mt1", "pollen_mt1r", "pollen_mt2w", "pollen_mt2r", "pollen_mt2wu",
          "pollen_mt2wus", "pollen_sh2", "pollen_sh2u", "tokio_mt1", "tokio_mt2"]
# ratio columns of the multi-thread table: peer a over peer b, "times better"
RATIOS2 = [
    ("pollen_mt2w", "tokio_mt2", "mt(2) workers vs Tokio mt(2)"),
    ("pollen_mt1", "tokio_mt1", "mt(1) workers vs Tokio mt(1)"),
    ("pollen_mt2r", "tokio_mt2", "mt(2) reactor vs Tokio mt(2)"),
    ("pollen_mt2w", "pollen_mt2r", "mt(2) workers vs reactor"),
    ("pollen_sh2", "tokio_mt2", "sharded 2 (epoll) vs Tokio mt(2)"),
    ("pollen_mt2wu", "pollen_mt2wus", "mt(2) io_uring: ring per worker vs shared"),
    ("pollen_mt2wu", "pollen_mt2w", "mt(2) io_uring vs epoll"),
]
SCHED_FIGS = ["spawn_many_local", "spawn_many_remote_idle", "spawn_many_remote_busy1",
              "spawn_many_remote_busy2", "yield_many", "ping_pong", "chained_spawn",
              "spawn_counter"]


def count_label(n):
    """1000000 -> 1M, 100000 -> 100k (whole units, rounded down)."""
    return "%dM" % (n // 1000000) if n >= 1000000 else "%dk" % (n // 1000)


def rows_main(a):
    """The rows of the first table: (id, label, figure, key, better, format)."""
    sc, rt, tm = a.sleep_count, count_label(a.rt_n), count_label(a.timers_n)
    tck = a.tc_n // 1000
    rows = [
        ("sleep5_p50", "sleep 5 ms x%d sequential: lateness p50 (µs)" % sc, "sleep_lateness_5ms", "p50_us", "lower", "%.1f"),
        ("sleep5_p99", "sleep 5 ms x%d sequential: lateness p99 (µs)" % sc, "sleep_lateness_5ms", "p99_us", "lower", "%.1f"),
        ("sleep1_p50", "sleep 1 ms x%d sequential: lateness p50 (µs)" % sc, "sleep_lateness_1ms", "p50_us", "lower", "%.1f"),
        ("sleep1_p99", "sleep 1 ms x%d sequential: lateness p99 (µs)" % sc, "sleep_lateness_1ms", "p99_us", "lower", "%.1f"),
        ("sleep10_p50", "sleep 10 ms x%d sequential: lateness p50 (µs)" % (sc // 3), "sleep_lateness_10ms", "p50_us", "lower", "%.1f"),
        ("sleep10_p99", "sleep 10 ms x%d sequential: lateness p99 (µs)" % (sc // 3), "sleep_lateness_10ms", "p99_us", "lower", "%.1f"),
        ("sleepc_p50", "1000 concurrent sleeps 1-50 ms: lateness p50 (µs)", "sleep_lateness_concurrent", "p50_us", "lower", "%.1f"),
        ("sleepc_p99", "1000 concurrent sleeps 1-50 ms: lateness p99 (µs)", "sleep_lateness_concurrent", "p99_us", "lower", "%.1f"),
        ("spawn_many", "spawn_many: %s tasks spawned from a task, then joined (M tasks/s)" % rt, "spawn_many", "tasks_per_s", "higher", "%.2fM"),
        ("spawn_many_remote", "spawn_many_remote: %s tasks spawned from a foreign thread, then joined (M tasks/s)" % rt, "spawn_many_remote", "tasks_per_s", "higher", "%.2fM"),
        ("yield_many", "yield_many: 1000 tasks x 1000 yields (M yields/s)", "yield_many", "yields_per_s", "higher", "%.2fM"),
        ("ping_pong", "ping_pong: 1000 pairs x 1000 round trips (M round trips/s) [a]", "ping_pong", "round_trips_per_s", "higher", "%.2fM"),
        ("chained_spawn", "chained_spawn: %s tasks, each spawns the next (M tasks/s)" % rt, "chained_spawn", "tasks_per_s", "higher", "%.2fM"),
        ("task_mem", "memory per pending task, 100k tasks: RSS bytes/task (incl. future)", "task_memory", "rss_bytes_per_task", "lower", "%.0f"),
        ("mpsc_tput", "mpsc bounded(1024), 4 producers, 1 consumer: %s messages (M msgs/s)" % count_label(a.sync_mpsc_n), "mpsc_throughput", "msgs_per_s", "higher", "%.2fM"),
        ("mutex", "async mutex, 100 tasks x 1000 lock/unlock (M locks/s)", "mutex_contention", "locks_per_s", "higher", "%.2fM"),
        ("sem_pair", "semaphore acquire(1) + release, uncontended, one task: ns per pair", "semaphore_pair", "ns_per_pair", "lower", "%.1f"),
        ("chan_mem", "memory per idle bounded(16) channel of 8-byte values, 100k channels: RSS bytes", "channel_memory", "bytes_per_channel", "lower", "%.0f"),
        ("waiter_mem", "memory per task waiting on a semaphore, 100k tasks: RSS bytes (incl. task)", "waiter_memory", "bytes_per_waiter", "lower", "%.0f"),
        ("timers_total", "%s concurrent sleeps 1-1000 ms: wall time, first spawn to last wake (ms) [b]" % tm, "timers_many", "total_ms", "lower", "%.0f"),
        ("timers_cpu", "%s concurrent sleeps 1-1000 ms: CPU time, all threads (ms) [b]" % tm, "timers_many", "cpu_ms", "lower", "%.0f"),
        ("timers_rss", "%s concurrent sleeps 1-1000 ms: peak RSS (MB) [b]" % tm, "timers_many", "peak_rss_mb", "lower", "%.0f"),
        ("timer_mem", "memory per pending timer, 100k sleeping tasks: RSS bytes/timer (incl. task) [b]", "timer_memory", "bytes_per_timer", "lower", "%.0f"),
        ("timer_cancel", "timeout armed then cancelled, 1000 tasks x %d: ns added to the await [c]" % tck, "timer_cancel", "arm_cancel_ns", "lower", "%.1f"),
        ("timer_ready", "timeout around a ready future, 1000 tasks x %d: ns per await" % tck, "timer_cancel", "ready_ns", "lower", "%.1f"),
    ]
    for g in a.echo_grid.split():
        c, _, s = g.partition(":")
        e = "echo_c%s_s%s" % (c, s)
        t = "echo %s conns x %s B" % (c, s)
        rows += [
            (e + "_us", t + ": server CPU µs/msg", e, "server_us_per_msg", "lower", "%.2f"),
            (e + "_rate", t + ": k msgs/s", e, "msgs_per_s", "higher", "%.1fk"),
            (e + "_p99", t + ": latency p99 (µs)", e, "p99_us", "lower", "%.0f"),
        ]
    for g in a.echo_rate_grid.split():
        c, _, rest = g.partition(":")
        s, _, q = rest.partition(":")
        e = "echo_c%s_s%s_r%s" % (c, s, q)
        t = "echo %s conns x %s B at a fixed %s msgs/s: " % (c, s, q)
        rows += [
            (e + "_p99", t + "latency p99 from the intended send (µs)", e, "p99_us", "lower", "%.0f"),
            (e + "_p999", t + "latency p99.9 from the intended send (µs)", e, "p999_us", "lower", "%.0f"),
            (e + "_missed", t + "sends behind schedule (% of msgs)", e, "missed_pct", "lower", "%.2f"),
        ]
    for g in a.churn_grid.split():
        c, _, s = g.partition(":")
        e = "churn_c%s_s%s" % (c, s)
        t = "connection churn %s conns x %s B (connect, echo, close): " % (c, s)
        rows += [
            (e + "_us", t + "server CPU µs/conn", e, "server_us_per_conn", "lower", "%.2f"),
            (e + "_rate", t + "k conns/s", e, "conns_per_s", "higher", "%.1fk"),
            (e + "_p99", t + "cycle latency p99 (µs)", e, "p99_us", "lower", "%.0f"),
        ]
    h = "http_c%d" % a.http_conns
    t = "HTTP plaintext, wrk -t1 -c%d: " % a.http_conns
    rows += [
        ("http_us", t + "server CPU µs/request", h, "server_us_per_req", "lower", "%.2f"),
        ("http_rate", t + "k requests/s", h, "req_per_s", "higher", "%.1fk"),
        ("http_p99", t + "latency p99 (µs)", h, "p99_us", "lower", "%.0f"),
        ("idle_mem", "memory per idle connection, %d connections to the echo server: RSS bytes/conn" % a.idle_conns,
         "idle_c%d" % a.idle_conns, "bytes_per_conn", "lower", "%.0f"),
    ]
    return rows


def rows_mt(a, main):
    """The multi-thread table: the first table's rows minus the 5 ms and
    1 ms sequential sleeps, 1000-connection echo and connection churn (not
    run on 2 workers), plus the scheduler shapes."""
    drop = ("sleep5_", "sleep1_", "echo_c1000", "churn")
    rows = [r for r in main if not r[0].startswith(drop)]
    s = " [s]"
    rows += [
        ("sched_sml", "spawn_many_local: 10k spawns from block_on, shared counter, the last signals (ns/task)" + s, "spawn_many_local", "ns_per_task", "lower", "%.1f"),
        ("sched_smri", "spawn_many_remote_idle: 10k spawns from outside, then joined (ns/task)" + s, "spawn_many_remote_idle", "ns_per_task", "lower", "%.1f"),
        ("sched_busy1", "spawn_many_remote_busy1: the same while 8 tasks yield + stall 10 µs (ns/task)" + s, "spawn_many_remote_busy1", "ns_per_task", "lower", "%.1f"),
        ("sched_busy1_fin", "spawn_many_remote_busy1: finished (1) or gave up at the deadline (0)" + s, "spawn_many_remote_busy1", "finished", "higher", "%.0f"),
        ("sched_busy2", "spawn_many_remote_busy2: 1k spawns from outside while 4 chains stall 10 µs + respawn (ns/task)" + s, "spawn_many_remote_busy2", "ns_per_task", "lower", "%.1f"),
        ("sched_busy2_fin", "spawn_many_remote_busy2: finished (1) or gave up at the deadline (0)" + s, "spawn_many_remote_busy2", "finished", "higher", "%.0f"),
        ("sched_yield", "yield_many: 200 tasks x 1000 yields (ns/yield)" + s, "yield_many", "ns_per_yield", "lower", "%.2f"),
        ("sched_ping", "ping_pong: 1000 x (spawn, spawn a peer, round trip over two oneshots) (ns/round trip)" + s, "ping_pong", "ns_per_round_trip", "lower", "%.1f"),
        ("sched_chain", "chained_spawn: 1000 tasks, each spawns the next (ns/task)" + s, "chained_spawn", "ns_per_task", "lower", "%.1f"),
        ("sched_counter", "spawn_counter: ONE task spawns %s, shared counter, the last notifies (ns/task)" % count_label(a.sched_counter_n) + s, "spawn_counter", "ns_per_task", "lower", "%.1f"),
    ]
    return rows


def rows_fiber(a):
    """The fiber table: a stackful figure beside its counterpart.  Each row:
    (id, label, better, format, fiber (peer, figure, key), other (peer,
    figure, key, convert), other's title, target).  convert: None, or
    "per_s_to_ns" (a rate per second shown as ns per unit)."""
    sw, yl = count_label(a.fiber_switch_n), count_label(a.fiber_yield_n)
    fut = "pollen future"
    rows = [
        ("fib_switch", "context switch, two contexts ping-pong, %s switches (ns/switch)" % sw,
         "lower", "%.1f", ("pollen", "ctx_switch_pollen", "ns_per_switch"),
         ("pollen", "ctx_switch_ucontext", "ns_per_switch", None), "glibc swapcontext", ""),
        ("fib_yield1", "one task yields %s times, current-thread (ns/yield)" % yl,
         "lower", "%.1f", ("pollen", "fiber_yield_1", "ns_per_yield"),
         ("pollen", "future_yield_1", "ns_per_yield", None), fut + " (PN_YIELD)", ""),
        ("fib_yieldm", "yield_many: 1000 tasks x 1000 yields, spawned and joined, current-thread (ns/yield)",
         "lower", "%.1f", ("pollen", "fiber_yield_many", "ns_per_yield"),
         ("pollen", "future_yield_many", "ns_per_yield", None), fut + " (PN_YIELD)", ""),
        ("fib_yieldm_tokio", "yield_many: 1000 tasks x 1000 yields, spawned and joined, current-thread (ns/yield)",
         "lower", "%.1f", ("pollen", "fiber_yield_many", "ns_per_yield"),
         ("tokio_ct_f", "yield_many", "yields_per_s", "per_s_to_ns"),
         "Tokio current_thread (yield_now)", ""),
        ("fib_spawn", "spawn + join 10k tasks that finish at once, current-thread (ns/task)",
         "lower", "%.0f", ("pollen", "fiber_spawn", "ns_per_task"),
         ("pollen", "future_spawn", "ns_per_task", None), fut, ""),
    ]
    for g in a.echo_grid.split():
        c, _, sz = g.partition(":")
        e = "echo_c%s_s%s" % (c, sz)
        t = "echo %s conns x %s B, current-thread: " % (c, sz)
        rows += [
            (e + "_fib_us", t + "server CPU µs/msg", "lower", "%.2f",
             ("pollen_fib", e, "server_us_per_msg"), ("pollen", e, "server_us_per_msg", None),
             "pollen futures", "<= 1.05"),
            (e + "_fib_rate", t + "k msgs/s", "higher", "%.1fk",
             ("pollen_fib", e, "msgs_per_s"), ("pollen", e, "msgs_per_s", None),
             "pollen futures", ""),
        ]
    for g in a.echo_mt_grid.split():
        c, _, sz = g.partition(":")
        e = "echo_c%s_s%s" % (c, sz)
        t = "echo %s conns x %s B, 2 workers: " % (c, sz)
        rows += [
            (e + "_fib_mt2_us", t + "server CPU µs/msg", "lower", "%.2f",
             ("pollen_fib_mt2w", e, "server_us_per_msg"), ("pollen_mt2w", e, "server_us_per_msg", None),
             "pollen futures", "<= 1.05"),
            (e + "_fib_mt2_rate", t + "k msgs/s", "higher", "%.1fk",
             ("pollen_fib_mt2w", e, "msgs_per_s"), ("pollen_mt2w", e, "msgs_per_s", None),
             "pollen futures", ""),
        ]
    i = "idle_c%d" % a.idle_conns
    rows.append(("idle_fib_mem", "memory per idle connection, %d connections, current-thread: RSS bytes/conn"
                 % a.idle_conns, "lower", "%.0f", ("pollen_fib", i, "bytes_per_conn"),
                 ("pollen", i, "bytes_per_conn", None), "pollen futures", "fiber <= 12288 B"))
    return rows


def fiber_table(a, stats):
    """Markdown lines and JSON figure lines of the fiber table; ([], []) when
    the run measured no fiber figure."""
    rows = rows_fiber(a)
    if not any(stats.get(r[4]) for r in rows):
        return [], []
    md = ["| figure | better | pollen fiber | compared with | that | fiber / that | target |",
          "|---|---|---|---|---|---|---|"]
    js = []

    def summary(v, form):
        v = sorted(v)
        m = statistics.median(v)
        spread = 100 * (v[-1] - v[0]) / abs(m) if m != 0 else 0
        return m, " %s ±%.0f%% |" % (cell(form, m), spread / 2), (
            '{"median": %s, "min": %s, "max": %s, "spread_pct": %.1f, "n": %d, "runs": [%s]}'
            % (jnum(m), jnum(v[0]), jnum(v[-1]), spread, len(v), ", ".join(jnum(x) for x in v)))

    for rid, label, better, form, fb, other, title, target in rows:
        row = "| %s | %s |" % (label, better)
        res = []
        vf = stats.get(fb, [])
        mf = mo = None
        if vf:
            mf, c, j = summary(vf, form)
            row += c
            res.append('"fiber": ' + j)
        else:
            row += " - |"
        row += " %s |" % title
        vo = stats.get(other[:3], [])
        if other[3] == "per_s_to_ns":
            vo = [1e9 / x for x in vo if x > 0]
        if vo:
            mo, c, j = summary(vo, form)
            row += c
            res.append('"other": ' + j)
        else:
            row += " - |"
        ratio = mf / mo if mf is not None and mo else None
        row += (" %.2f |" % ratio if ratio is not None else " - |") + " %s |" % (target or "")
        md.append(row)
        js.append('    {"id": %s, "label": %s, "better": %s, "compared_with": %s, "target": %s, '
                  '"results": {%s}, "ratio_fiber_over_other": %s}'
                  % (jstr(rid), jstr(label), jstr(better), jstr(title), jstr(target),
                     ", ".join(res), "null" if ratio is None else "%.4f" % ratio))
    md += ["",
           "Median of %d runs, ±half the spread (max-min)/median; each run of a bench_fiber row is "
           "itself the median of 5 repetitions in one process. fiber / that: the fiber's median "
           "over the other column's (below 1 is better on a \"lower\" row, above 1 on a "
           "\"higher\" one). pollen fiber: a stackful task (pollen/fiber.h, default 64 KiB stacks "
           "from the runtime's cache); echo and idle rows: `bench_echo_server --fibers`, the futures "
           "server's code as fibers (same 16 KiB read buffer, on the fiber's stack), against "
           "pollen's futures server in the same run (pinned alike)." % a.runs]
    return md, js


# ---- raw results -----------------------------------------------------------

NUM = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def number(text):
    """The number a value starts with (0 when none), as awk reads it."""
    m = NUM.match(text.strip())
    return float(m.group(0)) if m else 0.0


def read_raw(path):
    """raw.txt -> [(peer, run, figure, {key: value})] in file order."""
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            w = line.split()
            if len(w) < 3:
                continue
            kv = {}
            for field in w[3:]:
                parts = field.split("=")
                if len(parts) == 2:
                    kv.setdefault(parts[0], []).append(number(parts[1]))
            out.append((w[0], w[1], w[2], kv))
    return out


def samples(raw):
    """{(peer, figure, key): [values in file order]}"""
    s = {}
    for peer, _, fig, kv in raw:
        for k, vs in kv.items():
            s.setdefault((peer, fig, k), []).extend(vs)
    return s


def jnum(x):
    """A JSON number: 12 significant digits (hides (a+b)/2 rounding noise)."""
    if not math.isfinite(x):
        return "null"
    if x == int(x) and abs(x) < 1e15:
        return "%d" % x
    return "%.12g" % x


def jstr(s):
    return json.dumps(s, ensure_ascii=False)


def cell(form, v):
    if form.endswith("M"):
        return "%.2fM" % (v / 1e6)
    if form.endswith("k"):
        return "%.1fk" % (v / 1e3)
    return form % v


# ---- the tables --------------------------------------------------------------

def make_table(rows, peers, titles, stats, mt):
    """Markdown lines, JSON figure lines and chart bars of one table; mt:
    the multi-thread table (ratio columns) instead of the first one (pollen
    over the best other runtime)."""
    hdr = "| figure | better |" + "".join(" %s |" % titles[p] for p in peers)
    sep = "|---|---|" + "---|" * len(peers)
    if mt:
        hdr += "".join(" %s |" % r[2] for r in RATIOS2)
        sep += "---|" * len(RATIOS2)
    else:
        hdr += " pollen / best peer |"
        sep += "---|"
    md, js, bars = [hdr, sep], [], []
    for rid, label, fig, key, better, form in rows:
        row = "| %s | %s |" % (label, better)
        med, res = {}, []
        best = bestp = None
        for p in peers:
            v = sorted(stats.get((p, fig, key), []))
            if not v:
                row += " - |"
                continue
            m = statistics.median(v)
            med[p] = m
            spread = 100 * (v[-1] - v[0]) / abs(m) if m != 0 else 0
            row += " %s ±%.0f%% |" % (cell(form, m), spread / 2)
            res.append('%s: {"median": %s, "min": %s, "max": %s, "spread_pct": %.1f, "n": %d, "runs": [%s]}'
                       % (jstr(p), jnum(m), jnum(v[0]), jnum(v[-1]), spread, len(v),
                          ", ".join(jnum(x) for x in v)))
            # the best other runtime; lateness compares magnitudes (libuv can be early)
            if not p.startswith("pollen"):
                if best is None or (m > best if better == "higher" else abs(m) < abs(best)):
                    best, bestp = m, titles[p]
        head = '    {"id": %s, "label": %s, "better": %s, "results": {%s}' % (
            jstr(rid), jstr(label), jstr(better), ", ".join(res))
        if mt:
            for a, b, _ in RATIOS2:
                x, y = med.get(a), med.get(b)
                if not x or not y:
                    row += " - |"
                else:
                    row += " %.2fx |" % (x / y if better == "higher" else abs(y) / abs(x))
            js.append(head + "}")
        else:
            ratio = None
            if "pollen" in med and best:
                m = med["pollen"]
                ratio = m / best if better == "higher" else abs(m) / abs(best)
                row += " %.2f (vs %s) |" % (ratio, bestp)
                bars.append((label, better, float("%.2f" % ratio), bestp))
            else:
                row += " - |"
            js.append(head + ', "ratio_vs_best_peer": %s, "best_peer": %s}'
                      % ("null" if ratio is None else "%.4f" % ratio, jstr(bestp or "")))
        md.append(row)
    return md, js, bars


def footnotes_main(a, machine):
    reps = a.http_reps
    out = ["",
           "Median of %d runs%s, ±half the spread (max-min)/median. Ratio: pollen / best peer "
           "(Tokio, libuv); \"better\" says whether higher or lower is better (ratio > 1 is good "
           "for higher, < 1 for lower)."
           % (a.runs, " (HTTP rows: %d wrk windows per run, so %d samples)" % (reps, reps * a.runs)
              if reps > 1 else ""),
           "pollen: POLLEN_BACKEND=epoll; pollen-uring: the same echo and HTTP servers and the "
           "sleep-lateness program with POLLEN_BACKEND=uring (io_uring reactor: completion mode "
           "for the sockets), echo, connection churn, HTTP and sleep rows only%s."
           % ("; " + a.uring_note if a.uring_note else "")]
    if a.skipped:
        out.append("Skipped: %s." % a.skipped)
    out += ["[a] each direction a bounded channel of capacity 1: pn_mpsc (pollen), "
            "tokio::sync::mpsc (Tokio).",
            "[b] pollen and Tokio: one spawned task per sleep; libuv: one uv_timer_t per sleep, no task.",
            "[c] (1000 tasks x %d awaits of a future pending once, inside a 60 s timeout) - (the "
            "same without the timeout); libuv: uv_timer_stop + uv_timer_start on 1000 timers, no task."
            % (a.tc_n // 1000),
            "Machine: %s, %d CPUs, Linux %s, %s, %s, libuv %s, tokio %s. %s, commit %s%s, load "
            "average %s."
            % (machine["cpu"], a.ncpu, machine["kernel"], machine["cc"], machine["rustc"],
               machine["libuv"], a.tokio_version or "none", machine["date"], machine["commit"],
               ", QUICK=1" if a.quick else "", a.load)]
    return out


def footnotes_mt(a):
    reps = a.http_reps
    return ["",
            "Median of %d runs%s, ±half the spread (max-min)/median. Ratio columns: how many "
            "times better the first is than the second on that figure (> 1: better, whichever "
            "direction the figure goes). mt(n): multi-thread runtime with n workers; workers = "
            "PN_DRIVER_WORKERS (the worker about to park drives epoll and timers), reactor = "
            "PN_DRIVER_REACTOR_THREAD. mt(2) io_uring (closed-loop echo rows only): mt(2) workers "
            "with POLLEN_BACKEND=uring, a ring per worker (SINGLE_ISSUER | DEFER_TASKRUN); shared: "
            "POLLEN_URING_RINGS=shared, one ring both workers submit to. sharded 2 (closed-loop "
            "echo rows only): bench_echo_server --shards 2, two threads each with its own "
            "current-thread runtime and SO_REUSEPORT listener, with POLLEN_BACKEND=epoll or =uring "
            "(io_uring: an io_uring ring per thread). Echo servers are pinned to CPU 0 (both "
            "threads of the 2-worker and 2-shard servers), the load generator to CPU 1."
            % (a.runs, " (HTTP rows: %d wrk windows per run)" % reps if reps > 1 else ""),
            "[s] the shapes of the Tokio benchmark benches/rt_multi_threaded.rs "
            "(bench/bench_sched.c, bench/peers/tokio/src/bin/sched.rs, docs/BENCHMARKS.md, the "
            "section on the scheduler against the Tokio shapes): the median time of an iteration "
            "(many iterations in one process) divided by its tasks, yields or round trips. A "
            "program gives up when one iteration outlasts its deadline (2 s + 1 ms per 100 "
            "units%s): its time cell is then -, its \"finished\" row 0."
            % ("; with QUICK=1, 1 s but for spawn_counter" if a.quick else "")]


def sched_counters(raw, ncpu):
    """pollen's scheduler counters per unit of work (sched suite): for each
    figure and pollen peer, the median over the runs of every
    <counter>_per_<unit> bench_sched printed (the columns are whatever
    counters pn_runtime_metrics has).  [] when there are none."""
    peers = ["pollen_mt1", "pollen_mt2w", "pollen_mtc"]
    titles = {"pollen_mt1": "mt(1)", "pollen_mt2w": "mt(2)", "pollen_mtc": "mt(%d)" % ncpu}
    unit_re = re.compile(r"_per_(task|yield|round_trip)$")
    cols, unit, vals = [], {}, {}
    for peer, _, fig, kv in raw:
        if peer not in peers or fig not in SCHED_FIGS:
            continue
        for k, vs in kv.items():
            if not unit_re.search(k) or k.startswith("ns_per_"):
                continue
            c = unit_re.sub("", k)
            unit[fig] = k[k.rindex("_per_") + 5:]
            if c not in cols:
                cols.append(c)
            vals.setdefault((peer, fig, c), []).extend(vs)
    if not cols:
        return []
    md = ["| figure (per unit of work) | pollen |" + "".join(" %s |" % c for c in cols),
          "|---|---|" + "---|" * len(cols)]
    for fig in SCHED_FIGS:
        for p in peers:
            cells = []
            for c in cols:
                v = sorted(vals.get((p, fig, c), []))
                cells.append(" %.3g |" % statistics.median(v) if v else " - |")
            if any(x != " - |" for x in cells):
                md.append("| %s (per %s) | %s |%s" % (fig, unit[fig], titles[p], "".join(cells)))
    md += ["", "Median of the runs. Each value: the change of a pn_runtime_metrics counter over "
               "the timed iterations of bench_sched, divided by the units of work (tasks, yields, "
               "round trips) they did. A run that gave up (finished=0) has none."]
    return md


# ---- the chart ---------------------------------------------------------------

def xml(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def chart(bars):
    """An SVG bar chart of the first table: per figure, how many times better
    pollen's current-thread runtime is than the best other runtime (its
    ratio for "higher is better" figures, 1/ratio for "lower"), on a log2
    axis centred on 1x: green bars to the right (pollen ahead), red to the
    left (behind)."""
    bars = [b for b in bars if b[2] > 0]
    if not bars:
        return '<svg xmlns="http://www.w3.org/2000/svg"/>\n'
    W, CX, SC, RH = 1260, 800, 80, 22
    H = 60 + len(bars) * RH + 30
    o = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">' % (W, H),
         '<rect width="100%" height="100%" fill="white"/>',
         '<text x="10" y="20" font-size="14" font-weight="bold">pollen (current-thread) vs the best peer, per figure (log2 scale; right = pollen better)</text>']
    for t in range(-3, 4):
        x = CX + t * SC
        o.append('<line x1="%d" y1="40" x2="%d" y2="%d" stroke="%s"/>' % (x, x, H - 25, "#000" if t == 0 else "#ddd"))
        o.append('<text x="%d" y="%d" text-anchor="middle" fill="#555">%s</text>'
                 % (x, H - 10, "%dx" % 2 ** t if t >= 0 else "1/%d" % 2 ** -t))
    for i, (label, better, ratio, vs) in enumerate(bars):
        adv = ratio if better == "higher" else 1 / ratio
        y = 45 + i * RH
        v = max(-3.2, min(3.2, math.log(adv) / math.log(2)))
        x0 = CX if v >= 0 else CX + v * SC
        o.append('<text x="%d" y="%d" text-anchor="end">%s</text>' % (CX - 3 * SC - 10, y + 14, xml(label)))
        o.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>'
                 % (x0, y + 3, abs(v) * SC + 1, RH - 6, "#3a9a4a" if v >= 0 else "#c0392b"))
        o.append('<text x="%d" y="%d" fill="#333">%.2fx vs %s</text>' % (CX + 3 * SC + 25, y + 14, adv, xml(vs)))
    o.append("</svg>")
    return "\n".join(o) + "\n"


# ---- the machine ---------------------------------------------------------------

def first_line(cmd, default):
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           universal_newlines=True)
    except OSError:
        return default
    if p.returncode != 0:
        return default
    return p.stdout.split("\n", 1)[0]


def machine_info():
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if "model name" in line:
                    cpu = line.rstrip("\n").rsplit(": ", 1)[-1]
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "kernel": os.uname().release,
        "cc": first_line(shlex.split(os.environ.get("CC") or "cc") + ["--version"], ""),
        "rustc": first_line(["rustc", "--version"], "none"),
        "libuv": first_line(["pkg-config", "--modversion", "libuv"], "none"),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": first_line(["git", "rev-parse", "--short", "HEAD"], "unknown"),
    }


JSON_NUM = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?")


def jvalue(text):
    """A knob as JSON: the number it is, else a string."""
    if JSON_NUM.fullmatch(text):
        return text
    try:
        return jnum(float(text))
    except ValueError:
        return jstr(text)


# ---- subcommands ----------------------------------------------------------------

def out(text):
    sys.stdout.flush()
    sys.stdout.buffer.write(text.encode("utf-8"))
    sys.stdout.buffer.flush()


def cmd_report(a):
    raw = read_raw(a.raw)
    stats = samples(raw)
    machine = machine_info()
    main = rows_main(a)
    md1, js1, bars = make_table(main, PEERS1, TITLES1, stats, mt=False)
    md1 += footnotes_main(a, machine)
    peers2, titles2 = list(PEERS2), dict(TITLES2)
    if a.ncpu != 2:  # the sched suite: as many workers as the CPUs
        peers2.append("pollen_mtc")
        titles2["pollen_mtc"] = "pollen mt(%d) workers" % a.ncpu
    md2, js2, _ = make_table(rows_mt(a, main), peers2, titles2, stats, mt=True)
    md2 += footnotes_mt(a)
    md3 = sched_counters(raw, a.ncpu)
    md4, js4 = fiber_table(a, stats)
    md = "\n".join(md1) + "\n\n### Multi-thread runtimes\n\n" + "\n".join(md2) + "\n"
    if md3:
        md += "\n### pollen's scheduler counters per unit of work (sched suite)\n\n" + "\n".join(md3) + "\n"
    if md4:
        md += "\n### Fibers (stackful tasks) beside stackless ones\n\n" + "\n".join(md4) + "\n"

    os.makedirs(a.out, exist_ok=True)
    latest = os.path.join(a.out, "latest")
    with open(latest + ".md", "w", encoding="utf-8") as f:
        f.write(md)
    # keep the previous results to compare this run with (bench/compare.py)
    previous = os.path.join(a.res, "previous.json")
    if os.path.isfile(latest + ".json"):
        shutil.copyfile(latest + ".json", previous)
    m = machine
    j = ["{",
         '  "machine": {"cpu": %s, "cpus": %d, "kernel": %s, "cc": %s, "rustc": %s, "libuv": %s, "tokio": %s, "loadavg_start_end": %s},'
         % (jstr(m["cpu"]), a.ncpu, jstr(m["kernel"]), jstr(m["cc"]), jstr(m["rustc"]),
            jstr(m["libuv"]), jstr(a.tokio_version or "none"), jstr(a.load)),
         '  "date": %s, "commit": %s, "quick": %s, "runs": %d, "echo_pinned": %s,'
         % (jstr(m["date"]), jstr(m["commit"]), "true" if a.quick else "false", a.runs, jstr(a.pinned)),
         '  "echo_secs": %s, "echo_warmup_secs": %s, "churn_secs": %s, "churn_warmup_secs": %s,'
         % (jvalue(a.echo_secs), jvalue(a.echo_warm), jvalue(a.churn_secs), jvalue(a.churn_warm)),
         '  "http_secs": %s, "http_reps": %d,' % (jvalue(a.http_secs), a.http_reps),
         '  "peers_skipped": %s, "pollen_uring_note": %s,' % (jstr(a.skipped), jstr(a.uring_note)),
         '  "figures": [',
         ",\n".join(js1),
         '  ],',
         '  "multi_thread_figures": [',
         ",\n".join(js2),
         '  ],',
         '  "fiber_figures": [',
         ",\n".join(js4),
         '  ]',
         "}"]
    with open(latest + ".json", "w", encoding="utf-8") as f:
        f.write("\n".join(j) + "\n")
    with open(latest + ".svg", "w", encoding="utf-8") as f:
        f.write(chart(bars))

    out("\n" + md + "\n")
    out("wrote %s/latest.md, latest.json and latest.svg (raw runs: %s)\n" % (a.out, a.raw))
    # A second run should land within the first one's spread (widened by its
    # own; the rule: bench/compare.py): say how many figures do, when the
    # previous run had the same sizes (QUICK or not).
    try:
        with open(previous, encoding="utf-8") as f:
            same = json.load(f).get("quick") == bool(a.quick)
    except (OSError, ValueError):
        same = False
    if same:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        sys.dont_write_bytecode = True  # no bench/__pycache__ in the tree
        import compare
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(buf):
                compare.main(["compare.py", previous, latest + ".json"])
        except Exception as e:  # a broken previous file: say so, go on
            print("compare.py: %s" % e, file=buf)
        tail = buf.getvalue().splitlines()[-2:]
        out("\nagainst the previous run of the same sizes (bench/compare.py):\n"
            + "".join(line + "\n" for line in tail))
    return 0


def cmd_wrk(a):
    def us(v):
        if v.endswith("us"):
            return number(v[:-2])
        if v.endswith("ms"):
            return 1000 * number(v[:-2])
        if v.endswith("s"):
            return 1e6 * number(v[:-1])
        return number(v)
    p50 = p99 = 0.0
    n = rps = None
    bad = False
    for line in sys.stdin:
        w = line.split()
        if len(w) >= 2 and w[0] == "99%":
            p99 = us(w[1])
        if len(w) >= 2 and w[0] == "50%":
            p50 = us(w[1])
        if len(w) >= 3 and w[1] == "requests" and w[2] == "in":
            n = int(number(w[0]))
        if line.startswith("Requests/sec:") and len(w) >= 2:
            rps = number(w[1])
        if "Non-2xx" in line or "Socket errors" in line:
            bad = True
    if not n or rps is None or bad:
        return 1
    print("%s requests=%d req_per_s=%.0f p50_us=%.1f p99_us=%.1f server_us_per_req=%.3f"
          % (a.name, n, rps, p50, p99, (a.t1 - a.t0) * 1e6 / a.hz / n))
    return 0


def cmd_busy(a):
    return 0 if number(a.load) > a.ncpu / 2 else 1


def main(argv):
    ap = argparse.ArgumentParser(description="pollen's benchmark results (see the top of this file)")
    sub = ap.add_subparsers(dest="cmd")
    r = sub.add_parser("report", help="latest.md, latest.json, latest.svg from raw.txt")
    r.add_argument("--raw", required=True, help="raw.txt: <peer> <run> <figure> key=value ...")
    r.add_argument("--out", required=True, help="directory for latest.{md,json,svg}")
    r.add_argument("--res", required=True, help="directory for previous.json")
    for name in ("runs", "sleep-count", "rt-n", "timers-n", "tc-n", "sync-mpsc-n",
                 "sched-counter-n", "http-conns", "http-reps", "idle-conns", "ncpu"):
        r.add_argument("--" + name, type=int, required=True)
    for name in ("fiber-switch-n", "fiber-yield-n"):   # absent before the fiber suite
        r.add_argument("--" + name, type=int, default=0)
    r.add_argument("--quick", type=int, choices=(0, 1), default=0)
    for name in ("echo-grid", "echo-mt-grid", "echo-rate-grid", "churn-grid", "echo-secs", "echo-warm",
                 "churn-secs", "churn-warm", "http-secs", "pinned", "load", "skipped",
                 "uring-note", "tokio-version"):
        r.add_argument("--" + name, default="")
    w = sub.add_parser("wrk", help="one raw line from `wrk --latency` output on stdin")
    w.add_argument("--t0", type=float, required=True, help="server CPU ticks before")
    w.add_argument("--t1", type=float, required=True, help="server CPU ticks after")
    w.add_argument("--hz", type=float, required=True, help="clock ticks per second")
    w.add_argument("--name", required=True, help="the figure's name")
    b = sub.add_parser("busy", help="exit 0 when LOAD > NCPU / 2")
    b.add_argument("load")
    b.add_argument("ncpu", type=int)
    a = ap.parse_args(argv[1:])
    if a.cmd == "report":
        return cmd_report(a)
    if a.cmd == "wrk":
        return cmd_wrk(a)
    if a.cmd == "busy":
        return cmd_busy(a)
    ap.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
