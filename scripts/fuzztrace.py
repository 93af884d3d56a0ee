# SPDX-License-Identifier: GPL-2.0
"""Reading guest_memfd_fuzz traces: pure functions, trace lines in, verdict out.

scripts/fuzz compares the C and the Rust kernel's traces line for line, but
two identical traces prove little if the operations all failed: a kernel
that refused every ioctl with the same errno on both sides would pass.  So
each kernel's traces must also show that the operations that can succeed
did succeed, often enough to have exercised something:

    counts = success_counts(lines)          # {kind: (ok, total)}
    failures = check_success(counts)        # [] when every kind is above its floor
    print(success_table({'c': counts_c, 'rust': counts_rust}))

A trace line is "<index> <op> <args...> = <result> <ERRNO name or OK>
[details]" (README.md, "Differential fuzzing"); '#' lines are ignored.
Besides the per-operation kinds (create_vm, set_region, ...), a few derived
kinds look at what the operations did: memslots bound to a guest_memfd,
attributes set to PRIVATE, allocating and hole-punching fallocate(), probes
that hit a private memory fault or read back what the guest wrote, and the
pages the scans read data from or faulted on.

scripts/tests/data/fuzz-smoke-seed-1002.trace.gz is one seed of the smoke
run (2000 operations, the same on both kernels): it meets every floor, and
with its OKs turned into errnos it meets none.
"""

import dataclasses
import re
from typing import Dict, Iterable, List, Optional, Tuple

OP_RE = re.compile(r'^(\d+) (\w+) (.*?) = (.*)$')
# The program's own per-op tally, its last line: "... ok/run per op: create_vm 12/15 ..."
PROGRAM_COUNTS_RE = re.compile(r'^# fuzz: .* ok/run per op:((?: \w+ \d+/\d+)+)\s*$')

SCAN_CODE_RE = re.compile(r'^[0hwvFEXm]+$')

KVM_MEM_GUEST_MEMFD = 0x4
KVM_MEMORY_ATTRIBUTE_PRIVATE = 0x8
FALLOC_FL_KEEP_SIZE = 0x1
FALLOC_FL_PUNCH_HOLE = 0x2


@dataclasses.dataclass(frozen=True)
class Op:
    """One operation line of a trace."""
    index: int
    op: str
    args: str
    result: str
    ok: bool
    errno: Optional[str]

    def arg(self, name: str) -> Optional[str]:
        """The value of NAME=VALUE among the arguments, or None."""
        for tok in self.args.split():
            key, eq, value = tok.partition('=')
            if eq and key == name:
                return value
        return None

    def int_arg(self, name: str) -> Optional[int]:
        value = self.arg(name)
        try:
            return int(value, 0) if value is not None else None
        except ValueError:
            return None


def parse_op(line: str) -> Optional[Op]:
    """The Op of a trace line, or None for '#' lines and anything else."""
    m = OP_RE.match(line.rstrip('\n'))
    if not m:
        return None
    result = m.group(4)
    toks = result.split()
    errno = toks[1] if len(toks) > 1 and toks[0] == '-1' else None
    return Op(int(m.group(1)), m.group(2), m.group(3), result, 'OK' in toks, errno)


