#!/usr/bin/env bash
# Measures etcd and stet the same way: starts an etcd cluster of --members members on loopback,
# runs `stet-bench put` and `stet-bench range --consistency l` against it (recording the CPU time
# the members used per 1,000 requests of each phase), reads the first
# member's memory (RSS) and data directory size, kills it with SIGKILL and times its restart
# until /health answers true, stops the cluster, then does the same with a stet cluster started
# with the very same flags, and prints both and the ratio stet/etcd. Installs Debian's etcd-server if `etcd` is missing; builds stet and stet-bench in
# release. Every member it starts is stopped when it exits, however it exits.
#
# With --server-cpus and --client-cpus (taskset lists, e.g. 0 and 1), the members run on the
# first CPUs and stet-bench on the second, so that the client's work does not take CPU from the
# server it measures (unpinned, a faster server also makes its client busier on the same cores).
#
# Usage: benches/compare-etcd.sh [--members 3] [--conns 8] [--clients 64] [--total 20000]
#          [--key-size 8] [--val-size 256] [--key-space 10000] [--heartbeat-interval 100]
#          [--election-timeout 1000] [--snapshot-count 10000] [--rounds 1] [--phases put,range]
#          [--server-cpus LIST --client-cpus LIST] [--keep-logs]
# Clients go to every member's client URL (stet-bench spreads its connections over them). With
# --rounds N, etcd and stet take turns N times and the table shows each figure's median.
set -euo pipefail
cd "$(dirname "$0")/.."

members=3
conns=8
clients=64
total=20000
key_size=8
val_size=256
key_space=10000
heartbeat_interval=100
election_timeout=1000
snapshot_count=10000
keep_logs=0
rounds=1
phases="put,range"
server_cpus=""
client_cpus=""
health_timeout_s=30
stop_timeout_s=10

usage() { sed -n '14,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    if [ "$1" != --keep-logs ] && [ $# -lt 2 ]; then usage; fi
    case "$1" in
        --members) members="$2"; shift 2 ;;
        --conns) conns="$2"; shift 2 ;;
        --clients) clients="$2"; shift 2 ;;
        --total) total="$2"; shift 2 ;;
        --key-size) key_size="$2"; shift 2 ;;
        --val-size) val_size="$2"; shift 2 ;;
        --key-space) key_space="$2"; shift 2 ;;
        --heartbeat-interval) heartbeat_interval="$2"; shift 2 ;;
        --election-timeout) election_timeout="$2"; shift 2 ;;
        --snapshot-count) snapshot_count="$2"; shift 2 ;;
        --rounds) rounds="$2"; shift 2 ;;
        --phases) phases="$2"; shift 2 ;;
        --server-cpus) server_cpus="$2"; shift 2 ;;
        --client-cpus) client_cpus="$2"; shift 2 ;;
        --keep-logs) keep_logs=1; shift ;;
        *) usage ;;
    esac
done

if [ -n "$server_cpus$client_cpus" ] && { [ -z "$server_cpus" ] || [ -z "$client_cpus" ]; }; then
    echo "--server-cpus and --client-cpus go together" >&2
    exit 2
fi
# on_cpus LIST COMMAND...: COMMAND, pinned to the CPUs in LIST when LIST is not empty.
on_cpus() {
    local cpus="$1"
    shift
    if [ -n "$cpus" ]; then
        exec taskset -c "$cpus" "$@"
    else
        exec "$@"
    fi
}
if [ -n "$server_cpus" ]; then
    taskset -c "$server_cpus" true && taskset -c "$client_cpus" true
fi

# Settings from this shell's environment would reach one server and not the other (and stet
# refuses a setting given both as a flag and as a variable).
while read -r name; do unset "$name"; done < <(compgen -e | grep '^ETCD_' || true)

if ! command -v etcd >/dev/null 2>&1; then
    echo "== installing etcd-server (Debian's etcd 3.4)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
fi

echo "== building stet and stet-bench (release)"
cargo build --release --locked --bin stet --bin stet-bench
stet_bin="$PWD/target/release/stet"
bench_bin="$PWD/target/release/stet-bench"
etcd_bin="$(command -v etcd)"

work="$(mktemp -d -t stet-compare-etcd.XXXXXX)"
pids=()

stop_members() {
    local pid deadline
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    deadline=$((SECONDS + stop_timeout_s))
    for pid in "${pids[@]}"; do
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    pids=()
}

bench_pid=""
cleanup() {
    if [ -n "$bench_pid" ]; then
        kill -TERM "$bench_pid" 2>/dev/null || true
        wait "$bench_pid" 2>/dev/null || true
    fi
    stop_members
    if [ "$keep_logs" = 1 ]; then
        echo "logs kept in $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Ports below Linux's ephemeral range (so no outgoing connection takes one meanwhile), checked
# free by a refused connection and never handed out twice by this script.
taken_ports=" "
next_port=$((20000 + RANDOM % 10000))
free_port() {
    while :; do
        next_port=$((next_port + 1))
        [ "$next_port" -lt 32000 ] || next_port=20000
        case "$taken_ports" in *" $next_port "*) continue ;; esac
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$next_port") 2>/dev/null; then
            taken_ports="$taken_ports$next_port "
            port="$next_port"
            return
        fi
    done
}

