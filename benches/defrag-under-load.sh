#!/usr/bin/env bash
# Defragmentation of a large database while a put load runs, etcd beside stet (issue 9).
# For each of etcd and stet: starts one member on loopback (quota 8 GiB), fills it with
# `stet-bench put` (--fill puts of --val-size bytes into --key-space keys, so most of the file
# is old revisions), compacts at the head, waits 5 s, then runs a put load (--load-clients clients for
# --load-seconds) and, --defrag-after seconds into it, `etcdctl defrag`. Reports the file size
# before and just after, how long the defrag took, and the put load's slowest put, p99 and throughput
# over the whole load (which spans the defrag: etcd's stops the world, stet's runs online).
#
# Usage: benches/defrag-under-load.sh [--fill 1000000] [--key-space 400000] [--val-size 1024]
#          [--load-seconds 60] [--load-clients 16] [--defrag-after 5] [--keep-logs]
set -euo pipefail

fill=1000000
key_space=400000
val_size=1024
load_seconds=60
load_clients=16
defrag_after=5
keep_logs=0
while [ $# -gt 0 ]; do
    case "$1" in
        --fill) fill="$2"; shift 2 ;;
        --key-space) key_space="$2"; shift 2 ;;
        --val-size) val_size="$2"; shift 2 ;;
        --load-seconds) load_seconds="$2"; shift 2 ;;
        --load-clients) load_clients="$2"; shift 2 ;;
        --defrag-after) defrag_after="$2"; shift 2 ;;
        --keep-logs) keep_logs=1; shift ;;
        *) sed -n '2,12p' "$0" >&2; exit 2 ;;
    esac
done

# shellcheck source=benches/common.sh
source "$(dirname "$0")/common.sh"
work="$(mktemp -d /tmp/defrag-under-load.XXXXXX)"
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    if [ "$keep_logs" = 1 ]; then echo "logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

port=$((20000 + RANDOM % 10000))
# status FIELD: a number from `etcdctl endpoint status -w json` (dbSize, or revision in the header).
status() {
    ETCDCTL_API=3 "$etcdctl_bin" --endpoints "$endpoint" endpoint status -w json |
        grep -o "\"$1\":[0-9]*" | head -1 | cut -d: -f2
}

# measure KIND BINARY: one member, filled, compacted, defragmented under a put load.
measure() {
    local kind="$1" binary="$2"
    port=$((port + 2))
    endpoint="http://127.0.0.1:$port"
    local peer="http://127.0.0.1:$((port + 1))"
    "$binary" --name m1 --data-dir "$work/data-$kind" \
        --listen-client-urls "$endpoint" --advertise-client-urls "$endpoint" \
        --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
        --initial-cluster "m1=$peer" --initial-cluster-state new \
        --quota-backend-bytes 8589934592 >"$work/$kind.log" 2>&1 &
    pid="$!"
    until curl -s -m 1 "$endpoint/health" | grep -q '"health":"true"'; do
        kill -0 "$pid" 2>/dev/null || { echo "$kind exited; log:" >&2; tail "$work/$kind.log" >&2; exit 1; }
        sleep 0.2
    done
    echo "$kind: filling with $fill puts of $val_size bytes into $key_space keys"
    "$bench_bin" --endpoints "$endpoint" --conns 8 --clients 64 --total "$fill" \
        --val-size "$val_size" --key-space "$key_space" --json put >"$work/$kind-fill.json"
    local revision
    revision="$(status revision)"
    ETCDCTL_API=3 "$etcdctl_bin" --endpoints "$endpoint" --command-timeout=600s compact "$revision" --physical >/dev/null
    # Let the compaction's own work finish first (etcd's runs in the background): the load
    # measures the defrag.
    sleep 5
    local before
    before="$(status dbSize)"
    echo "$kind: compacted at $revision; file $before bytes; put load for ${load_seconds}s"
    "$bench_bin" --endpoints "$endpoint" --conns 4 --clients "$load_clients" \
        --duration "$load_seconds" --val-size "$val_size" --key-space "$key_space" --json put \
        >"$work/$kind-load.json" &
    local load="$!"
    sleep "$defrag_after"
    local started ended
    started="$(date +%s.%N)"
    ETCDCTL_API=3 "$etcdctl_bin" --endpoints "$endpoint" --command-timeout=600s defrag >/dev/null
    ended="$(date +%s.%N)"
    local after defrag_s
    after="$(status dbSize)"
    wait "$load"
    defrag_s="$(echo "$ended - $started" | bc)"
    if [ "$(echo "$defrag_after + $defrag_s > $load_seconds" | bc)" = 1 ]; then
        echo "$kind: the defrag outlasted the load; raise --load-seconds" >&2
        exit 1
    fi
    echo "$kind $before $after $defrag_s $(cat "$work/$kind-load.json")" >>"$work/results"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
}

measure etcd "$etcd_bin"
measure stet "$stet_bin"

field() { grep -o "\"$2\":[0-9.]*" <<<"$1" | head -1 | cut -d: -f2; }
echo
echo "one member, $fill puts of $val_size-byte values into $key_space keys, compacted; then"
echo "$load_clients clients put for ${load_seconds}s and etcdctl defrag starts ${defrag_after}s in."
echo "etcd $("$etcd_bin" --version | sed -n 's/^etcd Version: //p')."
printf '%-6s %14s %14s %10s %12s %10s %12s\n' kind file-before file-after defrag-s slowest-ms p99-ms puts/s
while read -r kind before after defrag_s json; do
    printf '%-6s %14s %14s %10.2f %12s %10s %12s\n' "$kind" "$before" "$after" "$defrag_s" \
        "$(field "$json" max_ms)" "$(field "$json" p99_ms)" "$(field "$json" throughput_rps)"
done <"$work/results"
