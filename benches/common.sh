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