def kinds(op: Op) -> List[Tuple[str, int, int]]:
    """What one operation counts for: [(kind, ok, total)].  Every operation
    counts for its own name; some also for a derived kind."""
    out = [(op.op, int(op.ok), 1)]
    if op.op == 'set_region':
        flags = op.int_arg('flags')
        fd = op.arg('fd') or ''
        if flags is not None and flags & KVM_MEM_GUEST_MEMFD and fd.startswith('gmem'):
            out.append(('set_region:gmem', int(op.ok), 1))
    elif op.op == 'set_attr':
        if op.int_arg('attr') == KVM_MEMORY_ATTRIBUTE_PRIVATE and op.int_arg('flags') == 0:
            out.append(('set_attr:private', int(op.ok), 1))
    elif op.op == 'fallocate':
        mode = op.int_arg('mode')
        if mode == FALLOC_FL_KEEP_SIZE:
            out.append(('fallocate:alloc', int(op.ok), 1))
        elif mode == FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE:
            out.append(('fallocate:punch', int(op.ok), 1))
    elif op.op == 'probe':
        # A private memory fault: KVM_RUN failed with exit 39 and flags PRIVATE.
        fault = op.errno == 'EFAULT' and ' mf=0x8/' in ' ' + op.result
        out.append(('probe:private-fault', int(fault), 1))
        written = op.arg('write')
        if written is not None:
            back = re.search(r'\bval=(0x[0-9a-f]+)', op.result)
            same = op.ok and back is not None and int(back.group(1), 16) == int(written, 0)
            out.append(('probe:write-read-back', int(same), 1))
    elif op.op == 'scan':
        # One letter per page, each maybe after an 'm' (an MMIO exit).
        code = op.result.split()[0] if op.result.split() else ''
        pages = [c for c in code if c != 'm'] if SCAN_CODE_RE.match(code) else []
        out.append(('scan:data-pages', sum(c in '0hwv' for c in pages), len(pages)))
        out.append(('scan:fault-pages', sum(c == 'F' for c in pages), len(pages)))
    return out


def success_counts(lines: Iterable[str]) -> Dict[str, Tuple[int, int]]:
    """{kind: (ok, total)} over trace lines (of any number of seeds)."""
    counts: Dict[str, List[int]] = {}
    for line in lines:
        op = parse_op(line)
        if op is None:
            continue
        for kind, ok, total in kinds(op):
            c = counts.setdefault(kind, [0, 0])
            c[0] += ok
            c[1] += total
    return {k: (v[0], v[1]) for k, v in counts.items()}


@dataclasses.dataclass(frozen=True)
class Floor:
    """The least a kernel's traces must show for one kind: at least
    MIN_FRACTION of its MIN_TOTAL or more attempts succeeded."""
    min_fraction: float
    min_total: int
    what: str


# Floors per kind, about half (or less) of what the smoke run
# (scripts/fuzz --ops=2000 --seeds=1001+4) showed on both kernels, C and
# Rust alike; the comment gives its ok/total and the range over its four
# seeds.  A kind with fewer than MIN_TOTAL attempts fails too: a run too
# short to exercise it has not checked it (each single seed of the smoke,
# 2000 operations, has enough of every kind; 1000 operations have too few
# probes for probe:private-fault, 500 too few of several kinds).  No floor
# where a success says nothing about guest_memfd or cannot fail: ftruncate,
# rw, mmap and lseek (guest_memfd refuses them: 0%), fcntl and the file
# ioctls (generic VFS code), close_vm, close_gmem and scan (always OK).
FLOORS: Dict[str, Floor] = {
    # 252/282 = 89% (85-93%)
    'create_vm': Floor(0.40, 10, 'KVM_CREATE_VM'),
    # 460/596 = 77% (74-81%)
    'create_gmem': Floor(0.35, 20, 'KVM_CREATE_GUEST_MEMFD'),
    # 717/1787 = 40% (38-43%)
    'set_region': Floor(0.15, 50, 'KVM_SET_USER_MEMORY_REGION(2)'),
    # 146/685 = 21% (19-26%)
    'set_region:gmem': Floor(0.08, 80, 'memslots bound to a guest_memfd'),
    # 717/1242 = 58% (53-62%)
    'set_attr': Floor(0.25, 40, 'KVM_SET_MEMORY_ATTRIBUTES'),
    # 279/525 = 53% (46-57%)
    'set_attr:private': Floor(0.20, 30, 'attributes set to PRIVATE'),
    # 526/1094 = 48% (43-52%)
    'fallocate': Floor(0.20, 40, 'fallocate()'),
    # 167/324 = 52% (46-64%)
    'fallocate:alloc': Floor(0.20, 20, 'allocating fallocate()'),
    # 359/476 = 75% (70-80%)
    'fallocate:punch': Floor(0.30, 20, 'hole-punching fallocate()'),
    # 211/211 = 100%
    'fstat': Floor(0.50, 8, 'fstat() of a guest_memfd'),
    # 158/158 = 100%
    'check_ext': Floor(0.50, 8, 'KVM_CHECK_EXTENSION'),
    # 95/326 = 29% (24-36%)
    'prefault': Floor(0.10, 40, 'KVM_PRE_FAULT_MEMORY'),
    # 955/1050 = 91% (86-94%)
    'probe': Floor(0.40, 40, 'guest probes that read a value'),
    # 62/1050 = 6% (3-8%)
    'probe:private-fault': Floor(0.01, 200, 'guest probes that hit a private memory fault'),
    # 131/300 = 44% (42-48%)
    'probe:write-read-back': Floor(0.15, 20, 'guest writes read back'),
    # 3737/4005 = 93% (89-96%)
    'scan:data-pages': Floor(0.40, 100, 'scanned pages that read data'),
    # 212/4005 = 5% (4-11%)
    'scan:fault-pages': Floor(0.01, 200, 'scanned pages that hit a private memory fault'),
    # 123/123 = 100%: each kernel against its own model (6.18 or 6.12)
    'gmem_mmap': Floor(0.95, 20, '6.18 host mapping scripts that matched the model'),
}


