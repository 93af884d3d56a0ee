# SPDX-License-Identifier: GPL-2.0
# Shared settings and helpers for the build scripts.  Sourced, not run.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The build cache lives outside the repository: kernel source, object
# directories, headers, selftest binaries.
CACHE=${GMEM_CACHE:-$HOME/.cache/gmem-rs}
LOGDIR=$REPO/build/logs

# The kernel we build on: Debian's linux-source-6.12, pinned.
KSRC_PKG=linux-source-6.12
KSRC_VERSION=6.12.117-1~deb12u1
KSRC_TARBALL=/usr/src/linux-source-6.12.tar.xz
SRC_PRISTINE=$CACHE/src/pristine
SRC=$CACHE/src/linux

# Toolchain: LLVM 16 from Debian, the machine's rustc, bindgen pinned.
LLVM_X86=-16
LLVM_UML=/usr/lib/llvm-16/bin/
BINDGEN_VERSION=0.72.1
PYTEST_VERSION=8.3.5
export LIBCLANG_PATH=/usr/lib/llvm-16/lib
export PATH=$HOME/.cargo/bin:$PATH

JOBS=${JOBS:-$(nproc)}

mkdir -p "$LOGDIR"

msg() { printf '>>> %s\n' "$*"; }
warn() { printf '!!! WARNING: %s\n' "$*" >&2; }
die() { printf '!!! ERROR: %s\n' "$*" >&2; exit 1; }

# step DESCRIPTION LOGNAME COMMAND...
# Runs COMMAND with its output in $LOGDIR/LOGNAME.log, prints what it is
# doing and how long it took; on failure shows the tail of the log.
step() {
	local desc=$1 log=$LOGDIR/$2.log start rc
	shift 2
	printf '>>> %s ... ' "$desc"
	start=$(date +%s)
	"$@" >"$log" 2>&1
	rc=$?
	if [ $rc -eq 0 ]; then
		printf 'done (%ss)\n' "$(($(date +%s) - start))"
	else
		printf 'FAILED (%ss, exit %d)\n' "$(($(date +%s) - start))" "$rc"
		echo "--- last 40 lines of $log ---"
		tail -n 40 "$log"
		echo "--- end of $log ---"
	fi
	return $rc
}

# record_counts NAME STATUS DETAIL SUMMARY: record result NAME from the
# "N passed" and "N failed"/"N error(s)" counts of a test runner's SUMMARY
# lines (summed) and the exit STATUS of the run; a failed run that counted
# no failure counts one.
record_counts() {
	local n_pass n_fail
	n_pass=$(grep -Eo '[0-9]+ passed' <<<"$4" | awk '{s += $1} END {print s + 0}')
	n_fail=$(grep -Eo '[0-9]+ (failed|errors?)' <<<"$4" | awk '{s += $1} END {print s + 0}')
	[ "$2" = 0 ] || [ "$n_fail" -gt 0 ] || n_fail=1
	python3 "$REPO/scripts/vmtool.py" record "$1" "$n_pass" "$n_fail" \
		"$3: $n_pass passed, $n_fail failed, exit $2"
}

# Content hash of files, for "has this input changed" stamps.
hash_files() {
	cat "$@" 2>/dev/null | sha256sum | cut -d' ' -f1
}

# kernel_out NAME [ARCH]: the object directory of kernel NAME (rust, c-debug...)
kernel_out() { echo "$CACHE/out/${2:-x86_64}-$1"; }
