# SPDX-License-Identifier: GPL-2.0
"""The verdict of make check and the parsers that feed it, given recorded
outputs: every way a run can go wrong must turn the verdict red."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import vmtool

SCRIPTS = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------
# Recorded outputs

LIST = """\
# comment
guest_memfd_test                      120
x86_64/private_mem_conversions_test   300 -n 4 -m 4
@rust x86_64/guest_memfd_attributes_test 300 -s 1T
@c    x86_64/guest_memfd_attributes_test 300 -s 1G
@debug @rust x86_64/guest_memfd_failslab_test 600 -l 64G
# no uevents in the test VM's initramfs
@may-skip x86_64/guest_memfd_vm_lifetime_test 120
@fuzz x86_64/guest_memfd_fuzz 0
"""


def ktap(*tests):
    """The in-guest runner's output (scripts/guest/run-kselftests) for
    TESTS: (name, program output lines, exit code)."""
    out = ['TAP version 13', f'1..{len(tests)}']
    for i, (name, lines, rc) in enumerate(tests, 1):
        out.append(f'# selftest: {name}')
        out += ['# ' + ln for ln in lines]
        out.append(f'# {name}: exit {rc} after 1s')
        if rc == 0:
            out.append(f'ok {i} {name}')
        elif rc == 4:
            out.append(f'ok {i} {name} # SKIP')
        else:
            out.append(f'not ok {i} {name} # exit={rc}')
    return '\n'.join(out) + '\n'


PASSING_PROGRAM = ['TAP version 13', '1..2', 'ok 1 first', 'ok 2 second',
                   '# Totals: pass:2 fail:0 xfail:0 xpass:0 skip:0 error:0']

CONSOLE_OK = """\
[    0.000000] Linux version 6.12.117 (root@host) #1 SMP PREEMPT_DYNAMIC
[    0.512000] clocksource: Switched to clocksource tsc-early
[    1.800000] clocksource: Switched to clocksource tsc
[    2.000000] vmrun: guest up, running payload
[   12.000000] vmrun: tainted 0
[   12.000000] vmrun: debug_locks 1
[   12.000000] vmrun: clocksource tsc
[   12.100000] vmrun: payload exited with 0
"""


def console_with(*lines, base=CONSOLE_OK):
    """CONSOLE_OK with LINES inserted before the end-of-boot report."""
    head, tail = base.split('[   12.000000] vmrun: tainted', 1)
    return head + ''.join(f'[    5.000000] {ln}\n' for ln in lines) + \
        '[   12.000000] vmrun: tainted' + tail


def boot(console=CONSOLE_OK, output='', exit_code=0, lockdep=True, kmemleak=False):
    """A Boot as vmtool.boot() makes it from the logs of a finished guest."""
    state = vmtool.state_problems(console, lockdep, kmemleak) if exit_code is not None else []
    problem = None if exit_code is not None else 'guest stopped without reporting an exit status'
    return vmtool.Boot('selftests', Path('/nonexistent'), exit_code, problem, console, output,
                       vmtool.find_splats(console), 1.0, state, vmtool.clock_problem(console))


def entries(impl='rust', debug=False):
    return vmtool.parse_selftest_list(LIST, impl, debug)


def all_pass_output(es):
    return ktap(*[(e.name, PASSING_PROGRAM, 0) for e in es])


def judge(results, b, es, expected=None):
    """Record boot B like make check does and return the verdict's counts."""
    vmtool.judge_selftests('rust', b, es)
    if expected is not None:
        results.mkdir(parents=True, exist_ok=True)
        (results / 'expected.txt').write_text('\n'.join(expected) + '\n')
    lines, passed, failed, skipped = vmtool.verdict(results, [])
    return passed, failed, skipped, lines


# ---------------------------------------------------------------------------
# A clean run passes (the baseline every other test spoils)

def test_clean_run_passes(results):
    es = entries()
    passed, failed, skipped, _ = judge(results, boot(output=all_pass_output(es)), es,
                                       ['selftests-rust'])
    assert (passed, failed, skipped) == (len(es) + 1, 0, 0)


# ---------------------------------------------------------------------------
# Hole 1: skips

