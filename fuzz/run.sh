#!/usr/bin/env bash
# Fuzzes every decoder of bytes from disk or network for SECONDS each (default 20) and fails if any
# target crashes; the crashing input is left in fuzz/artifacts/<target>/. Works on stable Rust:
# libFuzzer without a sanitizer. Seeds fuzz/corpus/<target>/ from stet's own encoders first.
#
#   fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-20}"
targets=(wal_record wal_open snap_file state_snapshot raft_entry_apply raft_message peer_frames engine_value engine_state snapshot_chunk backup etcd_snapshot)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

echo "== seeding corpora"
cargo run --quiet --locked --features seed --bin seed -- corpus

echo "== building fuzz targets"
cargo fuzz build --sanitizer none

failed=()
for target in "${targets[@]}"; do
    echo "== fuzzing $target for ${seconds}s"
    if ! cargo fuzz run --sanitizer none "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1; then
        failed+=("$target")
    fi
done

if ((${#failed[@]})); then
    echo "FAILED: ${failed[*]} (reproducers in fuzz/artifacts/)" >&2
    exit 1
fi
echo "all ${#targets[@]} targets ran ${seconds}s without a crash"
