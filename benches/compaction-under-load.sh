#!/usr/bin/env bash
# Compaction of a large history while a put load runs, etcd beside stet (issue 9).
# For each of etcd and stet (and, with --before BINARY, another stet build): starts one member on
# loopback, puts every key of --keys keys twice (`stet-bench range`'s untimed fill, 256-byte
# values: --keys superseded versions), then runs two put loads of --puts puts (64 clients over 8
# connections into the same keys): one alone, one with `etcdctl compact` to the head revision
# asked 1 s in (dropping every superseded version). Reports both loads' throughput, p99 and
# slowest put, and how long the compaction took to be answered.
#
# Usage: benches/compaction-under-load.sh [--keys 1000000] [--puts 100000] [--before BINARY]
#          [--keep-logs]
set -euo pipefail

keys=1000000
puts=100000
# shellcheck source=benches/under-load.sh
source "$(dirname "$0")/under-load.sh" "$@"

# compact_soon REVISION FILE: waits 1 s, compacts to REVISION, writes the answer's milliseconds
# and etcdctl's output to FILE.
compact_soon() {
    sleep 1
    local start end out
    start=$(date +%s%N)
    out=$(ETCDCTL_API=3 "$etcdctl_bin" --endpoints "$endpoint" compact "$1" 2>&1 || true)
    end=$(date +%s%N)
    echo "$(((end - start) / 1000000)) ms ($out)" >"$2"
}

# head_revision: the member's current revision.
head_revision() {
    ETCDCTL_API=3 "$etcdctl_bin" --endpoints "$endpoint" endpoint status -w json |
        grep -o '"revision":[0-9]*' | head -1 | cut -d: -f2
}

# measure KIND BINARY: one member, filled twice, then the two loads.
measure() {
    local kind=$1
    start_member "$kind" "$2"
    fill_keys "$kind.fill1"
    fill_keys "$kind.fill2"
    echo "$kind: $keys keys twice, RSS $(awk '/VmRSS/{print $2}' "/proc/$pid/status") kB"
    echo "  puts alone:            $(put_load "$kind-quiet")"
    compact_soon "$(head_revision)" "$work/$kind.compact" &
    helper=$!
    echo "  puts while compacting: $(put_load "$kind-compacting")"
    wait "$helper"; helper=""
    echo "  compaction answered in $(cat "$work/$kind.compact")"
    stop_member
}

measure_all