def test_exit_4_skip_fails_without_may_skip(results):
    es = entries()
    out = ktap(*[(e.name, ['1..0 # SKIP no KVM_CAP_GUEST_MEMFD'] if e.name == 'guest_memfd_test'
                  else PASSING_PROGRAM, 4 if e.name == 'guest_memfd_test' else 0) for e in es])
    _, failed, _, _ = judge(results, boot(output=out), es)
    assert failed == 1


def test_exit_4_skip_allowed_by_may_skip(results):
    es = entries()
    lifetime = 'guest_memfd_vm_lifetime_test'
    out = ktap(*[(e.name, ['1..0 # SKIP no uevents'], 4) if e.name == lifetime
                 else (e.name, PASSING_PROGRAM, 0) for e in es])
    passed, failed, skipped, _ = judge(results, boot(output=out), es)
    assert (failed, skipped) == (0, 1)


@pytest.mark.parametrize('skip_line', [
    'ok 3 # SKIP [rust] fallocate: no fail_page_alloc',       # ksft_test_result_skip
    'ok 4 private: page made private again # SKIP (no memslot)',
    '1..0 # SKIP - Requirement not met: kvm_has_cap(KVM_CAP_GUEST_MEMFD)',  # TEST_REQUIRE
    'Access denied - Exiting, skipping test',                  # TEST_ASSERT with EACCES
    'Skipping tests for KVM_MEM_GUEST_MEMFD memory regions',   # set_memory_region_test
    '# Totals: pass:5 fail:0 xfail:0 xpass:0 skip:2 error:0',
])
def test_inner_skip_fails_without_may_skip(results, skip_line):
    es = entries()
    out = ktap(*[(e.name, PASSING_PROGRAM[:-1] + [skip_line] if e.name == 'guest_memfd_test'
                  else PASSING_PROGRAM, 0) for e in es])
    _, failed, _, _ = judge(results, boot(output=out), es)
    assert failed == 1
    d = json.loads((results / 'selftests-rust.json').read_text())['details']
    bad = [x for x in d if x['result'] == 'FAIL']
    assert bad[0]['test'] == 'guest_memfd_test' and bad[0]['inner_skips'] >= 1


def test_inner_skips_are_counted_under_may_skip(results):
    es = entries()
    lifetime = 'guest_memfd_vm_lifetime_test'
    out = ktap(*[(e.name, PASSING_PROGRAM[:-1] + ['ok 3 uevent # SKIP no KVM uevents']
                  if e.name == lifetime else PASSING_PROGRAM, 0) for e in es])
    passed, failed, _, _ = judge(results, boot(output=out), es)
    assert failed == 0
    d = json.loads((results / 'selftests-rust.json').read_text())['details']
    assert [x['inner_skips'] for x in d if x['test'] == lifetime] == [1]


def test_skip_text_in_another_tests_output_does_not_leak():
    es = entries()
    out = ktap(*[(e.name, PASSING_PROGRAM, 0) for e in es])
    assert all(r.verdict == 'PASS' and r.inner_skips == 0
               for r in vmtool.parse_selftests(out, es))


# ---------------------------------------------------------------------------
# Hole 2: results that vanish

def test_missing_selftest_result_fails(results):
    es = entries()
    out = all_pass_output(es[:-1])          # the runner died before the last one
    _, failed, _, _ = judge(results, boot(output=out), es)
    assert failed == 1


def test_result_for_unlisted_test_fails():
    es = entries()
    out = all_pass_output(es) + f'ok {len(es) + 1} forged_test\n'
    assert [r.name for r in vmtool.parse_selftests(out, es) if r.verdict == 'FAIL'] == \
        ['forged_test']


def test_missing_expected_result_fails(results):
    vmtool.write_result('lint', 3, 0, 0, [])
    results.joinpath('expected.txt').write_text('lint\nfuzz-smoke\nkunit-uml\n')
    lines, passed, failed, _ = vmtool.verdict(results, [])
    assert (passed, failed) == (3, 2)
    assert any('fuzz-smoke: no result' in ln for ln in lines)


def test_result_that_counted_nothing_fails(results):
    vmtool.write_result('kunit-uml', 0, 0, 0, [])
    _, _, failed, _ = vmtool.verdict(results, [])
    assert failed == 1


