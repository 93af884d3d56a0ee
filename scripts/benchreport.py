#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Compare the output of guest_memfd_bench over boots of the C and the Rust
kernel.

    benchreport.py --boot IMPL:EXIT:OUTPUT ... --runs N --kernel V
                   --json OUT.json [--png OUT.png] [--qemu VERSION]

One --boot per boot of a kernel, in the order they ran: IMPL is c or rust,
EXIT the exit status of the boot (vmrun's), OUTPUT the benchmark's output,
whose "metric <name> <unit> <median> <min> <max>" lines give the boot's
figure of each metric: the median of its runs.  A boot that exited non-zero
failed (a coarse guest clock, a splat, a hang): none of its figures is used.

Per metric the report gives, for each kernel, the median over its boots of
the boot figures and their range; the ratio of the two medians, normalised
so that > 1 means the Rust kernel is better (C/Rust for times and sizes,
Rust/C for rates); and the spread: the lowest and the highest ratio of any C
boot's figure to any Rust boot's figure.  A spread that reaches 1.0 means
the boots of the two kernels overlap: the ratio is "within noise".  With
three boots of each, a spread entirely on one side of 1.0 (every boot of
one kernel better than every boot of the other) happens by chance with
probability 2/20 when the kernels do not differ.

A figure of 0 (below what the benchmark can resolve) is replaced by the
resolution of its unit and the ratio marked as a lower bound.  It writes the
JSON with the per-boot figures and, if gnuplot is available, a PNG bar chart
of the ratios with the spreads as error bars.  There is no threshold: the
exit status is 1 only when the figures are incomplete (a failed boot, a
metric with no figure on one kernel).
"""

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Units where a smaller figure is better, with the resolution used for 0:
# bytes are counted in xarray nodes (584 bytes on x86_64: struct xa_node and
# the free pointer that SLUB keeps outside the objects of a cache with a
# constructor).
LOWER_IS_BETTER = {'us': 0.1, 'bytes': 584.0}
# Units where a larger figure is better.
HIGHER_IS_BETTER = {'GiB/s', 'pages/s'}
IMPLS = ('c', 'rust')
LABEL = {'c': 'C', 'rust': 'Rust'}

# Verdicts of a metric.
BETTER = 'better'        # spread above 1.0: every Rust boot better
WORSE = 'worse'          # spread below 1.0: every Rust boot worse
NOISE = 'noise'          # spread reaches 1.0
ONE_BOOT = 'one-boot'    # one figure on a kernel: no spread to judge
UNDEFINED = 'undefined'  # no ratio for the unit or the figures
MISSING = 'missing'      # no figure at all on a kernel
RUST_ONLY = 'rust-only'  # a metric of the 6.18 uAPI, which only Rust has

# Metrics of what only the Rust guest_memfd has (the 6.18 uAPI): the C
# kernel skips them, which leaves the report complete; each is shown beside
# its partner on anonymous memory (the name with _anon for _gmem).
RUST_ONLY_METRICS = ('mmap_touch_256m_gmem', 'fault_shared_256m_gmem')

SPREAD_TEXT = ('lowest..highest ratio of any C boot to any Rust boot; '
               '"within noise": the spread reaches 1.0')


def parse(text: str) -> dict:
    """The metrics of one boot's output: name -> {unit, median, min, max}."""
    metrics = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) == 6 and f[0] == 'metric':
            try:
                metrics[f[1]] = {'unit': f[2], 'median': float(f[3]),
                                 'min': float(f[4]), 'max': float(f[5])}
            except ValueError:
                pass
    return metrics


@dataclass
class Boot:
    """One boot of a kernel: IMPL, its number among the boots of that
    kernel (from 1), its exit status and the metrics of its output (none
    if it failed)."""
    impl: str
    number: int
    exit: int
    metrics: dict

    @property
    def failed(self) -> bool:
        return self.exit != 0


