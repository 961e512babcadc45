#!/bin/sh
# mk/test-backends.sh - run the test binary once per reactor backend.
#
#   sh mk/test-backends.sh <log dir> <probe> <test binary> [criterion args...]
#
# BACKENDS (default "epoll uring") lists the passes; each runs the whole
# suite with POLLEN_BACKEND set, through mk/run-tests.sh, logging to
# <log dir>/test-<backend>.log.  The uring pass first runs <probe>
# (mk/backend_probe.c): when the machine cannot set up io_uring the pass is
# skipped with a line that says why (the epoll pass still has to pass).
set -u
dir=$1 probe=$2
shift 2
rc=0
for be in ${BACKENDS:-epoll uring}; do
    if [ "$be" = uring ]; then
        if ! why=$("$probe"); then
            echo "=== backend uring: SKIPPED, io_uring cannot be used here: $why"
            continue
        fi
    fi
    echo "=== backend $be"
    POLLEN_BACKEND=$be sh mk/run-tests.sh "$dir/test-$be.log" "$@" || rc=1
done
exit $rc