def test_step_that_exited_nonzero_fails_its_passing_result(results):
    vmtool.write_result('lint', 3, 0, 0, ['rustfmtcheck: ok'])
    vmtool.record_failure('lint', 'lint exited with status 2')
    _, passed, failed, _ = vmtool.verdict(results, [])
    assert (passed, failed) == (3, 1)


def test_step_that_died_before_writing_fails(results):
    vmtool.record_failure('fuzz-smoke', 'fuzz exited with status 1')
    _, _, failed, _ = vmtool.verdict(results, [])
    assert failed == 1


def test_step_failed_command(results, monkeypatch):
    """`vmtool.py step-failed NAME STATUS` as scripts/check calls it."""
    monkeypatch.setattr(sys, 'argv', ['vmtool.py', 'step-failed', 'kunit-uml', '1', 'kunit-uml'])
    assert vmtool.main() == 0
    monkeypatch.setattr(sys, 'argv', ['vmtool.py', 'step-failed', 'lint', '0'])
    assert vmtool.main() == 0
    assert not (results / 'lint.json').exists()
    _, _, failed, _ = vmtool.verdict(results, [])
    assert failed == 1


def test_crashing_subcommand_records_a_failure(results, monkeypatch):
    monkeypatch.setattr(vmtool, 'CACHE', Path('/nonexistent'))
    monkeypatch.setattr(sys, 'argv', ['vmtool.py', 'kunit', '--impl=rust'])
    with pytest.raises(SystemExit):
        vmtool.main()
    r = json.loads((results / 'kunit-qemu-rust.json').read_text())
    assert r['failed'] == 1 and 'no kernel' in r['details'][0]


def test_extra_failures_count(results):
    vmtool.write_result('lint', 3, 0, 0, [])
    _, _, failed, _ = vmtool.verdict(results, ['kernel build (rust)'])
    assert failed == 1


