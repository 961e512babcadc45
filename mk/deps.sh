#!/bin/sh
# mk/deps.sh - make sure the build dependencies of a make target are present.
#
#   sh mk/deps.sh test    Criterion (+ liburing, pkg-config)
#   sh mk/deps.sh bench   the above plus libuv (peer programs), wrk and python3
#
# Quick when everything is present (a few file tests, no package manager).
# Otherwise, as root with apt-get, installs the missing Debian packages;
# anyone else gets the list of packages to install and a failure.
set -eu

what=${1:-test}

missing=""
need() {  # need <package> <test command...>
    pkg=$1; shift
    if ! "$@" >/dev/null 2>&1; then
        missing="$missing $pkg"
    fi
}

has_header() { [ -f "/usr/include/$1" ] || [ -f "/usr/local/include/$1" ]; }

need libcriterion-dev has_header criterion/criterion.h
need pkg-config command -v pkg-config
# liburing only matters once the io_uring backend exists.
if [ -f src/reactor/uring.c ]; then
    need liburing-dev has_header liburing.h
fi
if [ "$what" = bench ]; then
    need libuv1-dev has_header uv.h
    need wrk command -v wrk
    # bench/report.py turns the raw results into the tables, JSON and chart
    need python3 command -v python3
    # The Tokio peers (bench/peers/tokio): cargo, rustc and Debian's Tokio
    # sources, built offline.  A fresh Debian 12 has no rustup: Debian's own
    # cargo and rustc 1.63 (in /usr/bin) build them (bench/run.sh lets that
    # cargo write its own Cargo.lock).  Optional: bench/run.sh skips Tokio
    # with a line saying why when they are missing and cannot be installed.
    need_opt() { pkg=$1; shift; "$@" >/dev/null 2>&1 || optional="$optional $pkg"; }
    optional=""
    need_opt cargo cargo --version
    need_opt rustc rustc --version
    need_opt librust-tokio-dev sh -c 'ls -d /usr/share/cargo/registry/tokio-1.*'
    if [ -n "$optional" ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "mk/deps.sh: installing the Tokio peer's toolchain:$optional" >&2
            export DEBIAN_FRONTEND=noninteractive
            # shellcheck disable=SC2086
            { apt-get update -q && apt-get install -y -q --no-install-recommends $optional; } >&2 ||
                echo "mk/deps.sh: could not install$optional; the Tokio peer will be skipped" >&2
        else
            echo "mk/deps.sh: optional packages missing:$optional (the Tokio peer will be skipped)" >&2
        fi
    fi
fi

[ -z "$missing" ] && exit 0

echo "mk/deps.sh: missing packages for '$what':$missing" >&2
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "mk/deps.sh: installing with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing
    exit 0
fi
echo "mk/deps.sh: please install them, e.g.:" >&2
echo "    sudo apt-get install$missing" >&2
exit 1
