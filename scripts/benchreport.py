#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Compare the output of guest_memfd_bench on the C and the Rust kernel.

    benchreport.py C_OUTPUT RUST_OUTPUT --runs N --kernel V --json OUT.json [--png OUT.png]

Each input holds "metric <name> <unit> <median> <min> <max>" lines.  Prints
one table (C figure, Rust figure, ratio), writes the JSON and, if gnuplot is
available, a PNG bar chart of the ratios.  The ratio is normalised so that
> 1 means the Rust kernel is better: C/Rust for times and sizes, Rust/C for
rates.  A figure of 0 (below what the benchmark can resolve) is replaced by
the resolution of its unit and the ratio marked as a lower bound.
"""

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Units where a smaller figure is better, with the resolution used for 0:
# bytes are counted in xarray nodes (584 bytes on x86_64: struct xa_node and
# the free pointer that SLUB keeps outside the objects of a cache with a
# constructor).
LOWER_IS_BETTER = {'us': 0.1, 'bytes': 584.0}
# Units where a larger figure is better.
HIGHER_IS_BETTER = {'GiB/s', 'pages/s'}


def parse(path: Path) -> dict:
    metrics = {}
    for line in path.read_text(errors='replace').splitlines():
        f = line.split()
        if len(f) == 6 and f[0] == 'metric':
            try:
                metrics[f[1]] = {'unit': f[2], 'median': float(f[3]),
                                 'min': float(f[4]), 'max': float(f[5])}
            except ValueError:
                pass
    return metrics


def ratio(unit: str, c: float, rust: float):
    """Returns (ratio, is_lower_bound) or (None, False) if undefined."""
    if unit in LOWER_IS_BETTER:
        floor = LOWER_IS_BETTER[unit]
        bound = rust <= 0
        return c / max(rust, floor), bound
    if unit in HIGHER_IS_BETTER:
        if c <= 0:
            return None, False
        return rust / c, False
    return None, False


def fmt(v: float) -> str:
    if v == 0:
        return '0'
    if abs(v) >= 1e6 or abs(v) < 0.01:
        return f'{v:.3g}'
    if abs(v) >= 100:
        return f'{v:.0f}'
    return f'{v:.2f}'


def chart(rows, png: Path, title: str) -> bool:
    gnuplot = shutil.which('gnuplot')
    if not gnuplot:
        print('benchreport: gnuplot not found, no chart', file=sys.stderr)
        return False
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / 'ratios.dat'
        data.write_text(''.join(f'"{name}" {r}\n' for name, r in rows))
        low = min([0.1] + [r / 2 for _, r in rows])
        script = f'''
set terminal png size 1100,600 font ",10" noenhanced
set output "{png}"
set title "{title}"
set style fill solid 0.8 border -1
set boxwidth 0.7
set logscale y 10
set yrange [{low}:*]
set ylabel "ratio, > 1: Rust better (log scale)"
set grid ytics
set xtics rotate by 35 right nomirror
set key off
set arrow from graph 0, first 1 to graph 1, first 1 nohead lc rgb "red" lw 1
plot "{data}" using 0:2:xtic(1) with boxes lc rgb "#4477aa", \
     "{data}" using 0:2:(sprintf("%.3g", $2)) with labels offset 0,0.8
'''
        r = subprocess.run([gnuplot], input=script, text=True, capture_output=True)
        if r.returncode != 0:
            print(f'benchreport: gnuplot failed: {r.stderr.strip()}', file=sys.stderr)
            return False
    return True


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument('c_output', type=Path)
    ap.add_argument('rust_output', type=Path)
    ap.add_argument('--runs', type=int, required=True)
    ap.add_argument('--kernel', required=True)
    ap.add_argument('--qemu', default='')
    ap.add_argument('--json', type=Path, required=True)
    ap.add_argument('--png', type=Path)
    args = ap.parse_args()

    c, rust = parse(args.c_output), parse(args.rust_output)
    names = [n for n in c if n in rust] + [n for n in rust if n not in c]
    if not names:
        print('benchreport: no metric in the outputs', file=sys.stderr)
        return 1

    out = {'kernel': args.kernel, 'qemu': args.qemu, 'runs': args.runs, 'metrics': {}}
    rows = []
    table = [('metric', 'unit', 'C median [min, max]', 'Rust median [min, max]', 'ratio')]
    missing = 0
    for name in names:
        mc, mr = c.get(name), rust.get(name)
        if not mc or not mr:
            missing += 1
            side = 'C' if not mc else 'Rust'
            table.append((name, (mc or mr)['unit'], '-' if not mc else fmt(mc['median']),
                          '-' if not mr else fmt(mr['median']), f'missing on {side}'))
            continue
        unit = mc['unit']
        r, bound = ratio(unit, mc['median'], mr['median'])
        entry = {'c': mc['median'], 'rust': mr['median'], 'unit': unit,
                 'ratio': None if r is None else round(r, 4),
                 'c_min': mc['min'], 'c_max': mc['max'],
                 'rust_min': mr['min'], 'rust_max': mr['max']}
        if bound:
            entry['ratio_is_lower_bound'] = True
        out['metrics'][name] = entry
        rtext = '-' if r is None else ('>=' if bound else '') + fmt(r)
        table.append((name, unit,
                      f"{fmt(mc['median'])} [{fmt(mc['min'])}, {fmt(mc['max'])}]",
                      f"{fmt(mr['median'])} [{fmt(mr['min'])}, {fmt(mr['max'])}]",
                      rtext))
        if r is not None and r > 0:
            rows.append((name, r))

    widths = [max(len(row[i]) for row in table) for i in range(5)]
    for i, row in enumerate(table):
        print('  '.join(cell.ljust(widths[j]) if j < 2 else cell.rjust(widths[j])
                        for j, cell in enumerate(row)).rstrip())
        if i == 0:
            print('  '.join('-' * w for w in widths))
    if rows:
        geo = math.exp(sum(math.log(r) for _, r in rows) / len(rows))
        worse = [n for n, r in rows if r < 1]
        print(f'\n{len(rows)} metrics, geometric mean of the ratios {fmt(geo)}; '
              f'Rust slower on: {", ".join(worse) if worse else "none"}')

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + '\n')
    print(f'wrote {args.json}')
    if args.png and rows:
        title = f'guest_memfd Rust vs C, Linux {args.kernel}, QEMU/TCG, median of {args.runs}'
        if chart(rows, args.png, title):
            print(f'wrote {args.png}')
    return 1 if missing else 0


if __name__ == '__main__':
    sys.exit(main())