def test_verdict_command_exit_status(tmp_path):
    """The closing line and exit status of the real command line."""
    r = subprocess.run([sys.executable, str(SCRIPTS / 'vmtool.py'), 'verdict', 'x'],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 1
    assert r.stdout.splitlines()[-1].endswith('failed') or 'skipped' in r.stdout.splitlines()[-1]


# ---------------------------------------------------------------------------
# Hole 3: silent kernels

SPLATS = [
    'WARNING: CPU: 1 PID: 77 at rust/helpers/bug.c:13 rust_helper_WARN_ON+0x10/0x20',
    'BUG: unable to handle page fault for address: ffff888000000000',
    'kernel BUG at mm/filemap.c:1234!',
    'Oops: general protection fault, probably for non-canonical address',
    'Kernel panic - not syncing: Fatal exception',
    'Call Trace:',
    'INFO: task guest_memfd_clo:93 blocked for more than 30 seconds.',
    'rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:',
    'rcu: INFO: rcu_preempt self-detected stall on CPU',
    'rcu: INFO: rcu_preempt detected expedited stalls on CPUs/tasks: { 1-... } 21003 jiffies',
    'WARNING: possible circular locking dependency detected',
    'WARNING: inconsistent lock state',
    'WARNING: suspicious RCU usage',
    'BUG: KASAN: slab-use-after-free in kvm_gmem_release+0x40/0x90',
    'UBSAN: array-index-out-of-bounds in virt/kvm/kvm_main.c:2460:9',
    'kmemleak: 2 new suspected memory leaks (see /sys/kernel/debug/kmemleak)',
    'kmemleak: Kernel memory leak detector disabled',
    'kmemleak: Cannot allocate a kmemleak_object structure',
    'vmrun: kmemleak scan failed',
    'list_add corruption. prev->next should be next (ffff888003e5c0a8)',
    'list_del corruption, ffff888003e5c0a8->next is LIST_POISON1',
]


@pytest.mark.parametrize('line', SPLATS)
def test_each_splat_fails(results, line):
    es = entries()
    _, failed, _, _ = judge(results, boot(console_with(line), all_pass_output(es)), es)
    assert failed == 1


@pytest.mark.parametrize('taint,expect', [
    ('512', 'W'), ('32', 'B'), ('2048', 'I'), ('262656', 'W'), ('4', 'S')])
def test_taint_fails(results, taint, expect):
    es = entries()
    console = CONSOLE_OK.replace('vmrun: tainted 0', f'vmrun: tainted {taint}')
    b = boot(console, all_pass_output(es))
    assert b.state and f'({expect})' in b.state[0]
    _, failed, _, _ = judge(results, b, es)
    assert failed == 1


def test_kunit_taint_is_allowed(results):
    es = entries()
    console = CONSOLE_OK.replace('vmrun: tainted 0', 'vmrun: tainted 262144')
    _, failed, _, _ = judge(results, boot(console, all_pass_output(es)), es)
    assert failed == 0


def test_missing_taint_report_fails():
    console = CONSOLE_OK.replace('vmrun: tainted 0\n', '')
    assert vmtool.state_problems(console, True, False)


def test_lockdep_off_fails(results):
    es = entries()
    console = CONSOLE_OK.replace('vmrun: debug_locks 1', 'vmrun: debug_locks 0')
    _, failed, _, _ = judge(results, boot(console, all_pass_output(es)), es)
    assert failed == 1


def test_lockdep_not_reported_on_a_lockdep_kernel_fails():
    console = CONSOLE_OK.replace('vmrun: debug_locks 1', 'vmrun: debug_locks none')
    assert vmtool.state_problems(console, True, False)
    assert not vmtool.state_problems(console, False, False)


def test_kmemleak_disabled_fails(results):
    """kmemleak that disabled itself: no scan, the file is gone or refuses."""
    es = entries()
    console = console_with('kmemleak: Kernel memory leak detector disabled')
    _, failed, _, _ = judge(results, boot(console, all_pass_output(es), kmemleak=True), es)
    assert failed == 1


@pytest.mark.parametrize('lines', [
    [],                                                  # no scan at all
    ['vmrun: kmemleak scan'],                            # scan never finished
])
def test_kmemleak_scan_must_complete(results, lines):
    es = entries()
    b = boot(console_with(*lines), all_pass_output(es), kmemleak=True)
    assert b.state
    _, failed, _, _ = judge(results, b, es)
    assert failed == 1


def test_kmemleak_scan_done_passes(results):
    es = entries()
    b = boot(console_with('vmrun: kmemleak scan', 'vmrun: kmemleak done'),
             all_pass_output(es), kmemleak=True)
    _, failed, _, _ = judge(results, b, es)
    assert failed == 0


def test_hung_guest_fails(results):
    es = entries()
    _, failed, _, _ = judge(results, boot(CONSOLE_OK, all_pass_output(es), exit_code=None), es)
    assert failed >= 1


# ---------------------------------------------------------------------------
# Hole 5: list tags and KUnit suites

def test_unknown_tag_is_rejected():
    with pytest.raises(vmtool.ListError, match='@rsut'):
        vmtool.parse_selftest_list('@rsut guest_memfd_test 120\n', 'rust')


@pytest.mark.parametrize('line', ['guest_memfd_test\n', 'guest_memfd_test 2m\n', '@rust\n'])
def test_malformed_line_is_rejected(line):
    with pytest.raises(vmtool.ListError):
        vmtool.parse_selftest_list(line, 'rust')


def test_unknown_tag_fails_the_selftests_step(results, monkeypatch, tmp_path):
    (tmp_path / 'tests').mkdir()
    (tmp_path / 'tests' / 'selftests.list').write_text('@rsut guest_memfd_test 120\n')
    monkeypatch.setattr(vmtool, 'REPO', tmp_path)
    monkeypatch.setattr(sys, 'argv', ['vmtool.py', 'selftests', '--impl=rust'])
    assert vmtool.main() == 1
    _, _, failed, _ = vmtool.verdict(results, [])
    assert failed == 1


def test_tags_select_kernels():
    names = lambda es: [e.name for e in es]  # noqa: E731
    assert 'guest_memfd_attributes_test -s 1T' in names(entries('rust'))
    assert 'guest_memfd_attributes_test -s 1G' in names(entries('c'))
    assert 'guest_memfd_failslab_test -l 64G' not in names(entries('rust'))
    assert 'guest_memfd_failslab_test -l 64G' in names(entries('rust', True))
    assert not any('fuzz' in n for n in names(entries('rust')))
    assert [e.may_skip for e in entries() if 'lifetime' in e.name] == [True]


def test_the_real_list_parses():
    for impl in ('c', 'rust'):
        for debug in (False, True):
            assert vmtool.read_selftest_list(impl, debug)


def kunit_tree(suites):
    return {'name': 'KUnit Test Group', 'test_cases': [], 'sub_groups': [
        {'name': s, 'sub_groups': [], 'test_cases': [{'name': c, 'status': st}
                                                      for c, st in cases]}
        for s, cases in suites.items()]}


KUNIT_TEXT = '[12:00:00] Testing complete. Ran 3 tests: passed: 3\n'
SUITES = ['rust_doctests_kernel', 'gmem_rs_range', 'gmem_rs_attr_store']


def test_kunit_all_suites_pass():
    tree = kunit_tree({s: [('a', 'PASS')] for s in SUITES})
    v = vmtool.kunit_verdict(KUNIT_TEXT, tree, SUITES, [])
    assert (v['passed'], v['failed']) == (3, 0)


def test_kunit_missing_suite_fails(results):
    tree = kunit_tree({s: [('a', 'PASS')] for s in SUITES[:2]})
    v = vmtool.kunit_verdict(KUNIT_TEXT, tree, SUITES, [])
    assert v['failed'] == 1 and 'gmem_rs_attr_store did not run' in v['problems'][0]


def test_kunit_failed_case_and_no_summary_fail():
    tree = kunit_tree({s: [('a', 'PASS'), ('b', 'FAIL' if s == SUITES[1] else 'PASS')]
                       for s in SUITES})
    assert vmtool.kunit_verdict(KUNIT_TEXT, tree, SUITES, [])['failed'] == 1
    good = kunit_tree({s: [('a', 'PASS')] for s in SUITES})
    assert vmtool.kunit_verdict('', good, SUITES, [])['failed'] == 1
    assert vmtool.kunit_verdict(KUNIT_TEXT, None, SUITES, [])['failed'] >= 1


def test_kunit_record_kunit_list(results):
    assert vmtool.expected_suites('uml') == SUITES
    assert vmtool.expected_suites('qemu', 'gmem_rs_range') == ['gmem_rs_range']


def test_unique_tests_and_repeated_runs(results):
    tree = kunit_tree({s: [('a', 'PASS'), ('b', 'PASS')] for s in SUITES})
    for name in ('kunit-uml', 'kunit-qemu-c', 'kunit-qemu-rust'):
        v = vmtool.kunit_verdict(KUNIT_TEXT, tree, SUITES, [])
        vmtool.write_result(name, v['passed'], v['failed'], v['skipped'], v['details'],
                            v['tests'])
    lines, passed, _, _ = vmtool.verdict(results, [])
    assert passed == 18
    assert 'unique tests: 6; runs of them: 18 (12 repeated' in '\n'.join(lines)


# ---------------------------------------------------------------------------
# Hole 6: the guest clock

@pytest.mark.parametrize('console', [
    console_with("clocksource: timekeeping watchdog on CPU1: Marking clocksource "
                 "'tsc-early' as unstable because the skew is too large:"),
    CONSOLE_OK.replace('vmrun: clocksource tsc', 'vmrun: clocksource refined-jiffies'),
    CONSOLE_OK.replace('vmrun: clocksource tsc', 'vmrun: clocksource jiffies'),
    CONSOLE_OK.replace('vmrun: clocksource tsc\n', ''),
])
def test_coarse_clock_is_detected(console):
    assert vmtool.clock_problem(console)


def test_precise_clock_passes():
    assert vmtool.clock_problem(CONSOLE_OK) is None


def test_bench_refuses_a_coarse_clock():
    """make bench asks vmrun to refuse timings from a coarse guest clock."""
    text = (SCRIPTS / 'bench').read_text()
    assert '--precise-clock' in text


def test_boot_keeps_the_tsc():
    assert 'tsc=reliable' in (SCRIPTS / 'vmtool.py').read_text()


# ---------------------------------------------------------------------------
# @one-thread: a second boot, judged with the first

def test_one_thread_tag_marks_the_entry():
    es = vmtool.parse_selftest_list('@one-thread x86_64/guest_memfd_stress_test 120\n'
                                    'guest_memfd_test 120\n', 'rust')
    assert [(e.name, e.one_thread) for e in es] == [
        ('guest_memfd_stress_test', True), ('guest_memfd_test', False)]


def test_two_boots_make_one_result(results):
    es = vmtool.parse_selftest_list('@one-thread x86_64/guest_memfd_stress_test 120\n'
                                    'guest_memfd_test 120\n', 'rust')
    plain, one = [e for e in es if not e.one_thread], [e for e in es if e.one_thread]
    vmtool.judge_boots('rust', [(boot(output=all_pass_output(plain)), plain, ''),
                                (boot(output=all_pass_output(one)), one, ' (one-thread)')])
    lines, passed, failed, _ = vmtool.verdict(results, [])
    # Two programs and the kernel log of each boot.
    assert (passed, failed) == (4, 0)


def test_a_splat_in_the_one_thread_boot_fails(results):
    es = vmtool.parse_selftest_list('@one-thread x86_64/guest_memfd_stress_test 120\n'
                                    'guest_memfd_test 120\n', 'rust')
    plain, one = [e for e in es if not e.one_thread], [e for e in es if e.one_thread]
    splat = console_with('[    9.000000] BUG: KASAN: slab-use-after-free in foo+0x1/0x2')
    vmtool.judge_boots('rust', [(boot(output=all_pass_output(plain)), plain, ''),
                                (boot(splat, all_pass_output(one)), one, ' (one-thread)')])
    _, passed, failed, _ = vmtool.verdict(results, [])
    assert (passed, failed) == (3, 1)


# ---------------------------------------------------------------------------
# arm64: its own list, kernel names and QEMU command, and the KVM-mode boots

def test_arm64_names_and_dirs():
    assert vmtool.kernel_name('rust', False, arch='arm64') == 'arm64-rust'
    assert vmtool.kernel_name('rust', False) == 'rust'
    assert vmtool.kernel_dir('rust', False, arch='arm64').name == 'arm64-rust'
    assert vmtool.kernel_dir('c', True).name == 'x86_64-c-debug'


def test_arm64_qemu_runs_kvm_at_el2_with_two_virtio_consoles(tmp_path):
    cmd = vmtool.qemu_command('arm64', 'tcg', tmp_path / 'Image', tmp_path / 'i', 'x=1',
                              tmp_path / 'c', tmp_path / 'o', tmp_path / 's')
    text = ' '.join(cmd)
    assert cmd[0] == 'qemu-system-aarch64'
    assert 'virtualization=on' in text and 'gic-version=3' in text
    assert 'console=ttyAMA0 vmrun.hvc=1 x=1' in text
    assert text.count('virtconsole') == 2
    x86 = ' '.join(vmtool.qemu_command('x86_64', 'tcg', tmp_path / 'b', tmp_path / 'i', 'x=1',
                                       tmp_path / 'c', tmp_path / 'o', tmp_path / 's'))
    assert x86.startswith('qemu-system-x86_64') and 'console=ttyS0 x=1' in x86


def test_the_arm64_list_parses_and_has_kvm_mode_tests():
    es = vmtool.read_selftest_list('rust', arch='arm64')
    names = [e.name for e in es if e.kvm_modes]
    assert 'guest_memfd_arm64_test' in names and 'guest_memfd_test' in names


def test_guest_init_uses_the_virtio_consoles_on_arm64():
    text = (SCRIPTS / 'guest' / 'init').read_text()
    assert 'vmrun.hvc=1' in text and '/dev/hvc1' in text


def test_kvm_mode_boots_make_one_result_and_fail_alone(results):
    es = vmtool.parse_selftest_list('@kvm-modes guest_memfd_test 120\n'
                                    'set_memory_region_test 300\n', 'rust')
    modes = [e for e in es if e.kvm_modes]
    splat = console_with('[    9.000000] WARNING: CPU: 0 PID: 1 at arch/arm64/kvm/mmu.c:1')
    vmtool.judge_boots('arm64-rust', [
        (boot(output=all_pass_output(es)), es, ''),
        (boot(output=all_pass_output(modes)), modes, ' (kvm-arm.mode=nvhe boot)'),
        (boot(splat, all_pass_output(modes)), modes, ' (kvm-arm.mode=protected boot)')])
    _, passed, failed, _ = vmtool.verdict(results, [])
    # 2 + 1 + 1 programs, 3 kernel logs of which the pKVM one has a splat.
    assert (passed, failed) == (6, 1)


def test_debug_kernels_run_every_selftest_in_one_one_thread_boot(results, monkeypatch):
    es = vmtool.parse_selftest_list('@one-thread x86_64/guest_memfd_stress_test 120\n'
                                    'private_mem_conversions_test 300 -n 4 -m 4\n', 'rust',
                                    debug=True)
    monkeypatch.setattr(vmtool, 'read_selftest_list', lambda impl, debug, arch: es)
    boots = []

    def fake_run(args, entries, accel, kvm_mode=None, numa=1):
        boots.append((accel, [e.name for e in entries]))
        return boot(output=all_pass_output(entries))
    monkeypatch.setattr(vmtool, 'run_selftests', fake_run)

    class Args:
        impl, debug, arch, filter = 'rust', True, 'x86_64', ''
    assert vmtool.cmd_selftests(Args()) == 0
    assert boots == [(vmtool.ONE_THREAD_ACCEL, [e.name for e in es])]
    Args.debug = False
    boots.clear()
    vmtool.cmd_selftests(Args())
    assert [accel for accel, _ in boots] == [None, vmtool.ONE_THREAD_ACCEL]


# ---------------------------------------------------------------------------
# @numa: a boot of its own with NUMA nodes

def test_numa_tag_runs_its_tests_in_a_numa_boot_of_their_own(results, monkeypatch):
    text = ('@numa @rust x86_64/guest_memfd_numa_test 120\n'
            '@one-thread x86_64/guest_memfd_stress_test 120\n'
            'guest_memfd_test 120\n')
    boots = []

    def fake_run(args, entries, accel, kvm_mode=None, numa=1):
        boots.append((accel, numa, [e.name for e in entries]))
        return boot(output=all_pass_output(entries))
    monkeypatch.setattr(vmtool, 'run_selftests', fake_run)

    class Args:
        impl, debug, arch, filter = 'rust', False, 'x86_64', ''
    monkeypatch.setattr(vmtool, 'read_selftest_list',
                        lambda impl, debug, arch: vmtool.parse_selftest_list(text, impl, debug))
    assert vmtool.cmd_selftests(Args()) == 0
    assert boots == [(None, 1, ['guest_memfd_test']),
                     (vmtool.ONE_THREAD_ACCEL, 1, ['guest_memfd_stress_test']),
                     (None, vmtool.NUMA_NODES, ['guest_memfd_numa_test'])]
    # The debug kernels: everything else in one one-thread boot, the NUMA
    # tests in a one-thread NUMA boot.
    Args.debug = True
    boots.clear()
    assert vmtool.cmd_selftests(Args()) == 0
    assert boots == [(vmtool.ONE_THREAD_ACCEL, 1, ['guest_memfd_stress_test', 'guest_memfd_test']),
                     (vmtool.ONE_THREAD_ACCEL, vmtool.NUMA_NODES, ['guest_memfd_numa_test'])]
    # C has no NUMA test: no NUMA boot.
    Args.impl, Args.debug = 'c', False
    boots.clear()
    vmtool.cmd_selftests(Args())
    assert all(numa == 1 for _, numa, _ in boots)


def test_numa_boots_split_memory_into_nodes(tmp_path):
    def cmd(arch, numa):
        return ' '.join(vmtool.qemu_command(arch, 'tcg', tmp_path / 'k', tmp_path / 'i', 'x=1',
                                            tmp_path / 'c', tmp_path / 'o', tmp_path / 's',
                                            numa))
    assert 'numa=fake' not in cmd('x86_64', 1) and '-numa' not in cmd('arm64', 1)
    assert 'numa=fake=2 x=1' in cmd('x86_64', 2) and '-numa' not in cmd('x86_64', 2)
    a64 = cmd('arm64', 2)
    assert a64.count('-numa node') == 2 and 'memory-backend-ram,id=mem1,size=1024M' in a64


def test_the_numa_test_is_listed_for_rust_with_the_tag():
    for arch in ('x86_64', 'arm64'):
        es = vmtool.read_selftest_list('rust', arch=arch)
        assert [e.name for e in es if e.numa] == ['guest_memfd_numa_test']
    assert not [e for e in vmtool.read_selftest_list('c') if e.numa]
