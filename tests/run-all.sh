#!/usr/bin/env bash
# Runs every test of stet: formatting, lints, unit/property/integration tests.
# This is the README's test command; .ci/run calls it after installing what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --workspace --locked --release
