# SPDX-License-Identifier: GPL-2.0
"""The manifest of make series (patches/files, scripts/series.py): every new
file claimed by exactly one patch of patches/series, and nothing claimed
that does not exist; and the tree comparison of make series-check."""

import re
from pathlib import Path

import pytest

import series

SCRIPTS = Path(__file__).resolve().parent.parent

MANIFEST = """\
# comment
[0001-rust-a.patch]
rust/kernel/a.rs   # trailing comment
rust/helpers/a.c

[0002-doc.patch]
Documentation/a.rst
"""


@pytest.fixture
def repo(tmp_path):
    """A repository with two patches, three new files and a manifest that
    claims each of them."""
    (tmp_path / 'patches').mkdir()
    (tmp_path / 'patches' / 'series').write_text(
        '# edits\n0001-rust-a.patch\n0003-no-files.patch\n0002-doc.patch\n')
    for p in ('0001-rust-a.patch', '0002-doc.patch', '0003-no-files.patch'):
        (tmp_path / 'patches' / p).write_text('')
    (tmp_path / 'patches' / 'files').write_text(MANIFEST)
    for f in ('rust/kernel/a.rs', 'rust/helpers/a.c', 'Documentation/a.rst'):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text('x\n')
    # Not an overlay directory: never a new file of the series.
    (tmp_path / 'scripts').mkdir()
    (tmp_path / 'scripts' / 'tool').write_text('')
    return tmp_path


def test_parse_manifest():
    assert series.parse_manifest(MANIFEST) == {
        '0001-rust-a.patch': ['rust/kernel/a.rs', 'rust/helpers/a.c'],
        '0002-doc.patch': ['Documentation/a.rst'],
    }


@pytest.mark.parametrize('text, what', [
    ('rust/kernel/a.rs\n', 'not under a "[PATCH]" line'),
    ('[0001-a.patch]\nrust/a.rs rust/b.rs\n', 'expected "[PATCH]" or one path'),
    ('[0001-a.patch]\n[0001-a.patch]\n', 'second section for 0001-a.patch'),
    ('[0001-a.patch\n', 'expected "[PATCH]" or one path'),
])
def test_malformed_manifest_fails(text, what):
    with pytest.raises(series.SeriesError, match=re.escape(what)):
        series.parse_manifest(text)


def test_complete_manifest_passes(repo):
    order, claims = series.load(repo)
    assert order == ['0001-rust-a.patch', '0003-no-files.patch', '0002-doc.patch']
    assert claims['0002-doc.patch'] == ['Documentation/a.rst']


def test_unclaimed_file_fails_naming_it(repo):
    (repo / 'virt' / 'kvm').mkdir(parents=True)
    (repo / 'virt' / 'kvm' / 'new.rs').write_text('')
    with pytest.raises(series.SeriesError) as e:
        series.load(repo)
    assert 'virt/kvm/new.rs: new file that no patch claims' in str(e.value)


def test_missing_claimed_file_fails_naming_it(repo):
    (repo / 'rust' / 'helpers' / 'a.c').unlink()
    with pytest.raises(series.SeriesError) as e:
        series.load(repo)
    assert 'rust/helpers/a.c: claimed by 0001-rust-a.patch but does not exist' in str(e.value)


def test_claimed_file_outside_the_overlay_fails(repo):
    (repo / 'patches' / 'files').write_text(MANIFEST + 'scripts/tool\n')
    with pytest.raises(series.SeriesError, match='scripts/tool: claimed by 0002-doc.patch'):
        series.load(repo)


def test_every_problem_is_named(repo):
    (repo / 'rust' / 'kernel' / 'a.rs').unlink()
    (repo / 'include').mkdir()
    (repo / 'include' / 'b.h').write_text('')
    (repo / 'patches' / 'files').write_text(
        MANIFEST + '[0009-gone.patch]\nDocumentation/a.rst\n')
    with pytest.raises(series.SeriesError) as e:
        series.load(repo)
    msg = str(e.value)
    assert 'rust/kernel/a.rs: claimed by 0001-rust-a.patch but does not exist' in msg
    assert 'include/b.h: new file that no patch claims' in msg
    assert '[0009-gone.patch] is not in patches/series' in msg
    assert 'Documentation/a.rst: claimed by both 0002-doc.patch and 0009-gone.patch' in msg


def test_series_naming_a_missing_patch_fails(repo):
    (repo / 'patches' / '0003-no-files.patch').unlink()
    with pytest.raises(series.SeriesError, match='patches/series names missing 0003'):
        series.load(repo)


def test_overlay_dirs_are_those_of_prepare_source():
    text = (SCRIPTS / 'prepare-source').read_text()
    m = re.search(r'^OVERLAY_DIRS="([^"]*)"', text, re.M)
    assert m and tuple(m.group(1).split()) == series.OVERLAY_DIRS


def test_patch_paths():
    text = ('--- a/virt/kvm/Kconfig\n+++ b/virt/kvm/Kconfig\n'
            '--- /dev/null\n+++ b/virt/kvm/new.c\n')
    assert series.patch_paths_text(text) == ({'virt/kvm/Kconfig'},
                                             {'virt/kvm/Kconfig', 'virt/kvm/new.c'})


def test_tree_diff(tmp_path):
    a, b = tmp_path / 'a', tmp_path / 'b'
    for t in (a, b):
        (t / 'd').mkdir(parents=True)
        (t / 'd' / 'same').write_text('1')
    (a / 'd' / 'changed').write_text('1')
    (b / 'd' / 'changed').write_text('2')
    (a / 'gone').write_text('')
    (b / 'new' / 'sub').mkdir(parents=True)
    (b / 'new' / 'sub' / 'f').write_text('')
    (b / 'd' / '__pycache__').mkdir()
    (b / 'd' / '__pycache__' / 'x.pyc').write_text('')
    paths, bad = series.tree_diff(a, b, series.IGNORED)
    assert bad == []
    assert paths == {'d/changed', 'gone', 'new/sub/f'}


def test_cover_letter(tmp_path):
    cover = tmp_path / series.COVER
    cover.write_text('Subject: [PATCH 0/2] *** SUBJECT HERE ***\n\n*** BLURB HERE ***\n\n'
                     'A (2):\n')
    tmpl = tmp_path / 'cover-letter'
    tmpl.write_text('# how\nKVM: a title\n\nThe blurb.\n')
    series.cover_letter(cover, tmpl)
    assert cover.read_text() == 'Subject: [PATCH 0/2] KVM: a title\n\nThe blurb.\n\nA (2):\n'
