#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The whole change as one git format-patch series (make series).

  scripts/series [--check] [--full] [--record NAME] [--out DIR]

Writes DIR (default build/series/): a cover letter (0000-cover-letter.patch,
its subject and blurb from patches/cover-letter) and one patch for each line
of patches/series, in that order, each with its edits to kernel files plus
the new files that patches/files assigns to it, with its own author, date
and message.  Fails, naming them, on new files that no patch claims and on
claimed files that do not exist (see patches/files).

--check then verifies the series: it must `git am` onto pristine 6.12.117
and give exactly the tree scripts/prepare-source builds ($GMEM_CACHE/src/
linux, which must be up to date), and every patch must pass the kernel's
scripts/checkpatch.pl.  The git am runs in a scratch repository that holds
only the pristine files the patches change; the rest of the prepared tree
is compared with the pristine tree by `diff -r`, so every file of the
prepared tree is checked.  --full runs git am on a git repository of the
whole pristine tree instead and diffs the two whole trees (slower).
Ignored in the comparison: __pycache__ directories (kunit.py, run from the
prepared tree by scripts/kunit-uml, writes them), and nothing else.

--record NAME writes the checks as result NAME (build/results/NAME.json).
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get('GMEM_CACHE', Path.home() / '.cache' / 'gmem-rs'))
PRISTINE = CACHE / 'src' / 'pristine'
SRC = CACHE / 'src' / 'linux'
# The directories scripts/prepare-source copies into the kernel tree
# (its OVERLAY_DIRS; a test keeps the two the same).
OVERLAY_DIRS = ('rust', 'virt', 'include', 'Documentation', 'tools', 'arch')
# Build outputs that may appear in the prepared tree: kunit.py's bytecode.
IGNORED = ('__pycache__',)
# checkpatch's message types that the check ignores:
# - FILE_PATH_CHANGES ("added, moved or deleted file(s), does MAINTAINERS
#   need updating?") fires on every patch that adds a file; the series has
#   no MAINTAINERS entry (it is not for upstream as is);
# - LONG_LINE_STRING, a line over 100 columns only because a quoted string
#   that starts before column 100 runs past it: coding-style.rst says never
#   to break user-visible strings (the selftests' ksft_* messages), so that
#   they can be grepped for; other long lines (LONG_LINE) still fail.
CHECKPATCH_IGNORE = ('FILE_PATH_CHANGES', 'LONG_LINE_STRING')
COVER = '0000-cover-letter.patch'


class SeriesError(Exception):
    pass


# ---------------------------------------------------------------------------
# patches/series and patches/files

def strip_comment(line: str) -> str:
    return line.split('#', 1)[0].strip()


def read_series(path: Path) -> List[str]:
    """Patch file names of patches/series, in order."""
    return [s for s in (strip_comment(l) for l in path.read_text().splitlines()) if s]


def parse_manifest(text: str, where: str = 'patches/files') -> Dict[str, List[str]]:
    """The files each patch claims: "[PATCH]" lines, each followed by the
    paths of its files, one a line."""
    claims: Dict[str, List[str]] = {}
    patch: Optional[str] = None
    for n, line in enumerate(text.splitlines(), 1):
        s = strip_comment(line)
        if not s:
            continue
        m = re.fullmatch(r'\[\s*([^]\s]+)\s*\]', s)
        if m:
            patch = m.group(1)
            if patch in claims:
                raise SeriesError(f'{where}:{n}: second section for {patch}')
            claims[patch] = []
        elif s.startswith('[') or len(s.split()) != 1:
            raise SeriesError(f'{where}:{n}: expected "[PATCH]" or one path: {s!r}')
        elif patch is None:
            raise SeriesError(f'{where}:{n}: {s} is not under a "[PATCH]" line')
        else:
            claims[patch].append(s)
    return claims


