# SPDX-License-Identifier: GPL-2.0
"""pytest set-up: import the pipeline's scripts, keep results in tmp."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import vmtool  # noqa: E402


@pytest.fixture
def results(tmp_path, monkeypatch):
    """A results directory of the test's own, in place of build/results."""
    d = tmp_path / 'results'
    monkeypatch.setattr(vmtool, 'RESULTS', d)
    monkeypatch.setattr(vmtool, 'EXPECTED', d / 'expected.txt')
    return d
