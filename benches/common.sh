# Sourced by the etcd-beside-stet benchmark scripts once their flags are read: moves to the
# repository's root, finds etcd and etcdctl (Debian's etcd-server and etcd-client), builds stet
# and stet-bench, and sets etcd_bin, etcdctl_bin, stet_bin and bench_bin.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
etcd_bin="$(command -v etcd || true)"
etcdctl_bin="$(command -v etcdctl || true)"
if [ -z "$etcd_bin" ] || [ -z "$etcdctl_bin" ]; then
    echo "etcd and etcdctl are needed: apt-get install -y etcd-server etcd-client" >&2
    exit 1
fi
cargo build --release --locked --bin stet --bin stet-bench
stet_bin="$PWD/target/release/stet"
bench_bin="$PWD/target/release/stet-bench"

# The helpers below read the calling script's globals: work (its scratch directory), port,
# keys and puts; start_member sets pid and endpoint.

# start_member KIND BINARY: one member of BINARY (etcd or stet) on loopback at $port, its data
# in $work/KIND and its log in $work/KIND.log; waits until /health answers.
start_member() {
    local kind=$1 binary=$2
    endpoint="http://127.0.0.1:$port"
    local peer="http://127.0.0.1:$((port + 1))"
    "$binary" --name m1 --data-dir "$work/$kind/data" --listen-client-urls "$endpoint" \
        --advertise-client-urls "$endpoint" --listen-peer-urls "$peer" \
        --initial-advertise-peer-urls "$peer" --initial-cluster "m1=$peer" \
        --snapshot-count 10000 --quota-backend-bytes 8589934592 >"$work/$kind.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        curl -s "$endpoint/health" | grep -q true && break
        sleep 0.1
    done
}

# fill_keys NAME: puts every key of $keys once, 256-byte values (`stet-bench range`'s untimed
# fill), its output in $work/NAME.
fill_keys() {
    "$bench_bin" --endpoints "$endpoint" --conns 8 --clients 64 --key-size 8 --val-size 256 \
        --total 1 --key-space "$keys" range >"$work/$1" 2>&1
}

# put_load NAME: $puts puts of 256-byte values into $keys keys (64 clients over 8 connections);
# prints its throughput and latency lines on one line.
put_load() {
    "$bench_bin" --endpoints "$endpoint" --conns 8 --clients 64 --total "$puts" --key-size 8 \
        --val-size 256 --key-space "$keys" put >"$work/$1.out" 2>&1
    grep -a 'throughput\|latency' "$work/$1.out" | tr -s ' ' | tr '\n' ' '
}