# start_cluster KIND BINARY: starts --members members with etcd's flags and fresh data directories;
# sets client_urls.
start_cluster() {
    local kind="$1" binary="$2" i port initial_cluster="" names=() client_ports=() peer_ports=()
    for i in $(seq 1 "$members"); do
        names+=("m$i")
        free_port; client_ports+=("$port")
        free_port; peer_ports+=("$port")
        initial_cluster="${initial_cluster:+$initial_cluster,}m$i=http://127.0.0.1:$port"
    done
    client_urls=""
    for i in $(seq 0 $((members - 1))); do
        local client="http://127.0.0.1:${client_ports[$i]}" peer="http://127.0.0.1:${peer_ports[$i]}"
        local flags=(
            --name "${names[$i]}" --data-dir "$work/data-$kind-${names[$i]}"
            --listen-client-urls "$client" --advertise-client-urls "$client"
            --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer"
            --initial-cluster "$initial_cluster" --initial-cluster-state new
            --initial-cluster-token compare-etcd
            --heartbeat-interval "$heartbeat_interval" --election-timeout "$election_timeout"
            --snapshot-count "$snapshot_count"
        )
        if [ "$i" = 0 ]; then
            echo "   $kind ${flags[*]}"
            first_flags=("${flags[@]}")
            first_port="${client_ports[$i]}"
        fi
        echo "== round $round" >>"$work/$kind-${names[$i]}.log"
        (on_cpus "$server_cpus" "$binary" "${flags[@]}") >>"$work/$kind-${names[$i]}.log" 2>&1 &
        pids+=("$!")
        client_urls="${client_urls:+$client_urls,}$client"
    done
    wait_healthy "$kind" "${client_ports[@]}"
}

# wait_healthy KIND PORT...: every member answers {"health":"true"} within health_timeout_s,
# polled every $poll_s seconds.
poll_s=0.2
wait_healthy() {
    local kind="$1" port pid deadline=$((SECONDS + health_timeout_s))
    shift
    for port in "$@"; do
        until curl -s -m 1 "http://127.0.0.1:$port/health" | grep -q '"health":"true"'; do
            for pid in "${pids[@]}"; do
                if ! kill -0 "$pid" 2>/dev/null; then
                    echo "$kind: a member exited during startup; its logs:" >&2
                    tail -n 5 "$work/$kind"-*.log >&2
                    exit 1
                fi
            done
            if [ "$SECONDS" -ge "$deadline" ]; then
                echo "$kind: not healthy within ${health_timeout_s}s; logs:" >&2
                tail -n 5 "$work/$kind"-*.log >&2
                exit 1
            fi
            sleep "$poll_s"
        done
    done
}

# check_running KIND: figures from a cluster that lost a member meanwhile are not comparable.
check_running() {
    local pid
    for pid in "${pids[@]}"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "$1: a member exited during the run; its logs:" >&2
            tail -n 5 "$work/$1"-*.log >&2
            exit 1
        fi
    done
}

bench_flags=(--conns "$conns" --clients "$clients" --total "$total" --key-size "$key_size"
    --val-size "$val_size" --key-space "$key_space" --json)

# measure KIND BINARY: starts a cluster, runs both phases against it, stops it.
measure() {
    local kind="$1" binary="$2"
    echo "== $kind: $members member(s)"
    start_cluster "$kind" "$binary"
    echo "   stet-bench --endpoints $client_urls ${bench_flags[*]} put|range --consistency l"
    case ",$phases," in *,put,*) run_bench "$kind" put put ;; esac
    case ",$phases," in *,range,*) run_bench "$kind" range range --consistency l ;; esac
    measure_restart "$kind" "$binary"
    stop_members
    rm -rf "$work/data-$kind"-*
}

# run_bench KIND PHASE ARGS...: one stet-bench run, its JSON line appended to
# $work/results-KIND-PHASE. It runs in the background so that a signal stops the script at once.
run_bench() {
    local kind="$1" phase="$2" cpu_before line
    shift 2
    cpu_before="$(members_cpu_ticks)"
    (on_cpus "$client_cpus" "$bench_bin" "$@" --endpoints "$client_urls" "${bench_flags[@]}") \
        >"$work/result.json" &
    bench_pid=$!
    if ! wait "$bench_pid"; then
        echo "$kind: stet-bench $phase failed" >&2
        exit 1
    fi
    bench_pid=""
    check_running "$kind"
    # The CPU the members used for the phase, per 1,000 requests: on a machine whose cores the
    # client shares, what a server spends per request bounds its throughput.
    line="$(cat "$work/result.json")"
    awk -v before="$cpu_before" -v after="$(members_cpu_ticks)" -v hz="$(getconf CLK_TCK)" \
        -v total="$total" -v line="$line" 'BEGIN {
            sub(/}$/, sprintf(",\"server_cpu_ms_per_1k\":%.3f}", (after - before) * 1000 / hz / total * 1000), line)
            print line
        }' >>"$work/results-$kind-$phase"
}

