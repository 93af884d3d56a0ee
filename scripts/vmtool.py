#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Boot the test kernel under QEMU/TCG and run things in it.

Subcommands:
  run [--impl=c|rust] [--debug | --bench] [--timeout=S] [--precise-clock]
      [--append=P] [--numa=N] -- BINARY [ARGS...]
      Run one static binary in the test kernel; print its output, exit with
      its exit code (see EXIT CODES).  scripts/vmrun is this subcommand.
  selftests [--impl=c|rust] [--debug] [--filter=SUBSTR]
      Run the KVM selftests of tests/selftests.list in one boot.
  kunit [--impl=c|rust] [--debug] [GLOB]
      Boot with KUnit enabled and report the built-in suites (GLOB filters).
  record NAME PASSED FAILED [DETAILS...]
      Record the outcome of a check that runs outside the VM (lint).
  expect NAME...
      Declare results that make check must produce; the verdict fails on
      each one that is missing.
  step-failed NAME STATUS [WHAT]
      A step exited with STATUS: unless its result already shows a
      failure, record one (a step that died before writing its result
      must not pass).
  verdict
      Sum build/results/*.json and print the closing "N passed, N failed".

The guest's ttyS0 is the kernel console, ttyS1 the program's output and
ttyS2 its exit status; logs of each boot are kept under build/vm/.
--debug boots the debug variant of the kernel (scripts/build-kernel --debug:
KASAN, kmemleak, DEBUG_VM, fault injection); its /init runs a kmemleak scan
after the payload, and a reported leak fails the run like any other splat.
--bench (run only) boots the benchmark variant (scripts/build-kernel --bench:
no lockdep), which make bench uses.

EXIT CODES of `run`: the program's own exit code when the guest ran it to
the end with a clean kernel log; 125 when the guest hung, panicked or never
reported a status (a guest is hung when it does not boot within 3 minutes,
or when its heartbeat stops for 90 s), or, with --precise-clock, when the
guest's clock was coarse; 126 when the kernel log holds an oops, BUG, WARN,
lockdep, KASAN, UBSAN, hung-task or similar report, when the kernel ended
tainted (other than by KUnit's TAINT_TEST), when lockdep switched itself off,
or when a kernel with kmemleak did not complete its leak scan (after
printing it).
"""

import argparse
import dataclasses
import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get('GMEM_CACHE', Path.home() / '.cache' / 'gmem-rs'))
BUILD = REPO / 'build'
RESULTS = BUILD / 'results'
EXPECTED = RESULTS / 'expected.txt'
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
    r'rcu_\w+ detected expedited stalls',
    r'possible (circular|recursive) locking',
    r'inconsistent lock state',
    r'suspicious RCU usage',
    r'KASAN:',
    r'UBSAN:',
    r'kmemleak: \d+ new suspected',
    # kmemleak that stopped tracking cannot find leaks any more.
    r'kmemleak: .*disabled',
    r'Cannot allocate a kmemleak_object',
    r'vmrun: kmemleak scan failed',
    r'list_(add|del) corruption',
]))

# TAINT_* flags (include/linux/panic.h) by bit, as /proc/sys/kernel/tainted
# and the "Tainted:" line of a report spell them.  KUnit sets TAINT_TEST
# whenever it runs a suite; any other taint fails the boot.
TAINT_LETTERS = 'PFSRMBUDAWCIOELKXTN'
TAINT_TEST = 18

# What the guest's /init reports at the end of a boot (scripts/guest/init).
END_RE = re.compile(r'vmrun: (tainted|debug_locks|clocksource|kmemleak) (\S+)')


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
    # Problems of the kernel's state at the end (taint, lockdep off, no leak
    # scan), which fail the boot like splats.
    state: List[str] = dataclasses.field(default_factory=list)
    clock: Optional[str] = None

    def summary(self) -> str:
        """The boot's problems in one line, for a result's details."""
        return '; '.join(filter(None, [self.problem] + self.state + self.splats[:3]))


# The architectures of the test kernels: x86_64 boots in qemu-system-x86_64,
# arm64 in qemu-system-aarch64 with an emulated EL2 for KVM.
ARCHES = ('x86_64', 'arm64')


def variant_name(impl: str, debug: bool, bench: bool = False) -> str:
    """The implementation and variant of a kernel: rust, c-debug, rust-bench."""
    return impl + ('-debug' if debug else '-bench' if bench else '')


def kernel_name(impl: str, debug: bool, bench: bool = False, arch: str = 'x86_64') -> str:
    """The kernel's name in results and logs: rust, c-debug, arm64-rust..."""
    name = variant_name(impl, debug, bench)
    return name if arch == 'x86_64' else f'{arch}-{name}'


def kernel_dir(impl: str, debug: bool, bench: bool = False, arch: str = 'x86_64') -> Path:
    return CACHE / 'out' / f'{arch}-{variant_name(impl, debug, bench)}'


def kernel_image(impl: str, debug: bool, bench: bool = False, arch: str = 'x86_64') -> Path:
    image = kernel_dir(impl, debug, bench, arch) / 'arch' / (
        'x86/boot/bzImage' if arch == 'x86_64' else 'arm64/boot/Image')
    if not image.exists():
        flag = ' --debug' if debug else ' --bench' if bench else ''
        flag += '' if arch == 'x86_64' else f' --arch={arch}'
        sys.exit(f'vmtool: no kernel at {image}; build it with '
                 f'`scripts/build-kernel --impl={impl}{flag}`')
    return image


def kernel_config(impl: str, debug: bool, bench: bool = False,
                  arch: str = 'x86_64') -> Dict[str, str]:
    """The CONFIG_* options that are set in a built kernel."""
    opts = {}
    try:
        for line in (kernel_dir(impl, debug, bench, arch) / '.config').read_text().splitlines():
            if line.startswith('CONFIG_') and '=' in line:
                key, val = line.split('=', 1)
                opts[key] = val
    except OSError:
        pass
    return opts


def busybox(arch: str) -> Path:
    """The static busybox of the guest: the host's on x86_64, Debian's arm64
    build (fetched by scripts/setup-toolchain) on arm64."""
    if arch == 'x86_64':
        return Path('/bin/busybox')
    bb = CACHE / 'arm64' / 'busybox'
    if not bb.exists():
        sys.exit(f'vmtool: no arm64 busybox at {bb}; run scripts/setup-toolchain')
    return bb


def make_initramfs(kdir: Path, files: Dict[str, Path], cmd: Optional[List[str]],
                   dest: Path, arch: str = 'x86_64') -> None:
    """Write a gzip'd cpio with busybox, /init and FILES under /payload.

    Uses the kernel's own usr/gen_init_cpio (a host program), so no root is
    needed for the device node.
    """
    gen = kdir / 'usr' / 'gen_init_cpio'
    spec = [
        'dir /dev 0755 0 0',
        'nod /dev/console 0600 0 0 c 5 1',
        'dir /proc 0755 0 0',
        'dir /sys 0755 0 0',
        'dir /tmp 1777 0 0',
        'dir /bin 0755 0 0',
        'dir /payload 0755 0 0',
        f'file /init {GUEST / "init"} 0755 0 0',
        f'file /bin/busybox {busybox(arch)} 0755 0 0',
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


def end_report(console: str) -> Dict[str, str]:
    """The values /init printed at the end of the boot (last one wins)."""
    return {m.group(1): m.group(2) for m in END_RE.finditer(console)}


def taint_names(value: int) -> str:
    return ','.join(TAINT_LETTERS[b] if b < len(TAINT_LETTERS) else f'bit{b}'
                    for b in range(value.bit_length()) if value >> b & 1)


def state_problems(console: str, lockdep: bool, kmemleak: bool) -> List[str]:
    """Problems with the kernel's state at the end of a boot that reported
    an exit status: a taint other than TAINT_TEST, lockdep switched off
    (debug_locks 0) on a kernel with lockdep, and, on a kernel with
    kmemleak, a leak scan that did not run to its end."""
    end = end_report(console)
    problems = []
    taint = end.get('tainted')
    if taint is None or not taint.isdigit():
        problems.append('the guest did not report its kernel taint')
    elif int(taint) & ~(1 << TAINT_TEST):
        t = int(taint) & ~(1 << TAINT_TEST)
        problems.append(f'kernel tainted: {taint} ({taint_names(t)})')
    if lockdep:
        dl = end.get('debug_locks')
        if dl is None or not dl.isdigit():
            problems.append('the guest did not report lockdep\'s debug_locks')
        elif dl == '0':
            problems.append('lockdep switched itself off (debug_locks 0)')
    if kmemleak and end.get('kmemleak') != 'done':
        problems.append('kmemleak: the leak scan did not complete '
                        f'({end.get("kmemleak", "no scan")})')
    return problems


# Clock sources that read in nanoseconds under TCG; jiffies-based ones tick
# every few milliseconds.
PRECISE_CLOCKS = ('tsc', 'tsc-early', 'arch_sys_counter')


def clock_problem(console: str) -> Optional[str]:
    """Why the guest's clock was coarse, or None if it was precise all along.

    Under a busy host the guest's clocksource watchdog can find the TSC
    "unstable" and fall back to jiffies (4 ms resolution); the boot's
    cmdline has tsc=reliable against that, and this checks it held."""
    for line in console.splitlines():
        if 'Marking clocksource' in line and 'unstable' in line:
            return line.strip()
    src = end_report(console).get('clocksource')
    if src is None:
        return 'the guest did not report its clocksource'
    if src not in PRECISE_CLOCKS:
        return f'coarse clocksource {src}'
    return None


# The test VM's memory, MiB, and its vCPUs.
VM_MEMORY = 2048
VM_CPUS = 2


def numa_setup(arch: str, nodes: int) -> Tuple[List[str], str]:
    """The QEMU options and kernel parameters that give the test VM NODES
    NUMA nodes, each with an equal share of the memory and of the two
    vCPUs.  x86_64: the kernel's NUMA emulation (numa=fake=N), which needs
    no ACPI (the test kernel has none).  arm64: QEMU's NUMA nodes, which
    the device tree describes."""
    if nodes <= 1:
        return [], ''
    if arch == 'x86_64':
        return [], f'numa=fake={nodes} '
    opts = []
    for n in range(nodes):
        cpus = f',cpus={n}' if n < VM_CPUS else ''
        opts += ['-object', f'memory-backend-ram,id=mem{n},size={VM_MEMORY // nodes}M',
                 '-numa', f'node,nodeid={n}{cpus},memdev=mem{n}']
    return ['-m', f'{VM_MEMORY // nodes * nodes}'] + opts, ''


def qemu_command(arch: str, accel: str, image: Path, initrd: Path, cmdline: str,
                 console: Path, output: Path, status: Path, numa: int = 1) -> List[str]:
    """The QEMU command line of a test VM: two vCPUs, 2 GiB (in NUMA nodes
    if NUMA > 1), no devices but the console (the kernel log), the
    program's output and its status."""
    numa_opts, numa_params = numa_setup(arch, numa)
    cmdline = numa_params + cmdline
    common = ['-accel', accel, '-cpu', 'max', '-smp', str(VM_CPUS), '-m', str(VM_MEMORY),
              '-nodefaults',
              '-display', 'none', '-no-reboot', '-kernel', str(image), '-initrd', str(initrd)]
    common += numa_opts
    if arch == 'x86_64':
        return (['qemu-system-x86_64'] + common +
                ['-append', 'console=ttyS0 ' + cmdline,
                 '-serial', f'file:{console}', '-serial', f'file:{output}',
                 '-serial', f'file:{status}'])
    # arm64: KVM runs at the emulated EL2 (virtualization=on), with a GICv3
    # for its vGIC; the virt machine has one UART (the kernel log), so the
    # output and status go to two virtio consoles, /dev/hvc0 and /dev/hvc1.
    return (['qemu-system-aarch64', '-M', 'virt,virtualization=on,gic-version=3'] + common +
            ['-append', 'console=ttyAMA0 vmrun.hvc=1 ' + cmdline,
             '-serial', f'file:{console}',
             '-device', 'virtio-serial-device',
             '-chardev', f'file,id=out,path={output}', '-device', 'virtconsole,chardev=out',
             '-chardev', f'file,id=st,path={status}', '-device', 'virtconsole,chardev=st'])


def boot(impl: str, name: str, files: Dict[str, Path], cmd: Optional[List[str]],
         timeout: int, append: str = '', stream=None, debug: bool = False,
         bench: bool = False, accel: Optional[str] = None, arch: str = 'x86_64',
         numa: int = 1) -> Boot:
    """Boot the IMPL kernel, run CMD (in /payload) and collect the logs;
    with NUMA > 1 the VM has that many NUMA nodes (numa_setup())."""
    kname = kernel_name(impl, debug, bench, arch)
    stamp = time.strftime('%Y%m%d-%H%M%S')
    logdir = BUILD / 'vm' / f'{stamp}-{kname}-{name}'
    logdir.mkdir(parents=True, exist_ok=True)
    image = kernel_image(impl, debug, bench, arch)
    config = kernel_config(impl, debug, bench, arch)
    initrd = logdir / 'initramfs.cpio.gz'
    make_initramfs(kernel_dir(impl, debug, bench, arch), files, cmd, initrd, arch)
    console, output, status = (logdir / n for n in ('console.log', 'output.log', 'status.log'))
    for f in (console, output, status):
        f.write_bytes(b'')
    # tsc=reliable: the TSC of a TCG guest follows the host's clock; only
    # the watchdog's reference clocks lag when the host is busy.  no5lvl:
    # -cpu max has LA57, and on 6.12 an interrupt that lands while
    # identify_cpu() rebuilds the boot CPU's capabilities sees
    # pgtable_l5_enabled() false for a moment, and KASAN reports its 5-level
    # direct-map addresses as wild accesses (do_raw_spin_lock from
    # handle_edge_irq, 2 s into boot: a debug-boot flake seen with QEMU 7.2
    # and 10.0).  Nothing here needs 5-level paging.
    cmdline = 'panic=-1 rdinit=/init kunit.enable=0 '
    if arch == 'x86_64':
        cmdline += 'tsc=reliable no5lvl '
        khz = host_tsc_khz()
        if khz:
            cmdline += f'tsc_early_khz={khz} '
    cmdline += append
    # VMTOOL_ACCEL: another -accel for experiments, e.g. tcg,thread=single
    # (one host thread for both vCPUs) to tell TCG's multi-threading apart.
    accel = os.environ.get('VMTOOL_ACCEL', accel or 'tcg')
    qemu = qemu_command(arch, accel, image, initrd, cmdline, console, output, status, numa)
    # VMTOOL_GDB: a gdbstub port, for scripts/ioctl-profile.
    if os.environ.get('VMTOOL_GDB'):
        qemu += ['-gdb', f'tcp:127.0.0.1:{os.environ["VMTOOL_GDB"]}']
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
    state = []
    if exit_code is not None:
        state = state_problems(con, config.get('CONFIG_PROVE_LOCKING') == 'y',
                               config.get('CONFIG_DEBUG_KMEMLEAK') == 'y')
    return Boot(name, logdir, exit_code, problem, con, out, find_splats(con), seconds,
                state, clock_problem(con))


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
    for what in b.state:
        print(f'vmtool: {what}; full log: {b.logdir / "console.log"}', file=sys.stderr)
        bad = True
    return bad


def write_result(name: str, passed: int, failed: int, skipped: int, details: list,
                 tests: Optional[List[str]] = None) -> None:
    """Record one check's outcome in build/results/NAME.json.  TESTS names
    the tests that ran (the same test run on several kernels has one name),
    so that the verdict can tell unique tests from repeated runs."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    r = {'name': name, 'passed': passed, 'failed': failed, 'skipped': skipped,
         'details': details}
    if tests is not None:
        r['tests'] = tests
    (RESULTS / f'{name}.json').write_text(json.dumps(r, indent=1))


def record_failure(name: str, what: str) -> None:
    """Make sure result NAME shows a failure: add one, with WHAT, to the
    result if it has none (or create it)."""
    path = RESULTS / f'{name}.json'
    try:
        r = json.loads(path.read_text())
    except (OSError, ValueError):
        r = None
    if r is not None and r.get('failed', 0) > 0:
        return
    if r is None:
        write_result(name, 0, 1, 0, [what])
    else:
        write_result(name, r.get('passed', 0), 1, r.get('skipped', 0),
                     list(r.get('details', [])) + [what], r.get('tests'))


def cmd_run(args) -> int:
    binary = Path(args.argv[0])
    if not binary.is_file():
        sys.exit(f'vmrun: {binary} is not a file')
    files = {binary.name: binary.resolve()}
    b = boot(args.impl, 'run-' + binary.name, files, ['./' + binary.name] + args.argv[1:],
             args.timeout, append=args.append, stream=sys.stdout.buffer, debug=args.debug,
             bench=args.bench, arch=args.arch, numa=args.numa)
    if b.problem:
        report_problems(b)
        return EXIT_VM_FAILURE
    if (b.splats or b.state) and not args.allow_splats:
        report_problems(b)
        return EXIT_SPLAT
    if args.precise_clock and b.clock:
        print(f'vmrun: the guest clock was coarse: {b.clock}; timings refused',
              file=sys.stderr)
        return EXIT_VM_FAILURE
    return b.exit_code


# ---------------------------------------------------------------------------
# tests/selftests.list

# Tags of tests/selftests.list.  @c/@rust/@debug/@nodebug limit a line to
# kernels; @fuzz marks a program that scripts/fuzz runs (no kernel has the
# tag); @may-skip lets a test skip.
KERNEL_TAGS = {'c', 'rust', 'debug', 'nodebug', 'fuzz'}
TAGS = KERNEL_TAGS | {'may-skip', 'one-thread', 'kvm-modes', 'numa'}


class ListError(Exception):
    """A malformed line of tests/selftests.list."""


@dataclasses.dataclass
class Entry:
    """One line of tests/selftests.list."""
    path: str
    timeout: int
    args: List[str]
    may_skip: bool = False
    one_thread: bool = False
    # arm64: also run in a boot with each of KVM_MODES.
    kvm_modes: bool = False
    # Run in a boot of its own whose VM has NUMA_NODES NUMA nodes.
    numa: bool = False

    @property
    def name(self) -> str:
        """The test's name in the runner's KTAP output."""
        return ' '.join([Path(self.path).name] + self.args)


def parse_selftest_list(text: str, impl: str, debug: bool = False,
                        where: str = 'tests/selftests.list') -> List[Entry]:
    """The entries of a selftest list for one kernel.  Leading @tags limit
    a line: @c and @rust to that implementation, @debug to the debug
    variant, @nodebug to the plain kernels; all of a line's kernel tags must
    hold.  @may-skip lets the test skip (exit 4, or ksft skips inside the
    program); without it a skip fails.  @one-thread runs the test in a boot
    of its own with one-thread TCG (see ONE_THREAD_ACCEL), @numa in a boot of
    its own with NUMA_NODES NUMA nodes.  An unknown tag is an error, not a
    line that silently never runs."""
    have = {impl, 'debug' if debug else 'nodebug'}
    entries = []
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split('#', 1)[0].split()
        tags = set()
        while fields and fields[0].startswith('@'):
            tags.add(fields.pop(0)[1:])
        unknown = tags - TAGS
        if unknown:
            raise ListError(f'{where}:{n}: unknown tag(s) '
                            f'{", ".join("@" + t for t in sorted(unknown))}')
        if not fields:
            if tags:
                raise ListError(f'{where}:{n}: tags without a test')
            continue
        if len(fields) < 2 or not fields[1].isdigit():
            raise ListError(f'{where}:{n}: expected "<path> <timeout> [args...]"')
        if (tags & KERNEL_TAGS) <= have:
            entries.append(Entry(fields[0], int(fields[1]), fields[2:], 'may-skip' in tags,
                                 'one-thread' in tags, 'kvm-modes' in tags, 'numa' in tags))
    return entries


def selftest_list_path(arch: str = 'x86_64') -> Path:
    return REPO / 'tests' / ('selftests.list' if arch == 'x86_64' else f'selftests-{arch}.list')


def read_selftest_list(impl: str, debug: bool = False, arch: str = 'x86_64') -> List[Entry]:
    path = selftest_list_path(arch)
    return parse_selftest_list(path.read_text(), impl, debug,
                               str(path.relative_to(REPO)))


def selftests_dir(arch: str = 'x86_64') -> Path:
    """Where scripts/build-selftests puts the static selftests of ARCH."""
    return CACHE / ('selftests' if arch == 'x86_64' else f'selftests-{arch}')


# ---------------------------------------------------------------------------
# The in-guest runner's output (scripts/guest/run-kselftests)

KTAP_RE = re.compile(r'^(ok|not ok) (\d+) (.*?)(?: # (SKIP|TIMEOUT|exit=\d+).*)?$')
SECTION_RE = re.compile(r'^# selftest: (.*)$')
# Skips inside a program, in its own output (which the runner prefixes
# with "# "): ksft_test_result_skip() and ksft_exit_skip() ("ok N # SKIP",
# "1..0 # SKIP"), the KVM library's print_skip() (", skipping test", also
# TEST_ASSERT's EACCES path) and the upstream tests' "Skipping tests for".
INNER_SKIP_RE = re.compile(r'^(ok \d+ .*# SKIP|ok \d+ # SKIP|1\.\.0 # SKIP)'
                           r'|skipping test|Skipping tests? for', re.IGNORECASE)
TOTALS_RE = re.compile(r'^# Totals: .*\bskip:(\d+)')


@dataclasses.dataclass
class SelftestResult:
    name: str
    verdict: str          # PASS, FAIL or SKIP
    reason: str = ''
    inner_skips: int = 0
    skip_lines: List[str] = dataclasses.field(default_factory=list)


def count_inner_skips(lines: Iterable[str]) -> Tuple[int, List[str]]:
    """Skips reported inside one program's output: the larger of the skip
    lines seen and the skip count of a ksft "Totals" line."""
    seen, totals = [], 0
    for line in lines:
        if INNER_SKIP_RE.search(line):
            seen.append(line)
        m = TOTALS_RE.match(line)
        if m:
            totals = max(totals, int(m.group(1)))
    return max(len(seen), totals), seen


def parse_selftests(output: str, entries: List[Entry]) -> List[SelftestResult]:
    """Results of one selftests boot.  A test that skipped (exit 4, or
    skips inside the program) fails unless its list line has @may-skip; an
    entry without a KTAP line fails; so does a result for no entry."""
    by_name = {e.name: e for e in entries}
    results, inner, seen = [], [], set()
    for line in output.splitlines():
        if SECTION_RE.match(line):
            inner = []
            continue
        m = KTAP_RE.match(line)
        if not m:
            if line.startswith('# '):
                inner.append(line[2:])
            continue
        status, _, name, directive = m.groups()
        nskips, skip_lines = count_inner_skips(inner)
        inner = []
        entry = by_name.get(name)
        r = SelftestResult(name, 'PASS', inner_skips=nskips, skip_lines=skip_lines)
        if entry is None:
            r.verdict, r.reason = 'FAIL', 'result for a test that is not in the list'
        elif name in seen:
            r.verdict, r.reason = 'FAIL', 'second result for the same test'
        elif status != 'ok':
            r.verdict, r.reason = 'FAIL', directive or 'failed'
        elif directive == 'SKIP' or nskips:
            what = 'skipped (exit 4)' if directive == 'SKIP' else f'{nskips} skip(s) inside'
            if entry.may_skip:
                r.verdict = 'SKIP' if directive == 'SKIP' else 'PASS'
                r.reason = what + ', allowed by @may-skip'
            else:
                r.verdict, r.reason = 'FAIL', what + ' without @may-skip'
        seen.add(name)
        results.append(r)
    for e in entries:
        if e.name not in seen:
            results.append(SelftestResult(e.name, 'FAIL', 'no result (runner died?)'))
    return results


# The -accel of the boot that runs the @one-thread selftests: both vCPUs of
# the test VM on one host thread.  Under the default multi-threaded TCG
# (QEMU 7.2 and 10.0 alike) the stress test's nested SVM guests, about once
# in 200-400 s of stress, triple-fault on a #PF that their page tables do
# not explain, spin in KVM_RUN on emulations that each inject a #PF, or the
# test VM's own kernel crashes in KVM_RUN; with one thread none of that was
# seen in 1,660 s of stress (Documentation/virt/kvm/guest-memfd-rust.rst,
# the stress test).
ONE_THREAD_ACCEL = 'tcg,thread=single'

# arm64: the modes of KVM (kvm-arm.mode=) that the @kvm-modes selftests also
# run in, each in a boot of its own, besides the default (VHE at EL2):
# nVHE (the host kernel at EL1, a hypervisor at EL2) and protected (pKVM:
# nVHE with the hypervisor protecting itself and its guests from the host).
KVM_MODES = ('nvhe', 'protected')

# The NUMA nodes of the boot that runs the @numa selftests.
NUMA_NODES = 2


def cmd_selftests(args) -> int:
    name = kernel_name(args.impl, args.debug, arch=args.arch)
    entries = [e for e in read_selftest_list(args.impl, args.debug, args.arch)
               if args.filter in e.name]
    if not entries:
        sys.exit(f'vmtool: no selftest matches {args.filter!r}')
    runs = []
    numa = [e for e in entries if e.numa]
    entries = [e for e in entries if not e.numa]
    if args.debug and args.arch == 'x86_64':
        # The debug kernels (KASAN) run everything with one-thread TCG, in
        # one boot: besides the stress test, the hwpoison race test and
        # private_mem_conversions_test -n 4 each once triple-faulted there
        # under multi-threaded TCG (stop 26), the flake of ONE_THREAD_ACCEL.
        if entries:
            b = run_selftests(args, entries, ONE_THREAD_ACCEL)
            runs.append((b, entries, ' (one-thread TCG boot)'))
    else:
        for one_thread in (False, True):
            group = [e for e in entries if e.one_thread == one_thread]
            if group:
                b = run_selftests(args, group, ONE_THREAD_ACCEL if one_thread else None)
                runs.append((b, group, ' (one-thread TCG boot)' if one_thread else ''))
    if numa:
        accel = ONE_THREAD_ACCEL if args.debug and args.arch == 'x86_64' else None
        b = run_selftests(args, numa, accel, numa=NUMA_NODES)
        runs.append((b, numa, f' ({NUMA_NODES} NUMA nodes boot)'))
    if args.arch == 'arm64':
        group = [e for e in entries if e.kvm_modes]
        for mode in KVM_MODES if group else ():
            b = run_selftests(args, group, None, mode)
            runs.append((b, group, f' (kvm-arm.mode={mode} boot)'))
    return judge_boots(name, runs)


def run_selftests(args, entries: List[Entry], accel: Optional[str],
                  kvm_mode: Optional[str] = None, numa: int = 1) -> Boot:
    """One boot of the kernel of ARGS that runs ENTRIES, with -accel ACCEL
    (default TCG), on arm64 kvm-arm.mode=KVM_MODE if given, and NUMA NUMA
    nodes."""
    files = {'run-kselftests': GUEST / 'run-kselftests'}
    lines = []
    scale = DEBUG_SLOWDOWN if args.debug else 1
    for e in entries:
        host = selftests_dir(args.arch) / e.path
        if not host.exists():
            sys.exit(f'vmtool: {host} missing; run scripts/build-selftests')
        files[host.name] = host
        lines.append(' '.join([host.name, str(e.timeout * scale)] + e.args))
    with tempfile.NamedTemporaryFile('w', suffix='.list', delete=False) as lst:
        lst.write('\n'.join(lines) + '\n')
    files['tests.list'] = Path(lst.name)
    budget = sum(e.timeout * scale + 15 for e in entries) + 120
    name = 'selftests'
    if accel:
        name += '-one-thread'
    if kvm_mode:
        name += f'-{kvm_mode}'
    if numa > 1:
        name += f'-numa{numa}'
    b = boot(args.impl, name, files, ['./run-kselftests', 'tests.list'], budget,
             append=f'kvm-arm.mode={kvm_mode}' if kvm_mode else '',
             stream=sys.stdout.buffer if args.verbose else None, debug=args.debug,
             accel=accel, arch=args.arch, numa=numa)
    os.unlink(lst.name)
    return b


def judge_selftests(name: str, b: Boot, entries: List[Entry]) -> int:
    """Record the result of selftests boot B of kernel NAME: one result per
    list entry, and "kernel log clean" for the boot itself."""
    return judge_boots(name, [(b, entries, '')])


def judge_boots(name: str, runs) -> int:
    """Record the selftests of kernel NAME, run in one or more boots: RUNS
    holds (boot, its entries, the label of its "kernel log clean")."""
    passed = failed = skipped = inner_skips = 0
    details = []
    tests = []
    for b, entries, label in runs:
        p, f, s, i = judge_boot(name, b, entries, label, details)
        passed, failed, skipped, inner_skips = passed + p, failed + f, skipped + s, inner_skips + i
        tests += [f'selftest:{e.name}' for e in entries]
        tests.append(f'kernel-log:{name}' + label)
    if inner_skips:
        print(f'    [{name}] {inner_skips} skip(s) inside the programs')
    write_result(f'selftests-{name}', passed, failed, skipped, details, tests)
    return 1 if failed else 0


def judge_boot(name: str, b: Boot, entries: List[Entry], label: str, details: list):
    """Judge selftests boot B (its entries, then its kernel log as the test
    "kernel log clean" + LABEL), appending to DETAILS; returns the counts
    passed, failed, skipped and skips inside the programs."""
    passed = failed = skipped = inner_skips = 0
    for r in parse_selftests(b.output, entries):
        passed += r.verdict == 'PASS'
        failed += r.verdict == 'FAIL'
        skipped += r.verdict == 'SKIP'
        inner_skips += r.inner_skips
        d = {'test': r.name, 'result': r.verdict}
        if r.reason:
            d['reason'] = r.reason
        if r.inner_skips:
            d['inner_skips'] = r.inner_skips
        details.append(d)
        print(f'    [{name}] {r.verdict:<5} {r.name}' + (f'  ({r.reason})' if r.reason else ''))
        for line in r.skip_lines[:5]:
            print(f'    [{name}]         skip: {line}')
    # The kernel log is a test of its own: any splat, bad end state or VM
    # failure fails it.
    test = 'kernel log clean' + label
    if report_problems(b):
        failed += 1
        details.append({'test': test, 'result': 'FAIL', 'reason': b.summary()})
        print(f'    [{name}] FAIL  {test} / guest finished')
    else:
        passed += 1
        details.append({'test': test, 'result': 'PASS'})
        print(f'    [{name}] PASS  {test} ({b.seconds:.0f}s boot+run)')
    if b.clock:
        print(f'    [{name}] note: guest clock coarse: {b.clock}')
    if failed:
        print(f'vmtool: selftest output in {b.logdir / "output.log"}', file=sys.stderr)
    return passed, failed, skipped, inner_skips


# ---------------------------------------------------------------------------
# KUnit

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


def kunit_cases(tree: dict, prefix: str = '') -> List[Tuple[str, str, str]]:
    """(suite, case, status) of every test case in kunit.py's JSON; a
    parameterised case's parameters count as cases."""
    cases = []
    if not prefix:
        # A suite that ran no case of its own shows up as a bare case.
        for case in tree.get('test_cases', []):
            cases.append((case.get('name', '?'), '', case.get('status', 'FAIL')))
    for group in tree.get('sub_groups', []):
        name = group.get('name', '?')
        suite = prefix or name
        for case in group.get('test_cases', []):
            cases.append((suite, case.get('name', '?'), case.get('status', 'FAIL')))
        cases += kunit_cases(group, suite)
    return cases


def expected_suites(target: str, glob: str = '') -> List[str]:
    """The suites of tests/kunit.list that TARGET (uml or qemu) must run,
    restricted to those matching GLOB when one is given."""
    suites = []
    for n, line in enumerate((REPO / 'tests' / 'kunit.list').read_text().splitlines(), 1):
        fields = line.split('#', 1)[0].split()
        if not fields:
            continue
        tags = {f[1:] for f in fields[1:] if f.startswith('@')}
        if tags - {'uml', 'qemu'} or len(tags) != len(fields) - 1:
            raise ListError(f'tests/kunit.list:{n}: expected "<suite> @uml|@qemu..."')
        if target in tags and (not glob or fnmatch.fnmatch(fields[0], glob.split('.')[0])):
            suites.append(fields[0])
    return suites


def kunit_verdict(text: str, tree: Optional[dict], expected: List[str],
                  extra_failures: List[str]) -> dict:
    """Judge one KUnit run from kunit.py's parse output TEXT and its JSON
    TREE: every case counts; parse errors, a missing summary, a missing
    expected suite, an empty suite or no tests at all fail."""
    counts = kunit_counts(text)
    passed = failed = skipped = 0
    details, tests = [], []
    problems = list(extra_failures)
    cases = kunit_cases(tree) if tree else []
    for suite, case, status in cases:
        tests.append(f'kunit:{suite}.{case}')
        if status == 'PASS':
            passed += 1
        elif status == 'SKIP':
            skipped += 1
        else:
            failed += 1
            details.append(f'{suite}.{case}: {status}')
    if counts is None:
        problems.append('no KUnit summary (kunit.py parse failed?)')
    else:
        if counts['errors']:
            problems.append(f'kunit.py reported {counts["errors"]} parse error(s)')
        bad = counts['failed'] + counts['crashed']
        if bad and not failed:
            problems.append(f'kunit.py counted {bad} failed or crashed test(s)')
    if tree is None:
        problems.append('no KUnit JSON results')
    suites = {}
    for suite, _, _ in cases:
        suites[suite] = suites.get(suite, 0) + 1
    for s in expected:
        if s not in suites:
            problems.append(f'suite {s} did not run')
    if not cases:
        problems.append('KUnit ran no tests')
    failed += len(problems)
    details += problems
    summary = {'suites': suites, 'skipped': skipped}
    return {'passed': passed, 'failed': failed, 'skipped': skipped,
            'details': [summary] + details, 'tests': tests, 'problems': problems}


def record_kunit(name: str, text: str, json_path: Optional[Path], expected: List[str],
                 extra_failures: Optional[List[str]] = None) -> int:
    tree = None
    if json_path is not None:
        try:
            tree = json.loads(json_path.read_text())
        except (OSError, ValueError):
            tree = None
    v = kunit_verdict(text, tree, expected, extra_failures or [])
    write_result(name, v['passed'], v['failed'], v['skipped'], v['details'], v['tests'])
    for p in v['problems']:
        print(f'    [{name}] FAIL  {p}', file=sys.stderr)
    print(f'    [{name}] {v["passed"]} passed, {v["failed"]} failed, {v["skipped"]} skipped; '
          f'suites: ' + ', '.join(f'{s} {n}' for s, n in v['details'][0]['suites'].items()))
    return 1 if v['failed'] else 0


def kunit_parse(log: Path, json_out: Path) -> str:
    """Run kunit.py parse on a kernel log; its text output, and the JSON
    tree in JSON_OUT."""
    kunit_py = CACHE / 'src' / 'linux' / 'tools' / 'testing' / 'kunit' / 'kunit.py'
    parse = subprocess.run([sys.executable, str(kunit_py), 'parse', f'--json={json_out}',
                            str(log)], capture_output=True, text=True)
    return parse.stdout + parse.stderr


def cmd_kunit(args) -> int:
    append = 'kunit.enable=1'
    if args.glob:
        append += f' kunit.filter_glob={args.glob}'
    expected = expected_suites('qemu', args.glob)
    b = boot(args.impl, 'kunit', {}, None, args.timeout, append=append, debug=args.debug,
             arch=args.arch)
    json_out = b.logdir / 'kunit.json'
    text = kunit_parse(b.logdir / 'console.log', json_out)
    (b.logdir / 'kunit-parse.log').write_text(text)
    if args.verbose:
        print(text)
    extra = ['kernel log: ' + b.summary()] if report_problems(b) else []
    return record_kunit(f'kunit-qemu-{kernel_name(args.impl, args.debug, arch=args.arch)}',
                        text, json_out,
                        expected, extra)


def cmd_kunit_record(args) -> int:
    """Record a kunit.py run log (the UML run) as a result."""
    return record_kunit(args.name, Path(args.log).read_text(errors='replace'),
                        Path(args.json) if args.json else None,
                        expected_suites(args.target, args.glob))


# ---------------------------------------------------------------------------
# Results and the verdict

def cmd_record(args) -> int:
    """Record the outcome of a non-VM check (lint, build) as a result."""
    write_result(args.name, args.passed, args.failed, 0, args.details)
    return 0


def cmd_expect(args) -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(EXPECTED, 'a') as f:
        for name in args.names:
            f.write(name + '\n')
    return 0


def cmd_step_failed(args) -> int:
    if args.status != 0:
        record_failure(args.name, f'{args.what or "step"} exited with status {args.status}')
    return 0


def verdict(results: Path, extra_failures: List[str]) -> Tuple[List[str], int, int, int]:
    """Lines of the verdict, and passed, failed, skipped.  Each expected
    result (build/results/expected.txt) must exist, each result must have
    counted something, and EXTRA_FAILURES (steps that failed outside any
    result) count one failure each."""
    lines = []
    passed = failed = skipped = 0
    found = {}
    for f in sorted(results.glob('*.json')):
        try:
            r = json.loads(f.read_text())
            found[r['name']] = r
        except (OSError, ValueError, KeyError) as e:
            found[f.stem] = {'name': f.stem, 'passed': 0, 'failed': 1, 'skipped': 0,
                             'details': [f'unreadable result: {e}']}
    try:
        expected = [n for n in (results / 'expected.txt').read_text().split() if n]
    except OSError:
        expected = []
    unique, runs = set(), 0
    for name, r in found.items():
        p, fl, s = r.get('passed', 0), r.get('failed', 0), r.get('skipped', 0)
        if p + fl + s == 0:
            fl = 1
            lines.append(f'    {name}: counted nothing: FAILED')
        lines.append(f'    {name:<24} {p:>4} passed {fl:>3} failed {s:>3} skipped')
        passed, failed, skipped = passed + p, failed + fl, skipped + s
        tests = r.get('tests')
        if tests is None:
            tests = [f'{name}#{i}' for i in range(p + fl + s)]
        unique.update(tests)
        runs += len(tests)
    for name in expected:
        if name not in found:
            lines.append(f'    {name}: no result: FAILED')
            failed += 1
    for what in extra_failures:
        if what:
            lines.append(f'    {what}: FAILED')
            failed += 1
    lines.append(f'    unique tests: {len(unique)}; runs of them: {runs} '
                 f'({runs - len(unique)} repeated on another kernel or target)')
    tail = f', {skipped} skipped' if skipped else ''
    lines.append(f'{passed} passed, {failed} failed{tail}')
    return lines, passed, failed, skipped


def cmd_verdict(args) -> int:
    lines, passed, failed, _ = verdict(RESULTS, args.extra_failures)
    print('\n'.join(lines))
    return 1 if failed or passed == 0 else 0


def result_name(args) -> Optional[str]:
    """The result a subcommand writes, so that a crash still records one."""
    if args.cmd == 'selftests':
        return f'selftests-{kernel_name(args.impl, args.debug, arch=args.arch)}'
    if args.cmd == 'kunit':
        return f'kunit-qemu-{kernel_name(args.impl, args.debug, arch=args.arch)}'
    if args.cmd == 'kunit-record':
        return args.name
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest='cmd', required=True)

    def impl_arg(p):
        p.add_argument('--impl', choices=('c', 'rust'), default=os.environ.get('IMPL', 'rust'))
        p.add_argument('--debug', action='store_true',
                       help='boot the debug variant (scripts/build-kernel --debug)')
        p.add_argument('--arch', choices=ARCHES, default='x86_64',
                       help='the test kernel\'s architecture (scripts/build-kernel --arch)')

    p = sub.add_parser('run')
    impl_arg(p)
    p.add_argument('--timeout', type=int, default=600)
    p.add_argument('--allow-splats', action='store_true')
    p.add_argument('--precise-clock', action='store_true',
                   help='fail (125) if the guest clock was coarse (for timings)')
    p.add_argument('--append', default='', help='more kernel parameters')
    p.add_argument('--numa', type=int, default=1,
                   help='boot the test VM with this many NUMA nodes')
    p.add_argument('--bench', action='store_true',
                   help='boot the benchmark variant, without lockdep '
                   '(scripts/build-kernel --bench)')
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
    p.add_argument('--json')
    p.add_argument('--target', default='uml', choices=('uml', 'qemu'))
    p.add_argument('--glob', default='')
    p.set_defaults(func=cmd_kunit_record)

    p = sub.add_parser('record')
    p.add_argument('name')
    p.add_argument('passed', type=int)
    p.add_argument('failed', type=int)
    p.add_argument('details', nargs='*')
    p.set_defaults(func=cmd_record)

    p = sub.add_parser('expect')
    p.add_argument('names', nargs='+')
    p.set_defaults(func=cmd_expect)

    p = sub.add_parser('step-failed')
    p.add_argument('name')
    p.add_argument('status', type=int)
    p.add_argument('what', nargs='?', default='')
    p.set_defaults(func=cmd_step_failed)

    p = sub.add_parser('verdict')
    p.add_argument('extra_failures', nargs='*')
    p.set_defaults(func=cmd_verdict)

    args = ap.parse_args()
    if getattr(args, 'argv', None) is not None:
        if args.argv and args.argv[0] == '--':
            args.argv = args.argv[1:]
        if not args.argv:
            ap.error('run: expected -- BINARY [ARGS...]')
    name = result_name(args)
    try:
        return args.func(args)
    except (Exception, SystemExit) as e:  # pylint: disable=broad-except
        if isinstance(e, SystemExit) and e.code in (0, None):
            raise
        # A step that dies still leaves a failed result behind.
        what = str(e) if isinstance(e, (SystemExit, ListError)) else traceback.format_exc()
        if name is not None:
            record_failure(name, f'vmtool {args.cmd} died: {what.strip()}')
        if isinstance(e, SystemExit):
            raise
        print(f'vmtool: {args.cmd} failed: {what}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