def overlay_files(repo: Path) -> List[str]:
    """The new files, as scripts/prepare-source finds them: every file under
    the overlay directories of the work tree."""
    out = []
    for d in OVERLAY_DIRS:
        for root, _, files in os.walk(repo / d):
            for f in files:
                out.append(str((Path(root) / f).relative_to(repo)))
    return sorted(out)


def check_manifest(series: List[str], claims: Dict[str, List[str]],
                   overlay: List[str]) -> List[str]:
    """Problems of the manifest against the series and the overlay: every
    overlay file claimed exactly once, by a patch of the series, and every
    claimed file an overlay file."""
    errors = []
    in_series = set(series)
    owner: Dict[str, str] = {}
    ov = set(overlay)
    for patch, files in claims.items():
        if patch not in in_series:
            errors.append(f'patches/files: [{patch}] is not in patches/series')
        for f in files:
            if f in owner:
                errors.append(f'{f}: claimed by both {owner[f]} and {patch}')
                continue
            owner[f] = patch
            if f not in ov:
                errors.append(f'{f}: claimed by {patch} but does not exist '
                              f'(or is not under {", ".join(d + "/" for d in OVERLAY_DIRS)})')
    for f in overlay:
        if f not in owner:
            errors.append(f'{f}: new file that no patch claims (add it to patches/files)')
    return errors


def load(repo: Path) -> Tuple[List[str], Dict[str, List[str]]]:
    """patches/series and the checked manifest; raises SeriesError."""
    series = read_series(repo / 'patches' / 'series')
    errors = [f'patches/series names missing {p}' for p in series
              if not (repo / 'patches' / p).is_file()]
    mf = repo / 'patches' / 'files'
    claims = parse_manifest(mf.read_text() if mf.is_file() else '')
    errors += check_manifest(series, claims, overlay_files(repo))
    if errors:
        raise SeriesError('\n'.join(errors))
    return series, claims


def patch_paths(patch: Path) -> Tuple[Set[str], Set[str]]:
    """Files a patch reads (a/ side) and writes (b/ side)."""
    return patch_paths_text(patch.read_text(errors='replace'))


def patch_paths_text(text: str) -> Tuple[Set[str], Set[str]]:
    old, new = set(), set()
    for line in text.splitlines():
        if line.startswith('--- a/'):
            old.add(line[6:].split('\t')[0].strip())
        elif line.startswith('+++ b/'):
            new.add(line[6:].split('\t')[0].strip())
    return old, new


# ---------------------------------------------------------------------------
# Building the series