# members_cpu_ticks: the user and system CPU time every member used so far, in clock ticks.
members_cpu_ticks() {
    local pid sum=0 ticks
    for pid in "${pids[@]}"; do
        ticks="$(awk '{ print $14 + $15 }' "/proc/$pid/stat")"
        sum=$((sum + ticks))
    done
    echo "$sum"
}

# rss_mb PID: the resident memory of a process, in MB.
rss_mb() {
    awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"
}

# measure_restart KIND BINARY: the first member's RSS and data directory after the load, then a
# SIGKILL and the time until it answers /health with true again, and its RSS then.
measure_restart() {
    local kind="$1" binary="$2" rss data led started restart_s
    rss="$(rss_mb "${pids[0]}")"
    data="$(du -sm "$work/data-$kind-m1" | cut -f1)"
    # Whether it led (etcd and stet both export etcd_server_is_leader): then the restart waits
    # for the others to elect a leader, which a follower's restart does not.
    led="$(curl -s "http://127.0.0.1:$first_port/metrics" | awk '$1 == "etcd_server_is_leader" { print $2 }')"
    kill -KILL "${pids[0]}"
    wait "${pids[0]}" 2>/dev/null || true
    started="$(date +%s.%N)"
    (on_cpus "$server_cpus" "$binary" "${first_flags[@]}") >>"$work/$kind-m1.log" 2>&1 &
    pids[0]=$!
    poll_s=0.01 wait_healthy "$kind" "$first_port"
    restart_s="$(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.3f", e - s }')"
    printf '{"rss_mb":%s,"data_mb":%s,"restart_s":%s,"rss_restarted_mb":%s,"killed_leader":%s}\n' \
        "$rss" "$data" "$restart_s" "$(rss_mb "${pids[0]}")" "${led:-0}" >>"$work/results-$kind-member"
}

# Alternating rounds, so that both see the same load from whatever else runs on the machine.
for round in $(seq 1 "$rounds"); do
    echo "== round $round of $rounds"
    measure etcd "$etcd_bin"
    measure stet "$stet_bin"
done

# median FILE FIELD: the median of one numeric field over the JSON lines of FILE.
median() {
    sed -E "s/.*\"$2\":([0-9.]+).*/\1/" "$1" | sort -g | awk '
        { v[NR] = $1 }
        END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo
echo "$members member(s) on 127.0.0.1; $conns conns, $clients clients, $total requests per phase,"
echo "$key_size-byte keys out of $key_space, $val_size-byte values; heartbeat ${heartbeat_interval} ms,"
echo "election timeout ${election_timeout} ms, snapshot count $snapshot_count. etcd $("$etcd_bin" --version | sed -n "s/^etcd Version: //p")."
[ "$rounds" = 1 ] || echo "Medians over $rounds alternating rounds."
[ -z "$server_cpus" ] || echo "Members on CPUs $server_cpus, stet-bench on CPUs $client_cpus (taskset)."
echo
printf '%-8s %-22s %12s %12s %10s\n' phase metric etcd stet stet/etcd
for phase in put range; do
    case ",$phases," in *,"$phase",*) ;; *) continue ;; esac
    label="$phase"
    if [ "$phase" = range ]; then label="range-l"; fi
    for metric in throughput_rps p50_ms p90_ms p99_ms max_ms errors server_cpu_ms_per_1k; do
        e="$(median "$work/results-etcd-$phase" "$metric")"
        s="$(median "$work/results-stet-$phase" "$metric")"
        ratio="$(awk -v e="$e" -v s="$s" 'BEGIN { if (e > 0) printf "%.2f", s / e; else print "-" }')"
        case "$metric" in
            throughput_rps) digits=1 ;;
            errors) digits=0 ;;
            *) digits=3 ;;
        esac
        printf "%-8s %-22s %12.${digits}f %12.${digits}f %10s\n" "$label" "$metric" "$e" "$s" "$ratio"
    done
done
for metric in rss_mb data_mb restart_s rss_restarted_mb; do
    e="$(median "$work/results-etcd-member" "$metric")"
    s="$(median "$work/results-stet-member" "$metric")"
    ratio="$(awk -v e="$e" -v s="$s" 'BEGIN { if (e > 0) printf "%.2f", s / e; else print "-" }')"
    printf "%-8s %-22s %12.3f %12.3f %10s\n" member "$metric" "$e" "$s" "$ratio"
done
echo "restart_s per round (* the member killed was the leader):"
for kind in etcd stet; do
    printf '  %-5s' "$kind"
    while IFS= read -r line; do
        r="$(printf '%s' "$line" | sed -E 's/.*"restart_s":([0-9.]+).*/\1/')"
        l="$(printf '%s' "$line" | sed -E 's/.*"killed_leader":([0-9]+).*/\1/')"
        if [ "$l" = 1 ]; then printf ' %s*' "$r"; else printf ' %s' "$r"; fi
    done <"$work/results-$kind-member"
    echo
done
