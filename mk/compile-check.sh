#!/bin/sh
# compile-check.sh - compile tests/compile/*.c with pollen's warnings and
# check each outcome against its name:
#   ok_*.c        must compile cleanly;
#   fail_*.c      must fail, with a diagnostic matching its "expect:" line;
#   fail_gcc_*.c  the same, only where the compiler knows -Wjump-misses-init
#                 (JUMP_WARN non-empty: gcc); elsewhere it must compile.
# Usage: compile-check.sh CC "JUMP_WARN" CFLAGS...
cc=$1; jump=$2; shift 2
status=0
out=$(mktemp)
for f in tests/compile/*.c; do
    name=$(basename "$f")
    expect_fail=0
    case $name in
    fail_gcc_*) [ -n "$jump" ] && expect_fail=1 ;;
    fail_*) expect_fail=1 ;;
    esac
    if $cc "$@" -c "$f" -o /dev/null >"$out" 2>&1; then
        if [ $expect_fail = 1 ]; then
            echo "compile-check: $f compiled, but must be rejected"; status=1
        fi
    else
        want=$(sed -n 's/^ \* expect: //p' "$f")
        if [ $expect_fail = 0 ]; then
            echo "compile-check: $f must compile cleanly:"; cat "$out"; status=1
        elif [ -n "$want" ] && ! grep -Eq "$want" "$out"; then
            echo "compile-check: $f failed, but not with /$want/:"; cat "$out"; status=1
        fi
    fi
done
rm -f "$out"
[ $status = 0 ] && echo "compile-check: OK ($(ls tests/compile/*.c | wc -l) files, $cc)"
exit $status
