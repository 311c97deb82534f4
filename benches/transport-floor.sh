#!/usr/bin/env bash
# The gRPC transport's floor: one member each of etcd, stet, and stet answering puts without
# storing them, under the same put load; prints each one's puts/s, its CPU per put (from
# /proc/PID/stat) and the load generator's (from /usr/bin/time), and stet-bench's latencies.
#
# Usage: benches/transport-floor.sh ROUNDS STET_BINARY FLOOR_BINARY
#
# FLOOR_BINARY is a build of stet whose `Kv::put` (src/server/grpc.rs) answers at once, after the
# same caller check, when STET_FLOOR is set (the script sets it for that binary only):
#     if std::env::var_os("STET_FLOOR").is_some() {
#         let caller = self.caller(&request)?;
#         let _ = (caller, request.into_inner());
#         return Ok(Response::new(pb::PutResponse {
#             header: Some(pb::ResponseHeader { cluster_id: 1, member_id: 2, revision: 3,
#                 raft_term: 4 }),
#             prev_kv: None,
#         }));
#     }
# The floor is what the client connections cost (hyper, h2, tonic, the axum router and stet's
# middleware) with no raft, WAL, fsync or engine behind them. Never ship such a build.
# Needs etcd on the PATH and target/release/stet-bench.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ne 3 ]; then sed -n '6p' "$0" | sed 's/^# //' >&2; exit 2; fi
rounds=$1
stet=$2
floor=$3
port=23790
for _ in $(seq 1 "$rounds"); do
    for kind in etcd stet floor; do
        dir=$(mktemp -d /tmp/transport-floor.XXXX)
        flags=(--name p1 --data-dir "$dir/data"
            --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port"
            --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800
            --initial-cluster p1=http://127.0.0.1:23800 --initial-cluster-state new
            --initial-cluster-token floor --heartbeat-interval 100 --election-timeout 1000
            --snapshot-count 10000)
        case $kind in
            etcd) etcd "${flags[@]}" >"$dir/log" 2>&1 & ;;
            stet) "$stet" "${flags[@]}" >"$dir/log" 2>&1 & ;;
            floor) STET_FLOOR=1 "$floor" "${flags[@]}" >"$dir/log" 2>&1 & ;;
        esac
        pid=$!
        until curl -s -m 1 "http://127.0.0.1:$port/health" | grep -q true; do sleep 0.2; done
        before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
        out=$({ /usr/bin/time -f "client_cpu_s %U %S" ./target/release/stet-bench \
            --endpoints "http://127.0.0.1:$port" --conns 8 --clients 64 --total 200000 \
            --key-size 8 --val-size 256 --key-space 1000000 put; } 2>&1)
        after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
        ticks=$(getconf CLK_TCK)
        puts=$(echo "$out" | awk '/throughput/ {print $2}')
        client=$(echo "$out" | awk '/client_cpu_s/ {printf "%.1f", ($2 + $3) * 1e6 / 200000}')
        server=$(awk -v t=$((after - before)) -v hz="$ticks" 'BEGIN {printf "%.1f", t / hz * 1e6 / 200000}')
        latency=$(echo "$out" | grep "latency ms" | sed 's/ *latency ms *//')
        echo "$kind puts/s $puts server_us_per_put $server client_us_per_put $client $latency"
        kill "$pid"
        wait "$pid" 2>/dev/null || true
        rm -rf "$dir"
    done
done