def make_boot(impl: str, number: int, exit_code: int, text: str) -> Boot:
    return Boot(impl, number, exit_code, parse(text) if exit_code == 0 else {})


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


def compare(unit: str, c: list, rust: list) -> dict:
    """The comparison of one metric given the figures of the boots of each
    kernel that have one (at least one each)."""
    mc, mr = statistics.median(c), statistics.median(rust)
    r, bound = ratio(unit, mc, mr)
    entry = {'unit': unit, 'c': mc, 'rust': mr,
             'c_min': min(c), 'c_max': max(c), 'rust_min': min(rust), 'rust_max': max(rust),
             'ratio': r, 'spread': None}
    if bound:
        entry['ratio_is_lower_bound'] = True
    pairs = [ratio(unit, x, y)[0] for x in c for y in rust]
    if r is None or any(p is None for p in pairs):
        entry['verdict'] = UNDEFINED
        return entry
    lo, hi = min(pairs), max(pairs)
    entry['spread'] = [lo, hi]
    if len(c) < 2 or len(rust) < 2:
        entry['verdict'] = ONE_BOOT
    elif lo > 1:
        entry['verdict'] = BETTER
    elif hi < 1:
        entry['verdict'] = WORSE
    else:
        entry['verdict'] = NOISE
    return entry


def analyse(boots: list) -> dict:
    """name -> comparison entry (compare()'s, plus the per-boot figures:
    c_boots, rust_boots, None where a boot failed or lacks the metric)."""
    by_impl = {impl: [b for b in boots if b.impl == impl] for impl in IMPLS}
    names = []
    for impl in IMPLS:
        for b in by_impl[impl]:
            names += [n for n in b.metrics if n not in names]
    result = {}
    for name in names:
        per_boot = {impl: [b.metrics.get(name) for b in by_impl[impl]] for impl in IMPLS}
        figures = {impl: [m['median'] for m in per_boot[impl] if m] for impl in IMPLS}
        unit = next(m['unit'] for impl in IMPLS for m in per_boot[impl] if m)
        if figures['c'] and figures['rust']:
            entry = compare(unit, figures['c'], figures['rust'])
        else:
            verdict = MISSING
            if name in RUST_ONLY_METRICS and figures['rust'] and not figures['c']:
                verdict = RUST_ONLY
            entry = {'unit': unit, 'ratio': None, 'spread': None, 'verdict': verdict}
            for impl in IMPLS:
                entry[impl] = statistics.median(figures[impl]) if figures[impl] else None
        for impl in IMPLS:
            entry[f'{impl}_boots'] = [m['median'] if m else None for m in per_boot[impl]]
            entry[f'{impl}_boots_runs'] = [[m['min'], m['max']] if m else None
                                           for m in per_boot[impl]]
        result[name] = entry
    return result


def fmt(v: float) -> str:
    if v == 0:
        return '0'
    if abs(v) >= 1e6 or abs(v) < 0.01:
        return f'{v:.3g}'
    if abs(v) >= 100:
        return f'{v:.0f}'
    return f'{v:.2f}'


def note(entry: dict, nboots: dict) -> str:
    v = entry['verdict']
    notes = {NOISE: 'within noise', ONE_BOOT: 'one boot: no spread',
             UNDEFINED: 'no ratio'}.get(v, '')
    if v == MISSING:
        notes = 'missing on ' + ' and '.join(LABEL[i] for i in IMPLS if entry[i] is None)
    if v == RUST_ONLY:
        notes = 'Rust only (6.18 uAPI)'
    short = [f'{LABEL[i]} {sum(x is not None for x in entry[f"{i}_boots"])}/{nboots[i]} boots'
             for i in IMPLS
             if entry[i] is not None and None in entry[f'{i}_boots']]
    return '; '.join([notes] + short if notes else short)


