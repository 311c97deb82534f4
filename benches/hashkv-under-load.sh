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
before=""
keep_logs=0
while [ $# -gt 0 ]; do
    case "$1" in
        --keys) keys="$2"; shift 2 ;;
        --puts) puts="$2"; shift 2 ;;
        --before) before="$2"; shift 2 ;;
        --keep-logs) keep_logs=1; shift ;;
        *) sed -n '2,10p' "$0" >&2; exit 2 ;;
    esac
done

# shellcheck source=benches/common.sh
source "$(dirname "$0")/common.sh"
work="$(mktemp -d /tmp/hashkv-under-load.XXXXXX)"
pid=""
hasher=""
cleanup() {
    if [ -n "$hasher" ]; then kill "$hasher" 2>/dev/null || true; fi
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    if [ "$keep_logs" = 1 ]; then echo "logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

port=$((20000 + RANDOM % 10000))

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

# load NAME: the put load; prints its throughput and latency lines on one line.
load() {
    "$bench_bin" --endpoints "$endpoint" --conns 8 --clients 64 --total "$puts" --key-size 8 \
        --val-size 256 --key-space "$keys" put >"$work/$1.out" 2>&1
    grep -a 'throughput\|latency' "$work/$1.out" | tr -s ' ' | tr '\n' ' '
}

# measure KIND BINARY: one member, filled, then the two loads.
measure() {
    local kind=$1 binary=$2 dir="$work/$1"
    endpoint="http://127.0.0.1:$port"
    local peer="http://127.0.0.1:$((port + 1))"
    "$binary" --name m1 --data-dir "$dir/data" --listen-client-urls "$endpoint" \
        --advertise-client-urls "$endpoint" --listen-peer-urls "$peer" \
        --initial-advertise-peer-urls "$peer" --initial-cluster "m1=$peer" \
        --snapshot-count 10000 --quota-backend-bytes 8589934592 >"$work/$kind.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        curl -s "$endpoint/health" | grep -q true && break
        sleep 0.1
    done
    "$bench_bin" --endpoints "$endpoint" --conns 8 --clients 64 --key-size 8 --val-size 256 \
        --total 1 --key-space "$keys" range >"$work/$kind.fill" 2>&1
    echo "$kind: $keys keys, RSS $(awk '/VmRSS/{print $2}' "/proc/$pid/status") kB"
    echo "  puts alone:        $(load "$kind-quiet")"
    hash_forever "$work/$kind.hash-ms" &
    hasher=$!
    echo "  puts while hashing: $(load "$kind-hashing")"
    kill "$hasher"; wait "$hasher" 2>/dev/null || true; hasher=""
    echo "  each hashkv, ms:   $(sort -n "$work/$kind.hash-ms" | tr '\n' ' ')"
    kill -9 "$pid"; wait "$pid" 2>/dev/null || true; pid=""
    port=$((port + 2))
}

if [ -n "$before" ]; then measure stet-before "$before"; fi
measure stet "$stet_bin"
measure etcd "$etcd_bin"
