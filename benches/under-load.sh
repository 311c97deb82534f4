# Sourced, with its arguments, by the benchmark scripts that measure a put load on one member
# beside one other request (`*-under-load.sh`), once they set their defaults (keys, puts).
# Reads the flags each of them takes (--keys, --puts, --before BINARY, --keep-logs; anything
# else prints the script's header), sets up as common.sh does, and makes a scratch directory
# (work, removed on exit unless --keep-logs) and the member's port. On exit the member (pid)
# and the script's background helper (helper) are killed. `measure_all` then runs the script's
# `measure KIND BINARY` for the --before build, stet and etcd, in that order; `load_beside`
# is the usual first half of such a `measure`.
before=""
keep_logs=0
while [ $# -gt 0 ]; do
    case "$1" in
        --keys) keys="$2"; shift 2 ;;
        --puts) puts="$2"; shift 2 ;;
        --before) before="$2"; shift 2 ;;
        --keep-logs) keep_logs=1; shift ;;
        *) sed -n '2,/^set -euo/p' "$0" | grep '^#' >&2; exit 2 ;;
    esac
done

# shellcheck source=benches/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
work="$(mktemp -d "/tmp/$(basename "$0" .sh).XXXXXX")"
pid=""
helper=""
cleanup() {
    if [ -n "$helper" ]; then kill "$helper" 2>/dev/null || true; fi
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    if [ "$keep_logs" = 1 ]; then echo "logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

port=$((20000 + RANDOM % 10000))

# stop_member: kills the member (kill -9) and moves on to the next ports.
stop_member() {
    kill -9 "$pid"; wait "$pid" 2>/dev/null || true; pid=""
    port=$((port + 2))
}

measure_all() {
    if [ -n "$before" ]; then measure stet-before "$before"; fi
    measure stet "$stet_bin"
    measure etcd "$etcd_bin"
}

# load_beside KIND BINARY WHAT SIDE: one member of BINARY, filled with $keys keys, then two put
# loads, printing each: one alone, one ("puts while WHAT") while `SIDE $work/KIND.side` runs in
# the background as $helper. The caller then waits for the helper or kills it, reports what
# it wrote, and stops the member.
load_beside() {
    local kind=$1 what=$3 side=$4
    start_member "$kind" "$2"
    fill_keys "$kind.fill"
    echo "$kind: $keys keys, RSS $(awk '/VmRSS/{print $2}' "/proc/$pid/status") kB"
    local label="puts while $what:"
    printf '  %-*s %s\n' "${#label}" "puts alone:" "$(put_load "$kind-quiet")"
    "$side" "$work/$kind.side" &
    helper=$!
    echo "  $label $(put_load "$kind-$what")"
}
