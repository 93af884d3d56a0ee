# SPDX-License-Identifier: GPL-2.0
# Rust guest_memfd for Linux 6.12: build, boot and test driver.
#
#   make run                  build the $(IMPL) kernel, boot it, run the selftests
#   make check                build and test everything; last line "N passed, N failed"
#   make kernel IMPL=c|rust   build one kernel ($(GMEM_CACHE)/out/x86_64-<impl>)
#   make selftest T=name      run selftests matching "name" in the test VM
#   ... DEBUG=1               kernel, selftest, kunit-qemu: the debug variant
#                             (KASAN, kmemleak, fault injection; x86_64-<impl>-debug)
#   ... ARCH=arm64            kernel, selftests, selftest, kunit-qemu: the arm64
#                             kernel ($(GMEM_CACHE)/out/arm64-rust, Rust only) in
#                             qemu-system-aarch64 with KVM at the emulated EL2
#   make kunit-uml [SUITE=g]  run the UML KUnit suites (optionally a glob)
#   make kunit-qemu [SUITE=g] boot the test kernel with its KUnit suites
#   make lint                 rustfmtcheck, checkpatch and a CLIPPY=1 build
#   make series               the whole change as one git format-patch series
#                             in build/series/ (git am onto pristine 6.12.117)
#   make series-check         also git am it onto pristine, compare with the
#                             prepared tree, checkpatch every patch
#   make bench [BOOTS=3] [RUNS=5] [METRICS=list]  C vs Rust benchmark over
#                             alternating boots (C, Rust, C, ...): medians, spread,
#                             build/bench.json, build/bench.png (not in check)
#   make fuzz [OPS=5000] [SEEDS=1+20]  C vs Rust differential fuzzing: the same
#                             seeded guest_memfd call sequences on both kernels,
#                             traces diffed (build/fuzz/; make check runs a
#                             smoke budget); DEBUG=1 uses the debug kernels
#   make clean / distclean    remove build/ / also the build cache

IMPL ?= rust
IMPLS ?= c rust
DEBUG ?= 0
ARCH ?= x86_64
export IMPL IMPLS
KVARIANT := $(if $(filter 1,$(DEBUG)),--debug)
KARCH := --arch=$(ARCH)
# make fuzz: operations per seed and seeds (A,B,... or FIRST+COUNT); the
# default is 100,000 operations on each kernel.
OPS ?= 5000
SEEDS ?= 1+20

.PHONY: run check bench fuzz setup source kernel selftests selftest kunit-uml kunit-qemu lint \
	series series-check clean distclean

run:
	@scripts/run

check:
	@scripts/check

bench:
	@scripts/bench

fuzz: selftests
	@for impl in c rust; do scripts/build-kernel --impl=$$impl $(KVARIANT) || exit 1; done
	@scripts/fuzz --ops=$(OPS) --seeds=$(SEEDS) $(KVARIANT)

setup:
	@scripts/setup-toolchain

source: setup
	@scripts/prepare-source

kernel: source
	@scripts/build-kernel $(KARCH) --impl=$(IMPL) $(KVARIANT)

selftests: source
	@scripts/build-selftests $(KARCH)

selftest: kernel selftests
	@python3 scripts/vmtool.py selftests $(KARCH) --impl=$(IMPL) $(KVARIANT) --verbose --filter="$(T)"

kunit-uml: source
	@scripts/kunit-uml $(SUITE)

kunit-qemu: kernel
	@python3 scripts/vmtool.py kunit $(KARCH) --impl=$(IMPL) $(KVARIANT) --verbose $(SUITE)

lint: source
	@scripts/build-kernel --impl=rust && scripts/lint --clippy

series: source
	@scripts/series

series-check: source
	@scripts/series --check

clean:
	rm -rf build

distclean: clean
	rm -rf "$${GMEM_CACHE:-$$HOME/.cache/gmem-rs}"
