#!/usr/bin/env python3
"""compare.py - does a second `make bench` run match the first within the
stated spread?

    python3 bench/compare.py OLD.json NEW.json

For every figure and every runtime present in both result files (the
`latest.json` that bench/run.sh writes), the two runs agree when either
run's median lies inside the other run's [min, max] over its repeated runs
(the spread the tables state as ±half of max-min).  Prints one line per
figure that does not agree and a summary; exits 0 when at least 90% of the
figures agree (a 2-vCPU VM drifts, see docs/BENCHMARKS.md), 1 otherwise.
"""
import json
import sys


def figures(doc):
    out = {}
    for key in ("figures", "multi_thread_figures"):
        for fig in doc.get(key, []):
            for peer, r in fig.get("results", {}).items():
                if isinstance(r, dict) and r.get("median") is not None:
                    out[(fig["id"], peer)] = (fig["label"], r)
    return out


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        old = figures(json.load(f))
    with open(argv[2]) as f:
        new = figures(json.load(f))
    common = sorted(set(old) & set(new))
    if not common:
        print("no figure in common")
        return 1
    bad = []
    for k in common:
        label, a = old[k]
        _, b = new[k]
        inside = (a["min"] <= b["median"] <= a["max"]) or (b["min"] <= a["median"] <= b["max"])
        if not inside:
            bad.append((label, k[1], a, b))
    for label, peer, a, b in bad:
        print("differs: %s [%s]: %g (%g-%g) -> %g (%g-%g)"
              % (label, peer, a["median"], a["min"], a["max"], b["median"], b["min"], b["max"]))
    agree = len(common) - len(bad)
    print("%d of %d figures agree within the stated spread (%.0f%%)"
          % (agree, len(common), 100.0 * agree / len(common)))
    return 0 if agree >= 0.9 * len(common) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
