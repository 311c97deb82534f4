#!/usr/bin/env bash
# How memory, restart time, backup time and the slowest put grow with the database, etcd beside
# stet (issue 9). For each of etcd and stet: starts one member on loopback (quota 8 GiB, snapshot
# count 10000), then in steps puts --val-size values under new random keys (64 clients over 8
# connections) until the data reaches each size of --sizes-mb. After each step it records the
# step's slowest put and p99, the size of the values put so far, of the database file (`dbSize`)
# and of the data directory, the member's RSS, how long
# `etcdctl snapshot save` takes, then kills the member with SIGKILL and times its restart until
# /health answers true, and the RSS after the restart. The next step goes on with the restarted
# member.
#
# Prints a table; writes it as TSV and an SVG plot beside it when --out PREFIX is given
# (PREFIX.tsv, PREFIX.svg).
#
# Usage: benches/growth.sh [--sizes-mb 250,500,1000,2000] [--val-size 1024] [--out PREFIX]
#          [--keep-logs]
set -euo pipefail

sizes_mb="250,500,1000,2000"
val_size=1024
out=""
keep_logs=0
while [ $# -gt 0 ]; do
    case "$1" in
        --sizes-mb) sizes_mb="$2"; shift 2 ;;
        --val-size) val_size="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --keep-logs) keep_logs=1; shift ;;
        *) sed -n '2,15p' "$0" >&2; exit 2 ;;
    esac
done

# shellcheck source=benches/common.sh
source "$(dirname "$0")/common.sh"
work="$(mktemp -d /tmp/growth.XXXXXX)"
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    if [ "$keep_logs" = 1 ]; then echo "logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

now() { date +%s.%N; }
seconds_since() { echo "$(now) - $1" | bc; }
field() { grep -o "\"$2\":[0-9.]*" <<<"$1" | head -1 | cut -d: -f2; }
rss_mb() { echo "scale=1; $(ps -o rss= -p "$1") / 1024" | bc; }

# start KIND BINARY: starts the member on its data directory and waits for /health.
start() {
    local kind="$1" binary="$2" peer="http://127.0.0.1:$((port + 1))"
    "$binary" --name m1 --data-dir "$work/data-$kind" \
        --listen-client-urls "$endpoint" --advertise-client-urls "$endpoint" \
        --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
        --initial-cluster "m1=$peer" --initial-cluster-state new \
        --snapshot-count 10000 --quota-backend-bytes 8589934592 >>"$work/$kind.log" 2>&1 &
    pid="$!"
    until curl -s -m 1 "$endpoint/health" | grep -q '"health":"true"'; do
        kill -0 "$pid" 2>/dev/null || { echo "$kind exited; log:" >&2; tail "$work/$kind.log" >&2; exit 1; }
        sleep 0.01
    done
}

# measure KIND BINARY: the member grown step by step, measured after each step.
measure() {
    local kind="$1" binary="$2" done_puts=0 size_mb
    port=$((20000 + RANDOM % 10000))
    endpoint="http://127.0.0.1:$port"
    start "$kind" "$binary"
    for size_mb in ${sizes_mb//,/ }; do
        local puts=$((size_mb * 1000 * 1000 / val_size - done_puts))
        echo "$kind: $puts puts of $val_size bytes, to about $size_mb MB of data"
        local json
        json="$("$bench_bin" --endpoints "$endpoint" --conns 8 --clients 64 --total "$puts" \
            --key-size 16 --key-space 10000000000 --val-size "$val_size" --json put)"
        done_puts=$((done_puts + puts))
        local db_mb data_mb rss started snapshot_s restart_s
        db_mb="$(ETCDCTL_API=3 "$etcdctl_bin" --endpoints "$endpoint" endpoint status -w json |
            grep -o '"dbSize":[0-9]*' | cut -d: -f2)"
        db_mb=$((db_mb / 1000000))
        data_mb="$(du -sm "$work/data-$kind" | cut -f1)"
        rss="$(rss_mb "$pid")"
        started="$(now)"
        ETCDCTL_API=3 "$etcdctl_bin" --endpoints "$endpoint" --command-timeout=600s \
            snapshot save "$work/backup.db" >>"$work/etcdctl.log" 2>&1
        snapshot_s="$(seconds_since "$started")"
        rm -f "$work/backup.db"
        kill -KILL "$pid"; wait "$pid" 2>/dev/null || true
        started="$(now)"
        start "$kind" "$binary"
        restart_s="$(seconds_since "$started")"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%.3f\t%s\t%s\n' "$kind" "$done_puts" \
            "$((done_puts * val_size / 1000000))" "$db_mb" "$data_mb" "$rss" \
            "$(rss_mb "$pid")" "$snapshot_s" "$restart_s" "$(field "$json" max_ms)" \
            "$(field "$json" p99_ms)" >>"$work/results.tsv"
    done
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
    rm -rf "$work/data-$kind"
}

printf 'kind\tputs\tvalues_mb\tdb_mb\tdata_dir_mb\trss_mb\trss_restarted_mb\tsnapshot_s\trestart_s\tslowest_put_ms\tp99_ms\n' \
    >"$work/results.tsv"
measure etcd "$etcd_bin"
measure stet "$stet_bin"

echo
echo "one member; puts of $val_size-byte values under new keys, 64 clients over 8 connections;"
echo "after each step: snapshot save, kill -9, restart. etcd $("$etcd_bin" --version | sed -n 's/^etcd Version: //p')."
column -t -s $'\t' "$work/results.tsv"
if [ -n "$out" ]; then
    cp "$work/results.tsv" "$out.tsv"
    python3 benches/plot-growth.py "$out.tsv" "$out.svg"
    echo "wrote $out.tsv and $out.svg"
fi