def run(cmd: List[str], cwd: Optional[Path] = None, env: Optional[dict] = None,
        check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if check and p.returncode != 0:
        raise SeriesError(f'{" ".join(cmd)} (in {cwd}) failed:\n{p.stdout}')
    return p


def git_env() -> dict:
    """A fixed committer, so that the series' commit ids do not change from
    one run to the next (committer dates are set to the author dates)."""
    env = dict(os.environ)
    for k in ('GIT_DIR', 'GIT_WORK_TREE', 'GIT_INDEX_FILE'):
        env.pop(k, None)
    env.update(GIT_CONFIG_NOSYSTEM='1', GIT_CONFIG_GLOBAL='/dev/null')

    def cfg(key, default):
        p = subprocess.run(['git', '-C', str(REPO), 'config', key], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
        return p.stdout.strip() or default
    env['GIT_COMMITTER_NAME'] = env['GIT_AUTHOR_NAME'] = cfg('user.name', 'gmem-rs')
    env['GIT_COMMITTER_EMAIL'] = env['GIT_AUTHOR_EMAIL'] = cfg('user.email', 'gmem-rs@localhost')
    return env


def init_repo(path: Path, env: dict, files: List[str], date: str) -> None:
    """A git repository at PATH whose one commit holds FILES from the
    pristine tree."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    for f in files:
        (path / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PRISTINE / f, path / f)
    run(['git', 'init', '-q', '.'], path, env)
    run(['git', 'add', '-A', '-f'], path, env)
    e = dict(env, GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date)
    run(['git', 'commit', '-q', '--allow-empty', '-m', 'pristine 6.12.117'], path, e)


def base_files(patches: List[Path]) -> List[str]:
    """The pristine files the patches change."""
    files: Set[str] = set()
    for p in patches:
        old, new = patch_paths(p)
        files |= {f for f in old | new if (PRISTINE / f).is_file()}
    return sorted(files)


def cover_letter(path: Path, template: Path) -> None:
    """Put the subject and blurb of TEMPLATE (first line, blank line, body)
    into git format-patch's cover letter."""
    lines = template.read_text().splitlines()
    lines = [l for l in lines if not l.startswith('#')]
    while lines and not lines[0].strip():
        lines.pop(0)
    subject, body = lines[0], '\n'.join(lines[1:]).strip('\n')
    text = path.read_text()
    if '*** SUBJECT HERE ***' not in text or '*** BLURB HERE ***' not in text:
        raise SeriesError(f'{path}: no cover letter template to fill')
    text = text.replace('*** SUBJECT HERE ***', subject).replace('*** BLURB HERE ***', body)
    path.write_text(text)


def build(out: Path, work: Path) -> List[Path]:
    series, claims = load(REPO)
    patches = [REPO / 'patches' / p for p in series]
    env = git_env()
    repo = work / 'build'
    init_repo(repo, env, base_files(patches), '2000-01-01T00:00:00Z')
    for p in patches:
        r = run(['git', 'am', '-q', '--committer-date-is-author-date', str(p)], repo, env,
                check=False)
        if r.returncode != 0:
            raise SeriesError(f'{p.name} does not apply with git am:\n{r.stdout}')
        files = claims.get(p.name, [])
        if not files:
            continue
        for f in files:
            (repo / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, repo / f)
        run(['git', 'add', '-f', '--'] + files, repo, env)
        date = run(['git', 'log', '-1', '--format=%aD'], repo, env).stdout.strip()
        run(['git', 'commit', '-q', '--amend', '--no-edit'], repo,
            dict(env, GIT_COMMITTER_DATE=date))
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    # The cover letter's date: that of the newest patch, so that a rerun
    # writes the same files.
    newest = run(['git', 'log', '--format=%at', 'HEAD~%d..HEAD' % len(patches)],
                 repo, env).stdout.split()
    date = '@%d +0000' % max(int(t) for t in newest)
    run(['git', 'format-patch', '-q', '--cover-letter', '--binary', '--no-signature',
         '--filename-max-length=100',
         '-o', str(out), 'HEAD~%d' % len(patches)], repo,
        dict(env, GIT_COMMITTER_DATE=date))
    cover_letter(out / COVER, REPO / 'patches' / 'cover-letter')
    written = sorted(out.glob('*.patch'))
    if len(written) != len(patches) + 1:
        raise SeriesError(f'git format-patch wrote {len(written)} files for '
                          f'{len(patches)} patches')
    return written


# ---------------------------------------------------------------------------
# Checking it

def tree_diff(a: Path, b: Path, exclude: Tuple[str, ...]) -> Tuple[Set[str], List[str]]:
    """Paths (files, relative) that differ between trees A and B, with the
    lines of diff's output it could not read."""
    cmd = ['diff', '-rq', '--no-dereference']
    for x in exclude:
        cmd += ['-x', x]
    p = subprocess.run(cmd + [str(a), str(b)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, errors='replace')
    if p.returncode not in (0, 1):
        return set(), [f'diff -r exited {p.returncode}: {p.stdout[-2000:]}']
    paths: Set[str] = set()
    bad = []
    pa, pb = str(a) + '/', str(b) + '/'
    for line in p.stdout.splitlines():
        m = (re.fullmatch(r'Files (.+) and (.+) differ', line) or
             re.fullmatch(r'(?:File|Symbolic link) (.+) is an? .+ while (?:file|symbolic link) '
                          r'(.+) is an? .+', line))
        if m and m.group(1).startswith(pa):
            paths.add(m.group(1)[len(pa):])
            continue
        m = re.fullmatch(r'Only in (.+): (.+)', line)
        if m and (m.group(1).rstrip('/') + '/').startswith((pa, pb)):
            root = a if (m.group(1).rstrip('/') + '/').startswith(pa) else b
            rel = os.path.relpath(os.path.join(m.group(1), m.group(2)), root)
            full = root / rel
            if full.is_dir() and not full.is_symlink():
                for r, dirs, files in os.walk(full):
                    dirs[:] = [d for d in dirs if d not in exclude]
                    paths.update(os.path.relpath(os.path.join(r, f), root) for f in files)
            else:
                paths.add(rel)
            continue
        bad.append(line)
    return paths, bad


def same_file(a: Path, b: Path) -> bool:
    if a.is_symlink() or b.is_symlink():
        return a.is_symlink() and b.is_symlink() and os.readlink(a) == os.readlink(b)
    if not a.is_file() or not b.is_file():
        return False
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, 'rb') as fa, open(b, 'rb') as fb:
        return fa.read() == fb.read()


def git_am(repo: Path, files: List[Path], env: dict) -> Tuple[bool, str]:
    """git am FILES as the README says to: all of build/series/, the cover
    letter too, which --empty=drop skips."""
    r = run(['git', 'am', '--empty=drop', '--committer-date-is-author-date'] +
            [str(p) for p in files], repo, env, check=False)
    if r.returncode != 0:
        run(['git', 'am', '--abort'], repo, env, check=False)
    return r.returncode == 0, r.stdout


def compare_scratch(repo: Path, touched: List[str]) -> List[str]:
    """Problems of SRC against pristine + the series, where REPO is the
    scratch repository (only the files the series touches) after git am."""
    problems = []
    result = set()
    for r, dirs, files in os.walk(repo):
        dirs[:] = [d for d in dirs if d != '.git']
        result.update(os.path.relpath(os.path.join(r, f), repo) for f in files)
    deleted = set(touched) - result
    for f in sorted(result):
        if not same_file(repo / f, SRC / f):
            problems.append(f'{f}: differs from the prepared tree' if (SRC / f).exists()
                            else f'{f}: missing in the prepared tree')
    for f in sorted(deleted):
        if os.path.lexists(SRC / f):
            problems.append(f'{f}: deleted by the series but in the prepared tree')
    changed, bad = tree_diff(PRISTINE, SRC, IGNORED)
    problems += [f'diff: {l}' for l in bad]
    for f in sorted(changed - result - deleted):
        problems.append(f'{f}: differs between pristine and the prepared tree, '
                        'but the series does not touch it')
    return problems


def compare_full(repo: Path) -> List[str]:
    changed, bad = tree_diff(repo, SRC, IGNORED + ('.git',))
    return [f'diff: {l}' for l in bad] + [f'{f}: differs from the prepared tree'
                                          for f in sorted(changed)]


def checkpatch(patch: Path) -> Tuple[bool, str]:
    cmd = ['perl', 'scripts/checkpatch.pl', '--ignore', ','.join(CHECKPATCH_IGNORE), str(patch)]
    p = subprocess.run(cmd, cwd=SRC, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, errors='replace')
    return p.returncode == 0, p.stdout


class Checks:
    def __init__(self):
        self.details: List[str] = []
        self.passed = self.failed = 0

    def add(self, name: str, ok: bool, why: str = '') -> None:
        if ok:
            self.passed += 1
            self.details.append(f'{name}: ok')
        else:
            self.failed += 1
            self.details.append(f'{name}: FAILED' + (f': {why}' if why else ''))
        print(f'    {name}: {"ok" if ok else "FAILED"}', flush=True)
        if not ok and why:
            print('      ' + why.replace('\n', '\n      '), flush=True)


def check(written: List[Path], work: Path, full: bool, checks: Checks) -> None:
    patches = [p for p in written if p.name != COVER]
    env = git_env()
    repo = work / ('am-full' if full else 'am')
    t = time.time()
    if full:
        shutil.rmtree(repo, ignore_errors=True)
        print(f'>>> series: git repository of the whole pristine tree ({repo})', flush=True)
        run(['cp', '-a', str(PRISTINE), str(repo)])
        run(['git', 'init', '-q', '.'], repo, env)
        # -f: Debian's top-level .gitignore ignores everything ("/*").
        run(['git', 'add', '-A', '-f'], repo, env)
        run(['git', 'commit', '-q', '-m', 'pristine 6.12.117'], repo, env)
        print(f'    took {time.time() - t:.0f}s', flush=True)
        touched: List[str] = []
    else:
        touched = base_files(patches)
        init_repo(repo, env, touched, '2000-01-01T00:00:00Z')
    t = time.time()
    ok, out = git_am(repo, written, env)
    n = len(run(['git', 'rev-list', 'HEAD'], repo, env).stdout.split()) - 1
    ok = ok and n == len(patches)
    print(f'>>> series: git am --empty=drop {written[0].parent}/*.patch: '
          f'{n} commits on pristine ({time.time() - t:.1f}s)')
    print('    ' + out.strip().replace('\n', '\n    '), flush=True)
    checks.add('git am onto pristine 6.12.117', ok, '' if ok else out.strip()[-2000:])
    if not ok:
        return
    t = time.time()
    problems = compare_full(repo) if full else compare_scratch(repo, touched)
    what = 'whole tree diffed' if full else 'touched files compared, rest diffed against pristine'
    print(f'>>> series: compare with {SRC} ({what}; {time.time() - t:.1f}s)', flush=True)
    checks.add('identical to the prepared tree', not problems, '\n'.join(problems[:40]))
    t = time.time()
    print('>>> series: checkpatch --ignore ' + ','.join(CHECKPATCH_IGNORE), flush=True)
    for p in patches:
        ok, out = checkpatch(p)
        summary = next((l for l in out.splitlines() if l.startswith('total:')), '')
        checks.add(f'checkpatch {p.name}', ok, '' if ok else out.strip()[-3000:])
        if ok:
            print(f'      {summary}')
    print(f'    checkpatch took {time.time() - t:.1f}s', flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--check', action='store_true',
                    help='git am the series onto pristine, compare, checkpatch')
    ap.add_argument('--full', action='store_true',
                    help='with --check: git am onto a git repository of the whole tree')
    ap.add_argument('--record', metavar='NAME', help='record the checks as result NAME')
    ap.add_argument('--out', type=Path, default=REPO / 'build' / 'series')
    args = ap.parse_args()
    start = time.time()
    checks = Checks()
    work = CACHE / 'series'
    work.mkdir(parents=True, exist_ok=True)
    written: List[Path] = []
    try:
        if not (PRISTINE / 'Makefile').is_file():
            raise SeriesError(f'no pristine tree in {PRISTINE}: run scripts/prepare-source')
        written = build(args.out, Path(tempfile.mkdtemp(dir=work)))
        print(f'>>> series: wrote {len(written)} files to {args.out}')
        for p in written:
            print(f'    {p.name}')
        checks.add('manifest and git format-patch', True)
    except SeriesError as e:
        checks.add('manifest and git format-patch', False, str(e))
    finally:
        for d in work.glob('tmp*'):
            shutil.rmtree(d, ignore_errors=True)
    if written and args.check:
        try:
            check(written, work, args.full, checks)
        except SeriesError as e:
            checks.add('check', False, str(e))
        # The whole tree's repository is large: do not keep it.
        shutil.rmtree(work / 'am-full', ignore_errors=True)
    print(f'>>> series: {checks.passed} passed, {checks.failed} failed '
          f'in {time.time() - start:.0f}s')
    if args.record:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import vmtool
        vmtool.write_result(args.record, checks.passed, checks.failed, 0, checks.details)
    return 1 if checks.failed else 0


if __name__ == '__main__':
    sys.exit(main())
