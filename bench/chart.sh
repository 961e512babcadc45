#!/bin/sh
# bench/chart.sh - an SVG bar chart of pollen's standing per figure, from the
# table bench/run.sh writes (bench/results/latest.md).
#
#   sh bench/chart.sh [latest.md] [out.svg]
#
# One bar per figure: how many times better pollen's current-thread runtime
# is than the best other runtime on that figure (ratio for "higher is
# better" figures, 1/ratio for "lower is better"), on a log2 axis centred on
# 1x: green bars to the right, pollen ahead; red bars to the left, behind.
set -eu
IN=${1:-bench/results/latest.md}
OUT=${2:-bench/results/latest.svg}

awk -F'|' '
function log2(x) { return log(x) / log(2) }
function esc(s) { gsub(/&/, "\\&amp;", s); gsub(/</, "\\&lt;", s); gsub(/>/, "\\&gt;", s); return s }
/^### / { exit }   # the first table only (pollen current-thread vs the best peer)
/^\| / && $2 !~ /figure/ {
    label = $2; better = $3; r = $(NF - 1)
    gsub(/^ +| +$/, "", label); gsub(/ /, "", better)
    split(r, w, " "); ratio = w[1] + 0
    if (ratio <= 0) next
    n++
    lab[n] = label
    adv[n] = (better == "higher") ? ratio : 1 / ratio
    vs[n] = r; sub(/^[^(]*\(vs /, "", vs[n]); sub(/\).*/, "", vs[n])
}
END {
    if (n == 0) { print "<svg xmlns=\"http://www.w3.org/2000/svg\"/>"; exit }
    W = 1260; CX = 800; SC = 80; RH = 22; H = 60 + n * RH + 30
    printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H
    printf "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
    printf "<text x=\"10\" y=\"20\" font-size=\"14\" font-weight=\"bold\">pollen (current-thread) vs the best peer, per figure (log2 scale; right = pollen better)</text>\n"
    for (t = -3; t <= 3; t++) {
        x = CX + t * SC
        printf "<line x1=\"%d\" y1=\"40\" x2=\"%d\" y2=\"%d\" stroke=\"%s\"/>\n", x, x, H - 25, (t == 0 ? "#000" : "#ddd")
        printf "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"#555\">%s</text>\n", x, H - 10, (t >= 0 ? 2^t "x" : "1/" 2^(-t))
    }
    for (i = 1; i <= n; i++) {
        y = 45 + (i - 1) * RH
        v = log2(adv[i]); if (v > 3.2) v = 3.2; if (v < -3.2) v = -3.2
        x0 = (v >= 0) ? CX : CX + v * SC
        printf "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>\n", CX - 3 * SC - 10, y + 14, esc(lab[i])
        printf "<rect x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\"/>\n", x0, y + 3, (v >= 0 ? v : -v) * SC + 1, RH - 6, (v >= 0 ? "#3a9a4a" : "#c0392b")
        printf "<text x=\"%d\" y=\"%d\" fill=\"#333\">%.2fx vs %s</text>\n", CX + 3 * SC + 25, y + 14, adv[i], esc(vs[i])
    }
    print "</svg>"
}' "$IN" > "$OUT"
echo "wrote $OUT"
