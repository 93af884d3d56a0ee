# SPDX-License-Identifier: GPL-2.0
"""The differential fuzzer's own checks (scripts/fuzz, scripts/fuzztrace.py),
given a recorded smoke trace: a comparison of a kernel with itself and
traces whose operations never succeed must fail."""

import gzip
import importlib.machinery
import importlib.util
import re
from pathlib import Path

import fuzztrace

DATA = Path(__file__).resolve().parent / 'data'
TRACE = gzip.decompress((DATA / 'fuzz-smoke-seed-1002.trace.gz').read_bytes()).decode()


def load_fuzz():
    path = Path(__file__).resolve().parent.parent / 'fuzz'
    loader = importlib.machinery.SourceFileLoader('fuzz_script', str(path))
    spec = importlib.util.spec_from_loader('fuzz_script', loader)
    m = importlib.util.module_from_spec(spec)
    loader.exec_module(m)
    return m


def test_recorded_smoke_trace_meets_every_floor():
    assert fuzztrace.check_success(fuzztrace.success_counts(TRACE.splitlines())) == []


def test_trace_where_nothing_succeeds_fails():
    broken = re.sub(r'= (\S.*?) OK\b', '= -1 EPERM', TRACE)
    low = fuzztrace.check_success(fuzztrace.success_counts(broken.splitlines()))
    assert len(low) >= 10


def test_one_broken_operation_fails():
    broken = '\n'.join(re.sub(r'= 0 OK$', '= -1 ENOMEM', ln) if ' set_attr ' in ln else ln
                       for ln in TRACE.splitlines())
    low = fuzztrace.check_success(fuzztrace.success_counts(broken.splitlines()))
    assert any(x.startswith('set_attr ') for x in low)


def test_same_kernel_on_both_sides_is_refused():
    fuzz = load_fuzz()
    assert fuzz.same_kernel_problem([('rust', False), ('rust', False)])
    assert fuzz.same_kernel_problem([('c', True), ('c', True)])
    assert fuzz.same_kernel_problem([('c', False), ('rust', False)]) is None
