#!/usr/bin/env bash
# A range over the whole key space while a put load runs, etcd beside stet (issue 9).
# For each of etcd and stet (and, with --before BINARY, another stet build): starts one member on
# loopback, puts every key of --keys keys once (`stet-bench range`'s untimed fill, 256-byte
# values), then runs two put loads of --puts puts (64 clients over 8 connections into the same
# keys): one alone, one with `etcdctl get "" --prefix` asked 1 s in, keys only and then with
# values. Reports both loads' throughput, p99 and slowest put, and how long each range took
# (etcdctl's printing included).
#
# Usage: benches/range-under-load.sh [--keys 1000000] [--puts 200000] [--before BINARY]
#          [--keep-logs]
set -euo pipefail

keys=1000000
puts=200000
# shellcheck source=benches/under-load.sh
source "$(dirname "$0")/under-load.sh" "$@"

# timed_range FILE ARGS...: `etcdctl get "" --prefix ARGS`, its milliseconds and output lines
# (or its failure and etcdctl's message) appended to FILE.
timed_range() {
    local file=$1 start end lines rc=0
    shift
    start=$(date +%s%N)
    lines=$(ETCDCTL_API=3 "$etcdctl_bin" --endpoints "$endpoint" --command-timeout=120s \
        get "" --prefix "$@" \
        2>"$file.err" | wc -l) || rc=$?
    end=$(date +%s%N)
    local what="get --prefix${*:+ $*}: $(((end - start) / 1000000)) ms"
    if [ "$rc" = 0 ]; then
        echo "$what, $lines lines" >>"$file"
    else
        echo "$what, FAILED (etcdctl exit $rc: $(head -c 300 "$file.err"))" >>"$file"
    fi
}

# ranges_soon FILE: waits 1 s, then the two ranges.
ranges_soon() {
    sleep 1
    timed_range "$1" --keys-only
    timed_range "$1"
}

# measure KIND BINARY: one member, filled, then the two loads.
measure() {
    load_beside "$1" "$2" ranging ranges_soon
    wait "$helper"; helper=""
    sed 's/^/  /' "$work/$1.side"
    stop_member
}

measure_all
