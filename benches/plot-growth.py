#!/usr/bin/env python3
"""Plots the TSV that benches/growth.sh writes as an SVG: one panel per measure (RSS, restart
time, snapshot save time, slowest put) against the size of the values put, etcd beside stet.
Standard library only: the machines that run the benchmarks have no plotting package.

Usage: plot-growth.py RESULTS.tsv OUT.svg
"""
import csv
import sys

PANELS = [
    ("rss_mb", "RSS after the step (MB)"),
    ("restart_s", "kill -9, restart until /health (s)"),
    ("snapshot_s", "etcdctl snapshot save (s)"),
    ("slowest_put_ms", "slowest put of the step (ms)"),
]
COLOURS = {"etcd": "#d62728", "stet": "#1f77b4"}
WIDTH, HEIGHT = 360, 240
MARGIN = 50


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def panel(rows, column, title, left, top):
    series = {}
    for row in rows:
        series.setdefault(row["kind"], []).append(
            (float(row["values_mb"]), float(row[column]))
        )
    x_max = max(x for points in series.values() for x, _ in points) or 1.0
    y_max = max(y for points in series.values() for _, y in points) or 1.0
    inner_w, inner_h = WIDTH - 2 * MARGIN, HEIGHT - 2 * MARGIN

    def at(x, y):
        return (
            left + MARGIN + inner_w * x / x_max,
            top + HEIGHT - MARGIN - inner_h * y / y_max,
        )

    out = [
        f'<text x="{left + WIDTH / 2}" y="{top + 20}" text-anchor="middle" '
        f'font-size="13">{title}</text>',
        f'<line x1="{left + MARGIN}" y1="{top + HEIGHT - MARGIN}" '
        f'x2="{left + WIDTH - MARGIN}" y2="{top + HEIGHT - MARGIN}" stroke="black"/>',
        f'<line x1="{left + MARGIN}" y1="{top + MARGIN}" x2="{left + MARGIN}" '
        f'y2="{top + HEIGHT - MARGIN}" stroke="black"/>',
        f'<text x="{left + MARGIN - 4}" y="{top + MARGIN + 4}" text-anchor="end" '
        f'font-size="10">{y_max:g}</text>',
        f'<text x="{left + MARGIN - 4}" y="{top + HEIGHT - MARGIN}" text-anchor="end" '
        f'font-size="10">0</text>',
        f'<text x="{left + WIDTH - MARGIN}" y="{top + HEIGHT - MARGIN + 14}" '
        f'text-anchor="end" font-size="10">{x_max:g} MB of values put</text>',
    ]
    for kind, points in sorted(series.items()):
        colour = COLOURS.get(kind, "black")
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in (at(*p) for p in sorted(points)))
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y in (at(*p) for p in points):
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>')
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    rows = read(sys.argv[1])
    body = []
    for i, (column, title) in enumerate(PANELS):
        body += panel(rows, column, title, (i % 2) * WIDTH, (i // 2) * HEIGHT + 20)
    for i, (kind, colour) in enumerate(sorted(COLOURS.items())):
        body.append(
            f'<text x="{10 + 80 * i}" y="14" font-size="13" fill="{colour}">{kind}</text>'
        )
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * WIDTH}" '
        f'height="{2 * HEIGHT + 20}" font-family="sans-serif">\n'
        '<rect width="100%" height="100%" fill="white"/>\n' + "\n".join(body) + "\n</svg>\n"
    )
    with open(sys.argv[2], "w") as f:
        f.write(svg)


if __name__ == "__main__":
    main()
