#!/bin/sh
# mk/run-tests.sh - run a Criterion test binary for make test / test-asan /
# test-tsan, with everything on stdout, a log, and a sanitizer safety net.
#
#   sh mk/run-tests.sh <log file> <test binary> [criterion args...]
#
# Why the safety net: Criterion runs each test in a forked worker and only
# counts what happens between the test's MAIN and END phases.
#   - LeakSanitizer runs when the worker calls exit(), i.e. after END.  With
#     abort_on_error=1 the worker dies of SIGABRT, Criterion prints "Warning!
#     The test `suite::name` crashed during its setup or teardown", counts a
#     warning and exits 1 -- but the Synthesis line still says "Passing".
#     With abort_on_error=0 (LSan's exit code 23) Criterion ignores the leak
#     entirely and exits 0.
#   - A sanitizer exit during fini (teardown) is logged but not counted.
# So, besides Criterion's own status, any sanitizer report in the output
# fails the run, and leaks are summarised by test name at the end.
set -u

log=$1
shift
mkdir -p "$(dirname "$log")"
rcfile=$log.rc

# Criterion's normal logger writes to stderr: merge so the summary is on stdout.
{ "$@" 2>&1; echo $? >"$rcfile"; } | tee "$log"
rc=$(cat "$rcfile")
rm -f "$rcfile"

if grep -q 'ERROR: LeakSanitizer' "$log"; then
    echo
    echo "*** LeakSanitizer found leaks (full reports above, log: $log)."
    echo "*** Leaking tests (Criterion calls them 'crashed during setup or teardown'):"
    grep 'crashed during its setup or teardown' "$log" | sed 's/^/***   /'
    [ "$rc" = 0 ] && rc=1
fi
if grep -q -E 'ERROR: AddressSanitizer|WARNING: ThreadSanitizer|ERROR: ThreadSanitizer|runtime error:' "$log"; then
    echo
    echo "*** sanitizer reports found in the output (log: $log):"
    grep -E 'ERROR: AddressSanitizer|WARNING: ThreadSanitizer|ERROR: ThreadSanitizer|runtime error:' "$log" \
        | sort | uniq -c | sed 's/^/***   /'
    [ "$rc" = 0 ] && rc=1
fi
exit "$rc"
