#!/bin/sh
# mk/test-backends.sh - run the test binary once per reactor backend.
#
#   sh mk/test-backends.sh <log dir> <probe> <test binary> [criterion args...]
#
# BACKENDS (default "epoll uring uring-readiness uring-shared") lists the
# passes; each runs the whole suite through mk/run-tests.sh, logging to
# <log dir>/test-<backend>.log: epoll and uring with POLLEN_BACKEND set,
# uring-readiness with POLLEN_BACKEND=uring and POLLEN_URING_MODE=readiness
# (io_uring's multishot polls only, no completion-mode sockets),
# uring-shared with POLLEN_URING_RINGS=shared (the multi-thread runtime's
# workers share one ring instead of one ring each).  A uring
# pass first runs <probe> (mk/backend_probe.c): when the machine cannot set
# up io_uring the pass is skipped with a line that says why (the epoll pass
# still has to pass).
set -u
dir=$1 probe=$2
shift 2
rc=0 failed=
for be in ${BACKENDS:-epoll uring uring-readiness uring-shared}; do
    mode= rings=
    case $be in
    uring-readiness) backend=uring mode=readiness ;;
    uring-shared) backend=uring rings=shared ;;
    *) backend=$be ;;
    esac
    if [ "$backend" = uring ]; then
        if ! why=$("$probe"); then
            echo "=== backend $be: SKIPPED, io_uring cannot be used here: $why"
            continue
        fi
    fi
    echo "=== backend $be"
    # The mode and rings are set for every pass (empty: completion mode,
    # the runtime's choice of rings), so a POLLEN_URING_MODE or
    # POLLEN_URING_RINGS in the caller's environment cannot turn the uring
    # pass into a copy of another.
    POLLEN_BACKEND=$backend POLLEN_URING_MODE=$mode POLLEN_URING_RINGS=$rings \
        sh mk/run-tests.sh "$dir/test-$be.log" "$@" || { rc=1; failed="$failed $be"; }
done
# A CI log is often read from its tail: name what failed once more there.
for be in $failed; do
    echo "=== backend $be FAILED; its failures (full log: $dir/test-$be.log):"
    grep -E '\[FAIL\]|Assertion Failed|Timed out|crashed|signal|Warning!|ERROR: |WARNING: ThreadSanitizer|runtime error:' \
        "$dir/test-$be.log" | head -40 | sed 's/^/    /'
done
exit $rc
