#!/bin/sh
# mk/chaos.sh - run the concurrent suites of a chaos build under many seeds.
#
#   sh mk/chaos.sh <log dir> <probe> <test binary>
#
# Environment:
#   SEED         replay this one seed (then SEEDS is ignored)
#   SEEDS        run seeds 1..SEEDS (default: the bounded set CI runs,
#                CHAOS_CI_SEEDS)
#   BACKENDS     reactor backends, default "epoll uring" (a uring pass is
#                skipped, with the reason, where io_uring cannot be set up)
#   CHAOS_SUITES Criterion filter of the suites to run
#   CHAOS_SAN    none, asan or tsan: only named in the replay command
#
# Each (seed, backend) runs through mk/run-tests.sh, so a sanitizer report
# fails it as in make test.  A failure prints the seed and the one-line
# command that replays it; the exit status is 1 if any run failed.
set -u
dir=$1 probe=$2
shift 2
CHAOS_CI_SEEDS="1 2 3 4 5 6"
SUITES=${CHAOS_SUITES:-'@(races|race_stress|multi_thread|cell_cache|mt_stress|blocking|reactor|timer_futures|executor|uring_rings|uring_owners|sync|oneshot|mpsc|mpsc_stress|semaphore|locks|notify|broadcast|watch|task_group|cancel|wait_group|test_clock|sync_drops|sync_churn|fiber|fiber_review|signal)/*'}
if [ -n "${SEED:-}" ]; then
    seeds=$SEED
elif [ -n "${SEEDS:-}" ]; then
    seeds=$(seq 1 "$SEEDS")
else
    seeds=$CHAOS_CI_SEEDS
fi
mkdir -p "$dir"
failed=
runs=0
start=$(date +%s)
for seed in $seeds; do
    for be in ${BACKENDS:-epoll uring}; do
        if [ "$be" = uring ] && ! why=$("$probe"); then
            echo "=== chaos seed $seed backend $be: SKIPPED, io_uring cannot be used here: $why"
            continue
        fi
        echo "=== chaos seed $seed backend $be"
        runs=$((runs + 1))
        if ! POLLEN_CHAOS_SEED=$seed POLLEN_BACKEND=$be POLLEN_URING_MODE= POLLEN_URING_RINGS= \
            sh mk/run-tests.sh "$dir/chaos-$seed-$be.log" "$@" --filter="$SUITES" \
            >"$dir/chaos-$seed-$be.out" 2>&1; then
            cat "$dir/chaos-$seed-$be.out"
            echo "*** chaos: seed $seed on $be FAILED (log: $dir/chaos-$seed-$be.log)"
            echo "*** replay: make test-chaos SEED=$seed BACKENDS=$be CHAOS_SAN=${CHAOS_SAN:-none} CHAOS_SUITES='$SUITES'"
            failed="$failed $seed/$be"
        else
            grep 'Synthesis' "$dir/chaos-$seed-$be.out"
        fi
    done
done
echo "chaos: $runs runs in $(( $(date +%s) - start )) s${failed:+, FAILED:$failed}"
[ -z "$failed" ]
