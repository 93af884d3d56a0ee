# SPDX-License-Identifier: GPL-2.0
"""The statistics and the report of make bench (benchreport.py), given
synthetic per-boot outputs of guest_memfd_bench."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import benchreport as br

SCRIPTS = Path(__file__).resolve().parent.parent


def output(**figures):
    """guest_memfd_bench's output with the boot figures (medians) FIGURES:
    name=(unit, median)."""
    lines = ['TAP version 13', '# guest_memfd_bench: 1 run']
    for name, (unit, median) in figures.items():
        lines.append(f'metric {name} {unit} {median} {median * 0.9} {median * 1.1}')
    return '\n'.join(lines) + '\n'


def boots(metric, unit, c, rust, failed=()):
    """Alternating boots of one metric with the figures C and RUST (lists;
    None: the boot lacks the metric); FAILED: (impl, number) of boots that
    exited 125."""
    out = []
    for i in range(max(len(c), len(rust))):
        for impl, figs in (('c', c), ('rust', rust)):
            if i < len(figs):
                code = 125 if (impl, i + 1) in failed else 0
                text = output() if figs[i] is None else output(**{metric: (unit, figs[i])})
                out.append(br.make_boot(impl, i + 1, code, text))
    return out


def one(unit, c, rust, failed=()):
    return br.analyse(boots('m', unit, c, rust, failed))['m']


# ---------------------------------------------------------------------------
# Medians and spread

def test_parse_ignores_other_lines():
    m = br.parse('metric a us 1.5 1 2\nmetric b us x 1 2\n'
                 'metrics c us 1 1 1\n# metric d us 1 1 1\n')
    assert m == {'a': {'unit': 'us', 'median': 1.5, 'min': 1.0, 'max': 2.0}}


def test_median_of_an_odd_number_of_boots():
    e = one('us', [300, 100, 200], [50, 70, 60])
    assert (e['c'], e['rust']) == (200, 60)
    assert e['ratio'] == pytest.approx(200 / 60)


def test_median_of_an_even_number_of_boots():
    e = one('us', [100, 400, 200, 300], [10, 20, 40, 30])
    assert (e['c'], e['rust']) == (250, 25)
    assert e['ratio'] == pytest.approx(10)


def test_spread_is_over_every_pair_of_boots():
    e = one('us', [100, 110, 120], [50, 55, 60])
    assert e['spread'] == pytest.approx([100 / 60, 120 / 50])
    assert (e['c_min'], e['c_max'], e['rust_min'], e['rust_max']) == (100, 120, 50, 60)
    assert e['verdict'] == br.BETTER


def test_rates_are_rust_over_c():
    e = one('GiB/s', [0.2, 0.2, 0.2], [0.3, 0.4, 0.5])
    assert e['ratio'] == pytest.approx(2)
    assert e['spread'] == pytest.approx([1.5, 2.5])
    assert e['verdict'] == br.BETTER


def test_worse_outside_noise():
    e = one('us', [75, 70, 80], [90, 95, 100])
    assert e['ratio'] == pytest.approx(75 / 95)
    assert e['spread'][1] < 1
    assert e['verdict'] == br.WORSE


def test_overlapping_boots_are_within_noise():
    # Rust's median is better, but one C boot beats one Rust boot.
    e = one('us', [100, 104, 110], [95, 98, 105])
    assert e['ratio'] > 1
    assert e['spread'][0] < 1 < e['spread'][1]
    assert e['verdict'] == br.NOISE


@pytest.mark.parametrize('c, rust', [
    ([100, 110, 120], [100, 90, 80]),     # lowest ratio exactly 1.0
    ([100, 90, 80], [100, 110, 120]),     # highest ratio exactly 1.0
    ([584, 584, 584], [584, 584, 584]),   # the same figure everywhere
])
def test_spread_reaching_one_exactly_is_within_noise(c, rust):
    e = one('us', c, rust)
    assert 1.0 in e['spread']
    assert e['verdict'] == br.NOISE


def test_zero_figure_is_a_lower_bound():
    e = one('us', [70, 71, 72], [0, 0, 0])
    assert e['ratio'] == pytest.approx(710)
    assert e['ratio_is_lower_bound']
    assert e['verdict'] == br.BETTER


def test_unknown_unit_has_no_ratio():
    e = one('widgets', [1, 2, 3], [1, 2, 3])
    assert e['ratio'] is None and e['verdict'] == br.UNDEFINED


# ---------------------------------------------------------------------------
# Failed boots and missing metrics

def test_failed_boot_is_left_out_even_with_figures():
    # Boot 2 of Rust printed a figure but exited 125 (coarse clock).
    e = one('us', [100, 100, 100], [50, 1000, 50], failed={('rust', 2)})
    assert e['rust_boots'] == [50, None, 50]
    assert e['rust'] == 50 and e['verdict'] == br.BETTER


def test_boot_without_the_metric_is_left_out():
    e = one('us', [100, None, 120], [50, 60, 70])
    assert e['c_boots'] == [100, None, 120]
    assert e['c'] == 110
    assert 'C 2/3 boots' in br.note(e, {'c': 3, 'rust': 3})


def test_one_boot_left_is_not_judged():
    e = one('us', [100, 100], [50, 200], failed={('rust', 2)})
    assert e['verdict'] == br.ONE_BOOT
    assert e['spread'] == pytest.approx([2, 2])


def test_metric_missing_on_one_kernel_has_no_ratio():
    e = one('us', [100, 100, 100], [None, None, 50], failed={('rust', 3)})
    assert e['verdict'] == br.MISSING and e['ratio'] is None
    assert e['rust'] is None and e['c'] == 100
    assert br.note(e, {'c': 3, 'rust': 3}) == 'missing on Rust'


def test_rust_only_metric_is_not_missing():
    # The 6.18 uAPI metrics: the C kernel skips them.
    e = one('pages/s', [None, None], [2000, 2200])
    assert e['verdict'] == br.MISSING  # an ordinary metric: incomplete
    metrics = br.analyse(boots('mmap_touch_256m_gmem', 'pages/s', [None, None], [2000, 2200]))
    e = metrics['mmap_touch_256m_gmem']
    assert e['verdict'] == br.RUST_ONLY and e['ratio'] is None and e['rust'] == 2100
    assert br.note(e, {'c': 2, 'rust': 2}) == 'Rust only (6.18 uAPI)'
    # Missing on Rust is still missing.
    metrics = br.analyse(boots('mmap_touch_256m_gmem', 'pages/s', [2000, 2000], [None, None]))
    assert metrics['mmap_touch_256m_gmem']['verdict'] == br.MISSING


def test_rust_only_metric_is_shown_beside_anonymous_memory():
    out = []
    for i in range(2):
        out.append(br.make_boot('c', i + 1, 0, output(
            fault_shared_256m_anon=('pages/s', 4000))))
        out.append(br.make_boot('rust', i + 1, 0, output(
            fault_shared_256m_anon=('pages/s', 4000), fault_shared_256m_gmem=('pages/s', 3000))))
    lines = br.summary(br.analyse(out), [])
    assert ('Rust only: fault_shared_256m_gmem 3000 pages/s, anonymous memory 4000 on Rust: '
            '0.75x of it') in lines
    assert not any(ln.startswith('no ratio') for ln in lines)


# ---------------------------------------------------------------------------
# The report

def report_metrics():
    runs = [
        ('attr_set_4k', 'us', [75, 70, 80], [90, 95, 100]),           # worse
        ('attr_clear_4k', 'us', [33, 34, 35], [35, 33, 36]),          # noise, below 1
        ('attr_set_2m', 'us', [5000, 5100, 5200], [90, 95, 100]),     # better
        ('gmem_create_close', 'us', [94, 92, 96], [91, 93, 95]),      # noise, above 1
        ('attr_mem_4g', 'bytes', [584, 584, 584], [584, 584, 584]),   # noise, exactly 1
    ]
    out = []
    for i in range(3):
        for impl in ('c', 'rust'):
            figs = {n: (u, (c if impl == 'c' else r)[i]) for n, u, c, r in runs}
            out.append(br.make_boot(impl, i + 1, 0, output(**figs)))
    return br.analyse(out)


def test_summary_counts():
    lines = br.summary(report_metrics(), [])
    assert lines[1] == 'ratio >= 1.0x: 3 of 5 (1 outside noise)'
    assert lines[2] == 'within noise: 3 of 5 (1 of them below 1.0x: attr_clear_4k)'
    assert lines[-1] == 'below 1.0x outside noise: attr_set_4k'


def test_summary_names_failed_boots_and_missing_metrics():
    metrics = br.analyse(boots('m', 'us', [1, 1], [None, 1], failed={('rust', 2)}))
    failed = [br.Boot('rust', 2, 125, {})]
    lines = br.summary(metrics, failed)
    assert 'no ratio: m' in lines
    assert lines[-1] == 'Rust boot 2 failed (exit 125): its figures are left out'


def test_table_marks_noise():
    lines = br.table(report_metrics(), {'c': 3, 'rust': 3})
    rows = {ln.split()[0]: ln for ln in lines[2:]}
    assert rows['attr_clear_4k'].endswith('within noise')
    assert rows['attr_mem_4g'].endswith('within noise')
    assert 'noise' not in rows['attr_set_4k'] and 'noise' not in rows['attr_set_2m']
    assert '75.00 [70.00..80.00]' in rows['attr_set_4k']


def run_report(tmp_path, boots_spec):
    args = [sys.executable, str(SCRIPTS / 'benchreport.py'), '--runs', '5', '--kernel', '6.12.117',
            '--json', str(tmp_path / 'bench.json')]
    for i, (impl, code, text) in enumerate(boots_spec):
        f = tmp_path / f'{impl}-{i}.txt'
        f.write_text(text)
        args += ['--boot', f'{impl}:{code}:{f}']
    r = subprocess.run(args, capture_output=True, text=True)
    return r, tmp_path / 'bench.json'


def test_command_writes_per_boot_figures(tmp_path):
    spec = [('c', 0, output(a=('us', 100))), ('rust', 0, output(a=('us', 50))),
            ('c', 0, output(a=('us', 110))), ('rust', 0, output(a=('us', 60))),
            ('c', 0, output(a=('us', 120))), ('rust', 0, output(a=('us', 55)))]
    r, js = run_report(tmp_path, spec)
    assert r.returncode == 0, r.stderr
    assert 'spread: lowest..highest ratio' in r.stdout
    assert r.stdout.splitlines()[-2] == 'below 1.0x outside noise: none'
    d = json.loads(js.read_text())
    assert d['boots'] == {'c': 3, 'rust': 3}
    assert d['order'] == ['c', 'rust'] * 3
    m = d['metrics']['a']
    assert m['c_boots'] == [100, 110, 120] and m['rust_boots'] == [50, 60, 55]
    assert m['c_boots_runs'][0] == pytest.approx([90, 110])
    assert (m['c'], m['rust'], m['verdict']) == (110, 55, 'better')


def test_command_with_a_failed_boot_reports_and_exits_1(tmp_path):
    spec = [('c', 0, output(a=('us', 100))), ('rust', 0, output(a=('us', 50))),
            ('c', 125, output(a=('us', 1))), ('rust', 0, output(a=('us', 60)))]
    r, js = run_report(tmp_path, spec)
    assert r.returncode == 1
    assert 'C boot 2 failed (exit 125)' in r.stdout
    d = json.loads(js.read_text())
    assert d['failed_boots'] == [{'impl': 'c', 'boot': 2, 'exit': 125}]
    assert d['metrics']['a']['c_boots'] == [100, None]
    assert d['metrics']['a']['verdict'] == 'one-boot'


def test_command_without_any_metric_fails(tmp_path):
    r, js = run_report(tmp_path, [('c', 125, ''), ('rust', 0, 'no figures\n')])
    assert r.returncode == 1
    assert 'no metric' in r.stderr
    assert not js.exists()