def table(metrics: dict, nboots: dict) -> list:
    rows = [('metric', 'unit', 'C median [boots]', 'Rust median [boots]', 'ratio', 'spread',
             '')]
    for name, e in metrics.items():
        side = {}
        for impl in IMPLS:
            if e[impl] is None:
                side[impl] = '-'
            elif e['verdict'] in (MISSING, RUST_ONLY):
                side[impl] = fmt(e[impl])
            else:
                side[impl] = f"{fmt(e[impl])} [{fmt(e[impl + '_min'])}..{fmt(e[impl + '_max'])}]"
        r = '-' if e['ratio'] is None else \
            ('>=' if e.get('ratio_is_lower_bound') else '') + fmt(e['ratio'])
        spread = '-' if e['spread'] is None else f"{fmt(e['spread'][0])}..{fmt(e['spread'][1])}"
        rows.append((name, e['unit'], side['c'], side['rust'], r, spread, note(e, nboots)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        lines.append('  '.join(cell.ljust(widths[j]) if j in (0, 1, 6) else cell.rjust(widths[j])
                               for j, cell in enumerate(row)).rstrip())
        if i == 0:
            lines.append('  '.join('-' * w for w in widths[:-1]))
    return lines


def summary(metrics: dict, failed: list) -> list:
    """The final lines: how many ratios are >= 1.0x, how many within
    noise, which are below 1.0x outside noise."""
    compared = {n: e for n, e in metrics.items() if e['ratio'] is not None and e['ratio'] > 0}
    lines = []
    if compared:
        geo = math.exp(sum(math.log(e['ratio']) for e in compared.values()) / len(compared))
        n = len(compared)
        ge1 = [x for x, e in compared.items() if e['ratio'] >= 1]
        noise = [x for x, e in compared.items() if e['verdict'] == NOISE]
        noise_below = [x for x in noise if compared[x]['ratio'] < 1]
        worse = [x for x, e in compared.items() if e['verdict'] == WORSE]
        better = [x for x in ge1 if compared[x]['verdict'] == BETTER]
        lines.append(f'{n} metrics compared, geometric mean of the ratios {fmt(geo)}')
        lines.append(f'ratio >= 1.0x: {len(ge1)} of {n} ({len(better)} outside noise)')
        lines.append(f'within noise: {len(noise)} of {n}' +
                     (f' ({len(noise_below)} of them below 1.0x: {", ".join(noise_below)})'
                      if noise_below else ''))
        one = [x for x, e in compared.items() if e['verdict'] == ONE_BOOT]
        if one:
            lines.append(f'not judged, one boot on a kernel: {", ".join(one)}')
        lines.append('below 1.0x outside noise: ' + (', '.join(worse) if worse else 'none'))
    for name in RUST_ONLY_METRICS:
        e, anon = metrics.get(name), metrics.get(name.replace('_gmem', '_anon'))
        if not e or e['verdict'] != RUST_ONLY:
            continue
        line = f'Rust only: {name} {fmt(e["rust"])} {e["unit"]}'
        if anon and anon.get('rust'):
            line += (f', anonymous memory {fmt(anon["rust"])} on Rust: '
                     f'{fmt(e["rust"] / anon["rust"])}x of it')
        lines.append(line)
    other = [n for n in metrics if n not in compared and metrics[n]['verdict'] != RUST_ONLY]
    if other:
        lines.append(f'no ratio: {", ".join(other)}')
    for b in failed:
        lines.append(f'{LABEL[b.impl]} boot {b.number} failed (exit {b.exit}): '
                     'its figures are left out')
    return lines


def chart(metrics: dict, png: Path, title: str) -> bool:
    gnuplot = shutil.which('gnuplot')
    if not gnuplot:
        print('benchreport: gnuplot not found, no chart', file=sys.stderr)
        return False
    rows = [(n, e) for n, e in metrics.items() if e['ratio'] is not None and e['ratio'] > 0]
    if not rows:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / 'ratios.dat'
        lines = []
        for name, e in rows:
            lo, hi = e['spread'] if e['spread'] else (e['ratio'], e['ratio'])
            colour = 0x999999 if e['verdict'] in (NOISE, ONE_BOOT) else 0x4477aa
            lines.append(f'"{name}" {e["ratio"]} {lo} {hi} {colour}\n')
        data.write_text(''.join(lines))
        low = min([0.1] + [min(e['ratio'], (e['spread'] or [1])[0]) / 2 for _, e in rows])
        script = f'''
set terminal png size 1100,600 font ",10" noenhanced
set output "{png}"
set title "{title}\\nerror bars: spread over the boots; grey: within noise"
set style fill solid 0.8 border -1
set boxwidth 0.7
set logscale y 10
set yrange [{low}:*]
set ylabel "ratio of the medians, > 1: Rust better (log scale)"
set grid ytics
set xtics rotate by 35 right nomirror
set key off
set arrow from graph 0, first 1 to graph 1, first 1 nohead lc rgb "red" lw 1
plot "{data}" using 0:2:5:xtic(1) with boxes lc rgb variable, \
     "{data}" using 0:2:3:4 with yerrorbars lc rgb "black" lw 1.5 pt 7 ps 0.4, \
     "{data}" using 0:4:(sprintf("%.3g", $2)) with labels offset 0,0.8
'''
        r = subprocess.run([gnuplot], input=script, text=True, capture_output=True)
        if r.returncode != 0:
            print(f'benchreport: gnuplot failed: {r.stderr.strip()}', file=sys.stderr)
            return False
    return True


def boot_arg(value: str):
    try:
        impl, code, path = value.split(':', 2)
        if impl not in IMPLS:
            raise ValueError
        return impl, int(code), Path(path)
    except ValueError:
        raise argparse.ArgumentTypeError(f'not IMPL:EXIT:OUTPUT with IMPL c or rust: {value}')


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument('--boot', type=boot_arg, action='append', required=True,
                    help='IMPL:EXIT:OUTPUT of one boot, in the order they ran')
    ap.add_argument('--runs', type=int, required=True)
    ap.add_argument('--kernel', required=True)
    ap.add_argument('--qemu', default='')
    ap.add_argument('--json', type=Path, required=True)
    ap.add_argument('--png', type=Path)
    args = ap.parse_args()

    boots, count = [], {impl: 0 for impl in IMPLS}
    for impl, code, path in args.boot:
        count[impl] += 1
        try:
            text = path.read_text(errors='replace')
        except OSError as e:
            print(f'benchreport: {e}', file=sys.stderr)
            text, code = '', code or 1
        boots.append(make_boot(impl, count[impl], code, text))
    metrics = analyse(boots)
    if not metrics:
        print('benchreport: no metric in the outputs', file=sys.stderr)
        return 1
    failed = [b for b in boots if b.failed]

    print(f'C, Rust: median over the boots of each boot\'s median of {args.runs} runs '
          f'[lowest..highest boot]; {count["c"]} C and {count["rust"]} Rust boots')
    print('ratio: of the medians, > 1: Rust better (C/Rust for us and bytes, Rust/C for rates)')
    print(f'spread: {SPREAD_TEXT}')
    print()
    print('\n'.join(table(metrics, count)))
    print()
    print('\n'.join(summary(metrics, failed)))

    out = {'kernel': args.kernel, 'qemu': args.qemu, 'runs': args.runs, 'boots': count,
           'order': [b.impl for b in boots],
           'failed_boots': [{'impl': b.impl, 'boot': b.number, 'exit': b.exit} for b in failed],
           'spread': SPREAD_TEXT, 'metrics': metrics}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + '\n')
    print(f'wrote {args.json}')
    if args.png:
        title = (f'guest_memfd Rust vs C, Linux {args.kernel}, QEMU/TCG, '
                 f'medians of {count["c"]}+{count["rust"]} boots of {args.runs} runs')
        if chart(metrics, args.png, title):
            print(f'wrote {args.png}')
    incomplete = failed or any(e['verdict'] == MISSING for e in metrics.values())
    return 1 if incomplete else 0


if __name__ == '__main__':
    sys.exit(main())
