#!/usr/bin/env bash
# `HashKV` of a large database while a put load runs, etcd beside stet (issue 9).
# For each of etcd and stet (and, with --before BINARY, another stet build): starts one member on
# loopback, puts every key of --keys keys once (`stet-bench range`'s untimed fill, 256-byte values),
# then runs two put loads of --puts puts (64 clients over 8 connections into the same keys): one
# alone, one with `etcdctl endpoint hashkv` asked every 0.2 s for as long as it runs. Reports both
# loads' throughput, p99 and slowest put, and how long each hash took.
#
# Usage: benches/hashkv-under-load.sh [--keys 1000000] [--puts 100000] [--before BINARY]
#          [--keep-logs]
set -euo pipefail

keys=1000000
puts=100000
# shellcheck source=benches/under-load.sh
source "$(dirname "$0")/under-load.sh" "$@"

# hash_forever FILE: `etcdctl endpoint hashkv` every 0.2 s, each one's milliseconds appended to FILE.
hash_forever() {
    while true; do
        local start end
        start=$(date +%s%N)
        ETCDCTL_API=3 "$etcdctl_bin" --endpoints "$endpoint" endpoint hashkv >/dev/null 2>&1
        end=$(date +%s%N)
        echo $(((end - start) / 1000000)) >>"$1"
        sleep 0.2
    done
}

# measure KIND BINARY: one member, filled, then the two loads.
measure() {
    load_beside "$1" "$2" hashing hash_forever
    kill "$helper"; wait "$helper" 2>/dev/null || true; helper=""
    echo "  each hashkv, ms:   $(sort -n "$work/$1.side" | tr '\n' ' ')"
    stop_member
}

measure_all
