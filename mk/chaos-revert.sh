#!/bin/sh
# mk/chaos-revert.sh - does the chaos harness find a race by itself?
#
#   sh mk/chaos-revert.sh tests/chaos/<mend>.patch [seeds] [suites]
#
# Applies the patch (it reverts one mend, keeping its schedule point) to a
# scratch worktree of HEAD, then runs the given suites (default: the
# stress programs, race_stress, which hold no hook) under seeds 1..seeds
# (default 20) in the chaos build, and in the plain build as many times,
# on epoll.  Prints how many runs of each caught the race.  The tree you
# work in is not touched.
set -eu
patch=$(realpath "$1")
seeds=${2:-20}
suites=${3:-race_stress/*}
top=$(git rev-parse --show-toplevel)
wt=$(mktemp -d /tmp/pollen-revert.XXXXXX)
trap 'git -C "$top" worktree remove --force "$wt" >/dev/null 2>&1 || true' EXIT
git -C "$top" worktree add --detach -q "$wt" HEAD
cd "$wt"
git apply "$patch"
make -j2 --no-print-directory test-chaos SEEDS="$seeds" BACKENDS=epoll \
    CHAOS_SUITES="$suites" >chaos.out 2>&1 || true
chaos_fail=$(grep -c 'FAILED (log' chaos.out || true)
make -j2 --no-print-directory build/tests/pollen_tests >/dev/null
plain_fail=0
for i in $(seq 1 "$seeds"); do
    POLLEN_BACKEND=epoll ./build/tests/pollen_tests --filter="$suites" >/dev/null 2>&1 ||
        plain_fail=$((plain_fail + 1))
done
echo "$(basename "$patch"): chaos build caught it in $chaos_fail of $seeds seeds;" \
     "plain build in $plain_fail of $seeds runs"
