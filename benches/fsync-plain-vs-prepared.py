#!/usr/bin/env python3
"""What an fdatasync costs after an append to a file that grows with it (a plain WAL segment)
against one over blocks zero-filled ahead of time (a prepared segment), on the file system of
DIR. Each round appends CHUNK bytes (about one group commit of 200k-put load) and fdatasyncs,
N times, in a fresh file of each kind; prints mean, p50, p99 and max per kind.

Usage: benches/fsync-plain-vs-prepared.py DIR [ROUNDS] [N] [CHUNK]
"""
import os
import sys
import time

SEGMENT_BYTES = 64 << 20
FILL_BYTES = 1 << 20


def measure(path, prepared, n, chunk):
    if os.path.exists(path):
        os.remove(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if prepared:
            zeros = bytes(FILL_BYTES)
            for offset in range(0, SEGMENT_BYTES, FILL_BYTES):
                os.pwrite(fd, zeros, offset)
                os.fdatasync(fd)
        data = b"x" * chunk
        waits = []
        for i in range(n):
            os.pwrite(fd, data, i * chunk)
            start = time.perf_counter()
            os.fdatasync(fd)
            waits.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        os.remove(path)
    waits.sort()
    us = lambda s: round(s * 1e6)
    kind = "prepared" if prepared else "plain"
    print(f"{kind:8} mean {us(sum(waits) / n)} us  p50 {us(waits[n // 2])}  "
          f"p99 {us(waits[n * 99 // 100])}  max {us(waits[-1])}")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    directory = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 3000
    chunk = int(sys.argv[4]) if len(sys.argv) > 4 else 6600
    if n * chunk > SEGMENT_BYTES:
        sys.exit("N * CHUNK must fit in one 64 MiB segment")
    path = os.path.join(directory, "fsync-probe.wal")
    for _ in range(rounds):
        measure(path, False, n, chunk)
        measure(path, True, n, chunk)


if __name__ == "__main__":
    main()
