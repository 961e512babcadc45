#!/bin/sh
# readme-check.sh - every complete program in README.md (a ```c block with a
# main function) must compile warning-free and link against the library:
# the first code a newcomer copies is code that builds.
# Usage: readme-check.sh CC LIB_A "LIBS" CFLAGS...
cc=$1; lib=$2; libs=$3; shift 3
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
awk -v dir="$dir" '
    /^```c$/ { inblock = 1; n++; file = dir "/prog" n ".c"; body = ""; next }
    /^```$/ && inblock { inblock = 0; if (body ~ /int main\(/) printf "%s", body > file; next }
    inblock { body = body $0 "\n" }
' README.md
status=0
count=0
for f in "$dir"/prog*.c; do
    [ -e "$f" ] || continue
    count=$((count + 1))
    if ! $cc "$@" "$f" -o "$f.bin" "$lib" $libs 2>"$f.err"; then
        echo "readme-check: README program $(basename "$f" .c) does not build:"
        cat "$f.err"
        status=1
    fi
done
[ $count -gt 0 ] || { echo "readme-check: no program found in README.md"; exit 1; }
[ $status = 0 ] && echo "readme-check: OK ($count programs)"
exit $status
