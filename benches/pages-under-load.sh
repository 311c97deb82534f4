#!/usr/bin/env bash
# A paginated list of the whole key space while a put load runs, etcd beside stet (issue 9).
# kube-apiserver lists in pages of 500 keys, each later page at the first page's revision from
# the key after the last; every page's answer carries the count of the keys left, which etcd
# counts in the request, so each page walks the rest of the range. For each of etcd and stet
# (and, with --before BINARY, another stet build): starts one member on loopback, puts every key
# of --keys keys once (256-byte values), then runs two put loads of --puts puts (64 clients over
# 8 connections into the same keys): one alone, one beside `stet-bench pages` (one client
# listing every key in pages of 500, started 1 s in, for --pages pages). Reports both loads'
# throughput, p99 and slowest put, and the pages' latencies.
#
# Usage: benches/pages-under-load.sh [--keys 1000000] [--puts 200000] [--pages 400]
#          [--before BINARY] [--keep-logs]
set -euo pipefail

keys=1000000
puts=200000
pages=400
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --pages) pages="$2"; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
# shellcheck source=benches/under-load.sh
source "$(dirname "$0")/under-load.sh" "${args[@]+"${args[@]}"}"

# pages_soon FILE: waits 1 s, then lists $pages pages; their summary in FILE.
pages_soon() {
    sleep 1
    "$bench_bin" --endpoints "$endpoint" --conns 1 --clients 1 --total "$pages" \
        --timeout 60 pages --page-size 500 >"$1" 2>&1 || echo "stet-bench pages failed" >>"$1"
}

# measure KIND BINARY: one member, filled, then the two loads.
measure() {
    load_beside "$1" "$2" paging pages_soon
    wait "$helper"; helper=""
    echo "  pages:             $(grep -a 'requests\|throughput\|latency' "$work/$1.side" \
        | tr -s ' ' | tr '\n' ' ')"
    stop_member
}

measure_all
