#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Boot the test kernel under QEMU/TCG and run things in it.

Subcommands:
  run [--impl=c|rust] [--debug] [--timeout=S] -- BINARY [ARGS...]
      Run one static binary in the test kernel; print its output, exit with
      its exit code (see EXIT CODES).  scripts/vmrun is this subcommand.
  selftests [--impl=c|rust] [--debug] [--filter=SUBSTR]
      Run the KVM selftests of tests/selftests.list in one boot.
  kunit [--impl=c|rust] [--debug] [GLOB]
      Boot with KUnit enabled and report the built-in suites (GLOB filters).
  record NAME PASSED FAILED [DETAILS...]
      Record the outcome of a check that runs outside the VM (lint).
  verdict
      Sum build/results/*.json and print the closing "N passed, N failed".

The guest's ttyS0 is the kernel console, ttyS1 the program's output and
ttyS2 its exit status; logs of each boot are kept under build/vm/.
--debug boots the debug variant of the kernel (scripts/build-kernel --debug:
KASAN, kmemleak, DEBUG_VM, fault injection); its /init runs a kmemleak scan
after the payload, and a reported leak fails the run like any other splat.

EXIT CODES of `run`: the program's own exit code when the guest ran it to
the end with a clean kernel log; 125 when the guest hung, panicked or never
reported a status (a guest is hung when it does not boot within 3 minutes,
or when its heartbeat stops for 90 s); 126 when the kernel log holds an oops, BUG, WARN,
lockdep, KASAN, hung-task or similar report (after printing it).
"""

import argparse
import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get('GMEM_CACHE', Path.home() / '.cache' / 'gmem-rs'))
BUILD = REPO / 'build'
RESULTS = BUILD / 'results'
GUEST = REPO / 'scripts' / 'guest'

EXIT_VM_FAILURE = 125
EXIT_SPLAT = 126

# The guest's /init writes a heartbeat to ttyS2 every 5 s while the payload
# runs: a guest that is not up after BOOT_TIMEOUT, or whose heartbeat stops
# for HEARTBEAT_TIMEOUT, is hung (all its CPUs stuck) and is killed.
BOOT_TIMEOUT = 180
HEARTBEAT_TIMEOUT = 90

# The debug kernels (KASAN, kmemleak) run several times slower under TCG:
# the per-test timeouts of tests/selftests.list are scaled by this.
DEBUG_SLOWDOWN = 3

# Kernel log lines that fail a run whatever the program reported.
SPLAT_RE = re.compile('|'.join([
    r'WARNING:',
    r'BUG:',
    r'kernel BUG at',
    r'Oops',
    r'Kernel panic',
    r'general protection fault',
    r'Call Trace:',
    r'INFO: task .* blocked for more than',
    r'INFO: rcu_\w+ (self-)?detected stall',
    r'possible (circular|recursive) locking',
    r'inconsistent lock state',
    r'suspicious RCU usage',
    r'KASAN:',
    r'UBSAN:',
    r'kmemleak: \d+ new suspected',
    r'list_(add|del) corruption',
]))


@dataclasses.dataclass
class Boot:
    """What one boot of the test kernel produced."""
    name: str
    logdir: Path
    exit_code: Optional[int]
    problem: Optional[str]
    console: str
    output: str
    splats: List[str]
    seconds: float


def kernel_name(impl: str, debug: bool) -> str:
    return impl + ('-debug' if debug else '')


def kernel_image(impl: str, debug: bool) -> Path:
    out = CACHE / 'out' / f'x86_64-{kernel_name(impl, debug)}'
    image = out / 'arch' / 'x86' / 'boot' / 'bzImage'
    if not image.exists():
        sys.exit(f'vmtool: no kernel at {image}; build it with '
                 f'`scripts/build-kernel --impl={impl}{" --debug" if debug else ""}`')
    return image


def make_initramfs(kname: str, files: Dict[str, Path], cmd: Optional[List[str]],
                   dest: Path) -> None:
    """Write a gzip'd cpio with busybox, /init and FILES under /payload.

    Uses the kernel's own usr/gen_init_cpio, so no root is needed for the
    device node.
    """
    gen = CACHE / 'out' / f'x86_64-{kname}' / 'usr' / 'gen_init_cpio'
    spec = [
        'dir /dev 0755 0 0',
        'nod /dev/console 0600 0 0 c 5 1',
        'dir /proc 0755 0 0',
        'dir /sys 0755 0 0',
        'dir /tmp 1777 0 0',
        'dir /bin 0755 0 0',
        'dir /payload 0755 0 0',
        f'file /init {GUEST / "init"} 0755 0 0',
        'file /bin/busybox /bin/busybox 0755 0 0',
    ]
    for name, host in files.items():
        spec.append(f'file /payload/{name} {host} 0755 0 0')
    if cmd is not None:
        cmdfile = dest.with_suffix('.cmd')
        cmdfile.write_text('set -- ' + ' '.join(shlex.quote(a) for a in cmd) + '\n')
        spec.append(f'file /payload/cmd {cmdfile} 0644 0 0')
    specfile = dest.with_suffix('.spec')
    specfile.write_text('\n'.join(spec) + '\n')
    with open(dest, 'wb') as out:
        gen_p = subprocess.Popen([str(gen), str(specfile)], stdout=subprocess.PIPE)
        subprocess.run(['gzip', '-1'], stdin=gen_p.stdout, stdout=out, check=True)
        if gen_p.wait() != 0:
            sys.exit(f'vmtool: {gen} failed on {specfile}')


def host_tsc_khz() -> Optional[int]:
    """The host's TSC frequency, which a TCG guest's TSC runs at.

    The guest calibrates its TSC against the PIT, which fails when the host
    is busy ("Fast TSC calibration failed"); KVM inside the guest then has
    no TSC frequency and the selftests fail.  Passing the frequency with
    tsc_early_khz= makes the guest independent of host load.
    """
    try:
        for line in open('/proc/cpuinfo'):
            if line.startswith('cpu MHz'):
                return int(float(line.split(':')[1]) * 1000)
    except (OSError, ValueError):
        pass
    return None


def find_splats(console: str) -> List[str]:
    return [line for line in console.splitlines() if SPLAT_RE.search(line)]


def boot(impl: str, name: str, files: Dict[str, Path], cmd: Optional[List[str]],
         timeout: int, append: str = '', stream=None, debug: bool = False) -> Boot:
    """Boot the IMPL kernel, run CMD (in /payload) and collect the logs."""
    kname = kernel_name(impl, debug)
    stamp = time.strftime('%Y%m%d-%H%M%S')
    logdir = BUILD / 'vm' / f'{stamp}-{kname}-{name}'
    logdir.mkdir(parents=True, exist_ok=True)
    image = kernel_image(impl, debug)
    initrd = logdir / 'initramfs.cpio.gz'
    make_initramfs(kname, files, cmd, initrd)
    console, output, status = (logdir / n for n in ('console.log', 'output.log', 'status.log'))
    for f in (console, output, status):
        f.write_bytes(b'')
    cmdline = 'console=ttyS0 panic=-1 rdinit=/init kunit.enable=0 '
    khz = host_tsc_khz()
    if khz:
        cmdline += f'tsc_early_khz={khz} '
    cmdline += append
    qemu = ['qemu-system-x86_64', '-accel', 'tcg', '-cpu', 'max', '-smp', '2',
            '-m', '2048', '-nodefaults', '-display', 'none', '-no-reboot',
            '-kernel', str(image), '-initrd', str(initrd), '-append', cmdline,
            '-serial', f'file:{console}', '-serial', f'file:{output}',
            '-serial', f'file:{status}']
    (logdir / 'qemu.cmd').write_text(' '.join(shlex.quote(a) for a in qemu) + '\n')
    start = time.monotonic()
    problem = None
    with open(logdir / 'qemu.log', 'wb') as qlog:
        proc = subprocess.Popen(qemu, stdin=subprocess.DEVNULL, stdout=qlog, stderr=qlog)
        pos = 0
        last_size, last_beat = 0, start
        while True:
            try:
                proc.wait(timeout=0.25)
                finished = True
            except subprocess.TimeoutExpired:
                finished = False
            if stream is not None:
                data = output.read_bytes()[pos:]
                if data:
                    stream.write(data)
                    stream.flush()
                    pos += len(data)
            if finished:
                break
            now = time.monotonic()
            size = status.stat().st_size
            if size != last_size:
                last_size, last_beat = size, now
            if now - start > timeout:
                problem = f'guest hung: no exit after {timeout}s (killed)'
            elif last_size == 0 and now - start > BOOT_TIMEOUT:
                problem = f'guest hung: not up after {BOOT_TIMEOUT}s (killed)'
            elif last_size and now - last_beat > HEARTBEAT_TIMEOUT:
                problem = (f'guest hung: no heartbeat for {HEARTBEAT_TIMEOUT}s '
                           f'after {now - start:.0f}s (killed)')
            if problem:
                proc.kill()
                proc.wait()
                break
    seconds = time.monotonic() - start
    con = console.read_text(errors='replace')
    out = output.read_text(errors='replace')
    m = re.search(r'VMRUN-EXIT (\d+)', status.read_text(errors='replace'))
    exit_code = int(m.group(1)) if m else None
    if problem is None and exit_code is None:
        if 'Kernel panic' in con:
            problem = 'guest panicked'
        else:
            problem = f'guest stopped without reporting an exit status (qemu exit {proc.returncode})'
    return Boot(name, logdir, exit_code, problem, con, out, find_splats(con), seconds)


def report_problems(b: Boot) -> bool:
    """Print what went wrong with a boot; True if anything did."""
    bad = False
    if b.problem:
        print(f'vmtool: {b.problem}; logs in {b.logdir}', file=sys.stderr)
        print('--- last kernel log lines ---', file=sys.stderr)
        print('\n'.join(b.console.splitlines()[-25:]), file=sys.stderr)
        bad = True
    if b.splats:
        print(f'vmtool: kernel log has {len(b.splats)} report line(s); '
              f'full log: {b.logdir / "console.log"}', file=sys.stderr)
        for line in b.splats[:20]:
            print('    ' + line, file=sys.stderr)
        bad = True
    return bad


def write_result(name: str, passed: int, failed: int, skipped: int, details: list) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f'{name}.json').write_text(json.dumps(
        {'name': name, 'passed': passed, 'failed': failed, 'skipped': skipped,
         'details': details}, indent=1))


def cmd_run(args) -> int:
    binary = Path(args.argv[0])
    if not binary.is_file():
        sys.exit(f'vmrun: {binary} is not a file')
    files = {binary.name: binary.resolve()}
    b = boot(args.impl, 'run-' + binary.name, files, ['./' + binary.name] + args.argv[1:],
             args.timeout, stream=sys.stdout.buffer, debug=args.debug)
    if b.problem:
        report_problems(b)
        return EXIT_VM_FAILURE
    if b.splats and not args.allow_splats:
        report_problems(b)
        return EXIT_SPLAT
    return b.exit_code


KTAP_RE = re.compile(r'^(ok|not ok) (\d+) (.*?)(?: # (SKIP|TIMEOUT|exit=\d+).*)?$')


def read_selftest_list(impl: str, debug: bool = False) -> List[List[str]]:
    """The entries of tests/selftests.list for one kernel.  Leading @tags
    limit a line: @c and @rust to that implementation, @debug to the debug
    variant, @nodebug to the plain kernels; all of a line's tags must hold."""
    have = {impl, 'debug' if debug else 'nodebug'}
    entries = []
    for line in (REPO / 'tests' / 'selftests.list').read_text().splitlines():
        fields = line.split('#', 1)[0].split()
        tags = set()
        while fields and fields[0].startswith('@'):
            tags.add(fields.pop(0)[1:])
        if fields and tags <= have:
            entries.append(fields)
    return entries


def cmd_selftests(args) -> int:
    entries = [e for e in read_selftest_list(args.impl, args.debug)
               if args.filter in ' '.join([e[0]] + e[2:])]
    if not entries:
        sys.exit(f'vmtool: no selftest matches {args.filter!r}')
    files = {'run-kselftests': GUEST / 'run-kselftests'}
    lines = []
    scale = DEBUG_SLOWDOWN if args.debug else 1
    entries = [[path, str(int(tmo) * scale)] + targs for path, tmo, *targs in entries]
    for path, tmo, *targs in entries:
        host = CACHE / 'selftests' / path
        if not host.exists():
            sys.exit(f'vmtool: {host} missing; run scripts/build-selftests')
        files[host.name] = host
        lines.append(' '.join([host.name, tmo] + targs))
    with tempfile.NamedTemporaryFile('w', suffix='.list', delete=False) as lst:
        lst.write('\n'.join(lines) + '\n')
    files['tests.list'] = Path(lst.name)
    budget = sum(int(e[1]) + 15 for e in entries) + 120
    b = boot(args.impl, 'selftests', files, ['./run-kselftests', 'tests.list'], budget,
             stream=sys.stdout.buffer if args.verbose else None, debug=args.debug)
    name = kernel_name(args.impl, args.debug)
    os.unlink(lst.name)
    passed = failed = skipped = 0
    details = []
    for line in b.output.splitlines():
        m = KTAP_RE.match(line)
        if not m:
            continue
        status, _, tname, directive = m.groups()
        if status == 'ok' and directive == 'SKIP':
            skipped += 1
            verdict = 'SKIP'
        elif status == 'ok':
            passed += 1
            verdict = 'PASS'
        else:
            failed += 1
            verdict = 'FAIL' + (f' ({directive})' if directive else '')
        details.append({'test': tname, 'result': verdict})
        print(f'    [{name}] {verdict:<5} {tname}')
    missing = len(entries) - len(details)
    if missing > 0:
        failed += missing
        details.append({'test': f'{missing} selftest(s) without a result', 'result': 'FAIL'})
        print(f'    [{name}] FAIL  {missing} selftest(s) produced no result')
    # The kernel log is a test of its own: any splat or VM failure fails it.
    if report_problems(b):
        failed += 1
        details.append({'test': 'kernel log clean', 'result': 'FAIL'})
        print(f'    [{name}] FAIL  kernel log clean / guest finished')
    else:
        passed += 1
        details.append({'test': 'kernel log clean', 'result': 'PASS'})
        print(f'    [{name}] PASS  kernel log clean ({b.seconds:.0f}s boot+run)')
    if failed:
        print(f'vmtool: selftest output in {b.logdir / "output.log"}', file=sys.stderr)
    write_result(f'selftests-{name}', passed, failed, skipped, details)
    return 1 if failed else 0


SUMMARY_RE = re.compile(r'Testing complete\. Ran (\d+) tests?:?(.*)')


def kunit_counts(text: str):
    """Counts from kunit.py's closing summary line, or None."""
    m = None
    for m in SUMMARY_RE.finditer(text):
        pass
    if m is None:
        return None
    counts = {k: 0 for k in ('passed', 'failed', 'crashed', 'skipped', 'errors')}
    for key, val in re.findall(r'(\w+): (\d+)', m.group(2)):
        counts[key] = int(val)
    return counts


def record_kunit(name: str, text: str, extra_failures: int = 0) -> int:
    counts = kunit_counts(text)
    if counts is None:
        print(f'    [{name}] FAIL  no KUnit results found', file=sys.stderr)
        write_result(name, 0, 1, 0, [{'test': 'kunit results', 'result': 'FAIL'}])
        return 1
    failed = counts['failed'] + counts['crashed'] + counts['errors'] + extra_failures
    total = counts['passed'] + failed + counts['skipped']
    if total == 0:
        failed = 1
        print(f'    [{name}] FAIL  KUnit ran no tests', file=sys.stderr)
    write_result(name, counts['passed'], failed, counts['skipped'], [counts])
    print(f'    [{name}] {counts["passed"]} passed, {failed} failed, '
          f'{counts["skipped"]} skipped')
    return 1 if failed else 0


def cmd_kunit(args) -> int:
    append = 'kunit.enable=1'
    if args.glob:
        append += f' kunit.filter_glob={args.glob}'
    b = boot(args.impl, 'kunit', {}, None, args.timeout, append=append, debug=args.debug)
    parse = subprocess.run(
        [sys.executable, str(CACHE / 'src' / 'linux' / 'tools' / 'testing' / 'kunit' / 'kunit.py'),
         'parse', str(b.logdir / 'console.log')],
        capture_output=True, text=True)
    (b.logdir / 'kunit-parse.log').write_text(parse.stdout + parse.stderr)
    if args.verbose:
        print(parse.stdout)
    bad = report_problems(b)
    return record_kunit(f'kunit-qemu-{kernel_name(args.impl, args.debug)}', parse.stdout,
                        1 if bad else 0)


def cmd_kunit_record(args) -> int:
    """Record a kunit.py run log (the UML run) as a result."""
    return record_kunit(args.name, Path(args.log).read_text(errors='replace'))


def cmd_record(args) -> int:
    """Record the outcome of a non-VM check (lint, build) as a result."""
    write_result(args.name, args.passed, args.failed, 0, args.details)
    return 0


def cmd_verdict(args) -> int:
    passed = failed = skipped = 0
    for f in sorted(RESULTS.glob('*.json')):
        r = json.loads(f.read_text())
        print(f'    {r["name"]:<24} {r["passed"]:>4} passed {r["failed"]:>3} failed '
              f'{r["skipped"]:>3} skipped')
        passed += r['passed']
        failed += r['failed']
        skipped += r['skipped']
    extra = [line for line in args.extra_failures if line]
    for what in extra:
        print(f'    {what}: FAILED')
    failed += len(extra)
    tail = f', {skipped} skipped' if skipped else ''
    print(f'{passed} passed, {failed} failed{tail}')
    return 1 if failed or passed == 0 else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest='cmd', required=True)

    def impl_arg(p):
        p.add_argument('--impl', choices=('c', 'rust'), default=os.environ.get('IMPL', 'rust'))
        p.add_argument('--debug', action='store_true',
                       help='boot the debug variant (scripts/build-kernel --debug)')

    p = sub.add_parser('run')
    impl_arg(p)
    p.add_argument('--timeout', type=int, default=600)
    p.add_argument('--allow-splats', action='store_true')
    p.add_argument('argv', nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser('selftests')
    impl_arg(p)
    p.add_argument('--filter', default='')
    p.add_argument('-v', '--verbose', action='store_true')
    p.set_defaults(func=cmd_selftests)

    p = sub.add_parser('kunit')
    impl_arg(p)
    p.add_argument('--timeout', type=int, default=600)
    p.add_argument('-v', '--verbose', action='store_true')
    p.add_argument('glob', nargs='?', default='')
    p.set_defaults(func=cmd_kunit)

    p = sub.add_parser('kunit-record')
    p.add_argument('name')
    p.add_argument('log')
    p.set_defaults(func=cmd_kunit_record)

    p = sub.add_parser('record')
    p.add_argument('name')
    p.add_argument('passed', type=int)
    p.add_argument('failed', type=int)
    p.add_argument('details', nargs='*')
    p.set_defaults(func=cmd_record)

    p = sub.add_parser('verdict')
    p.add_argument('extra_failures', nargs='*')
    p.set_defaults(func=cmd_verdict)

    args = ap.parse_args()
    if getattr(args, 'argv', None) is not None:
        if args.argv and args.argv[0] == '--':
            args.argv = args.argv[1:]
        if not args.argv:
            ap.error('run: expected -- BINARY [ARGS...]')
    return args.func(args)


if __name__ == '__main__':
    sys.exit(main())
