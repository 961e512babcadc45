#!/usr/bin/env python3
"""compare.py - does a second `make bench` run match the first within the
stated spread?

    python3 bench/compare.py [-v] OLD.json NEW.json

Each figure of each runtime in a result file (the `latest.json` that
bench/run.sh writes) is the median of several runs with their min and max;
the tables state it as "median ±s%", s = half of (max-min)/median.  For
every figure and runtime present in both files:

  matches   the new median lies within the previous run's [min, max],
            widened on both sides by half the new run's max-min (the new
            run's own stated ±), and by at least 0.5% of the previous
            median (a figure printed "±0%" carries up to 0.5%):
                old.min - w <= new.median <= old.max + w,
                w = max((new.max - new.min) / 2, 0.005 * |old.median|)
  strictly  the new median lies within the previous [min, max] itself.

A figure whose runs scatter widely therefore matches more easily: its
stated spread says how far to trust it, and the rule holds each run to
what it stated, no more.  The figures that do not match are listed (-v:
also the strict misses), then the counts, overall and for the tail-latency
rows (p99, p99.9) apart, and the load average of both runs (a machine
busy with other work in one run and not the other moves every figure, and
no rule can tell that from a regression).  Exit status 0 when at least 90% of the figures
match, 1 otherwise, 2 on bad usage.  The rule is documented in
docs/BENCHMARKS.md, "Repeatability".
"""
import json
import sys


def figures(doc):
    out = {}
    for key in ("figures", "multi_thread_figures", "fiber_figures"):
        for fig in doc.get(key, []):
            for peer, r in fig.get("results", {}).items():
                if isinstance(r, dict) and r.get("median") is not None:
                    out[(fig["id"], peer)] = (fig["label"], r)
    return out


def is_tail(fig_id, label):
    return fig_id.endswith(("_p99", "_p999")) or "p99" in label


def main(argv):
    args = [a for a in argv[1:] if a != "-v"]
    verbose = len(args) != len(argv) - 1
    if len(args) != 2:
        print(__doc__.strip().splitlines()[3].strip(), file=sys.stderr)
        return 2
    with open(args[0]) as f:
        old_doc = json.load(f)
    with open(args[1]) as f:
        new_doc = json.load(f)
    old, new = figures(old_doc), figures(new_doc)
    common = sorted(set(old) & set(new))
    if not common:
        print("no figure in common")
        return 1
    bad = []
    strict = 0
    counts = {True: [0, 0], False: [0, 0]}  # tail? -> [matches, total]
    for k in common:
        label, a = old[k]
        _, b = new[k]
        w = max((b["max"] - b["min"]) / 2.0, 0.005 * abs(a["median"]))
        lo, hi = a["min"] - w, a["max"] + w
        ok = lo <= b["median"] <= hi
        tail = is_tail(k[0], label)
        counts[tail][1] += 1
        if ok:
            counts[tail][0] += 1
        if a["min"] <= b["median"] <= a["max"]:
            strict += 1
        elif verbose or not ok:
            bad.append((ok, label, k[1], a, b, lo, hi))
    for ok, label, peer, a, b, lo, hi in bad:
        print("%s: %s [%s]: %g (%g-%g) -> %g (%g-%g), allowed %g-%g"
              % ("widened" if ok else "differs", label, peer, a["median"], a["min"], a["max"],
                 b["median"], b["min"], b["max"], lo, hi))
    agree = counts[True][0] + counts[False][0]
    n = len(common)
    only = len(set(old) ^ set(new))
    print("%d of %d figures match the previous run within its spread widened by this run's "
          "(%.0f%%; tail-latency rows %d of %d, other rows %d of %d); %d of %d strictly within "
          "the previous [min, max]%s"
          % (agree, n, 100.0 * agree / n, counts[True][0], counts[True][1], counts[False][0],
             counts[False][1], strict, n,
             "; %d figures in one run only" % only if only else ""))
    # A busy machine moves every figure: say how loaded each run was.
    loads = [d.get("machine", {}).get("loadavg_start_end") for d in (old_doc, new_doc)]
    if all(loads):
        print("load average: previous run %s, this run %s" % tuple(loads))
    return 0 if agree >= 0.9 * n else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