def check_success(counts: Dict[str, Tuple[int, int]],
                  floors: Optional[Dict[str, Floor]] = None) -> List[str]:
    """Failures of one kernel's counts against FLOORS: [] if all hold."""
    floors = FLOORS if floors is None else floors
    failures = []
    for kind, floor in floors.items():
        ok, total = counts.get(kind, (0, 0))
        if total < floor.min_total:
            failures.append(f'{kind} {ok}/{total}: too few to judge (< {floor.min_total})')
        elif ok < floor.min_fraction * total:
            failures.append(f'{kind} {ok}/{total} = {ok / total:.0%} < {floor.min_fraction:.0%}')
    return failures


def success_table(per_kernel: Dict[str, Dict[str, Tuple[int, int]]],
                  floors: Optional[Dict[str, Floor]] = None) -> str:
    """The per-kind table (ok/total and percentage per kernel, and the floor)."""
    floors = FLOORS if floors is None else floors
    kinds_seen = sorted({k for c in per_kernel.values() for k in c} | set(floors))
    names = list(per_kernel)
    rows = [['kind'] + names + ['floor']]
    for kind in kinds_seen:
        row = [kind]
        for name in names:
            ok, total = per_kernel[name].get(kind, (0, 0))
            pct = f' {ok / total:4.0%}' if total else '     '
            row.append(f'{ok}/{total}{pct}')
        f = floors.get(kind)
        row.append(f'>={f.min_fraction:.0%} of >={f.min_total}' if f else '-')
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return '\n'.join('  ' + '  '.join(c.ljust(w) if i == 0 else c.rjust(w)
                                      for i, (c, w) in enumerate(zip(r, widths))).rstrip()
                     for r in rows)


def program_counts(output: str) -> Optional[Dict[str, Tuple[int, int]]]:
    """The program's own {op: (ok, run)} tally from its last line, or None."""
    found = None
    for line in output.splitlines():
        m = PROGRAM_COUNTS_RE.match(line)
        if m:
            toks = m.group(1).split()
            found = {}
            for name, pair in zip(toks[::2], toks[1::2]):
                ok, run = pair.split('/')
                found[name] = (int(ok), int(run))
    return found


def check_program_counts(counts: Dict[str, Tuple[int, int]],
                         program: Dict[str, Tuple[int, int]]) -> List[str]:
    """Where the trace parse disagrees with the program's own tally of the
    per-op results: a parse that miscounts would make the floors meaningless."""
    failures = []
    for op, (ok, run) in sorted(program.items()):
        got = counts.get(op, (0, 0))
        if got != (ok, run):
            failures.append(f'{op}: the traces give {got[0]}/{got[1]}, '
                            f'the program counted {ok}/{run}')
    return failures
