#!/usr/bin/env bash
# Runs every test of stet: formatting, lints, a short fuzzing pass over every decoder, the core's
# unit/property/integration tests (including the in-process chaos test), and the madsim simulator's
# scenarios. This is the README's test command; .ci/run calls it after installing what it needs.
#
# Knobs: STET_SIM_SEEDS (seeds per simulator scenario; default: 5,000 seeds over all scenarios),
#        STET_FUZZ_SECONDS (per fuzz target, default 10; 0 skips fuzzing).
set -euo pipefail
cd "$(dirname "$0")/.."
results="$(mktemp)"
trap 'rm -f "$results"' EXIT
fuzz_seconds="${STET_FUZZ_SECONDS:-10}"
madsim_flags="--cfg madsim"

# The etcd-client crate (a third-party client the server tests use) runs protoc in its build script.
if ! command -v protoc >/dev/null 2>&1; then
    echo "== installing protoc (Debian's protobuf-compiler) for the etcd-client crate's build"
    if ! (apt-get update -qq && apt-get install -y -qq protobuf-compiler >/dev/null); then
        echo "error: protoc is missing and could not be installed: apt-get install protobuf-compiler" >&2
        exit 1
    fi
fi

# The real etcdctl 3.4 (Debian's etcd-client) for the compatibility tests, which fail without it.
if ! command -v etcdctl >/dev/null 2>&1; then
    echo "== installing etcdctl (Debian's etcd-client) for the compatibility tests"
    if ! (apt-get update -qq && apt-get install -y -qq etcd-client >/dev/null); then
        echo "error: etcdctl is missing and could not be installed: apt-get install etcd-client" >&2
        exit 1
    fi
fi

# faketime (Debian's) runs a member with its wall clock skewed (tests/runbook.rs, clock skew).
if ! command -v faketime >/dev/null 2>&1; then
    echo "== installing faketime for the clock-skew test"
    if ! (apt-get update -qq && apt-get install -y -qq faketime >/dev/null); then
        echo "error: faketime is missing and could not be installed: apt-get install faketime" >&2
        exit 1
    fi
fi

# The real etcd 3.4 (Debian's etcd-server), whose backups tests/migrate_etcd.rs restores into stet.
# The package would start an etcd on port 2379 unless policy-rc.d forbids it: forbid it for the
# install when the machine does not already.
if ! command -v etcd >/dev/null 2>&1; then
    echo "== installing etcd (Debian's etcd-server) for the migration test"
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=1
    fi
    installed=0
    apt-get update -qq && apt-get install -y -qq etcd-server >/dev/null && installed=1
    if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi
    if [ "$installed" != 1 ]; then
        echo "error: etcd is missing and could not be installed: apt-get install etcd-server" >&2
        exit 1
    fi
fi

echo "== cargo fmt --check (core, sim, fuzz)"
cargo fmt --all -- --check
cargo fmt --manifest-path sim/Cargo.toml --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml --all -- --check

echo "== cargo clippy, warnings are errors (core, then sim built with --cfg madsim)"
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTFLAGS="$madsim_flags" cargo clippy --manifest-path sim/Cargo.toml --all-targets --locked -- -D warnings

if [ "$fuzz_seconds" != "0" ]; then
    echo "== fuzzing every decoder for ${fuzz_seconds}s each"
    bash fuzz/run.sh "$fuzz_seconds"
fi

echo "== core tests"
cargo test --workspace --locked --release 2>&1 | tee -a "$results"

echo "== simulator: ${STET_SIM_SEEDS:-5,000 in all} seeds per scenario, determinism, oracle self-tests"
RUSTFLAGS="$madsim_flags" cargo test --manifest-path sim/Cargo.toml --locked --release 2>&1 | tee -a "$results"

# One closing line over every test binary (cargo's own last line is the doc-test run).
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "%d passed, %d failed\n", passed, failed }' "$results"
