# nixlive: `make demo` builds everything and boots a demo live ISO in QEMU;
# `make test` runs every test, the VM tests included. Both install what they
# need first (apt packages, rustup targets, Debian kernels) and are idempotent.
SHELL := /bin/bash
CARGO ?= cargo
GUEST_TARGETS ?= x86_64-unknown-linux-musl i686-unknown-linux-musl aarch64-unknown-linux-musl
GUEST_PKGS := -p nixlive-init -p nixlive-postboot -p nixlive-demo
export SOURCE_DATE_EPOCH ?= 1700000000

.PHONY: all deps build demo test lint bench fuzz fuzz-short clean

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	$(CARGO) build --release -p nixlive-builder
	for t in $(GUEST_TARGETS); do $(CARGO) build --release --target $$t $(GUEST_PKGS) || exit 1; done

demo: build
	$(CARGO) run --release -q -p nixlive-tests-vm --bin nixlive-demo-run

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Unit and host tests of every crate, then the VM tests (the tests-vm crate).
test: build lint
	$(CARGO) test --workspace --exclude nixlive-tests-vm
	$(MAKE) fuzz-short
	$(CARGO) test -p nixlive-tests-vm

clean:
	$(CARGO) clean
	rm -rf out

# Boot-time and initrd-size comparison with the real peers (Debian
# live-boot, dracut, built once into .cache/bench-peers) and registration
# against nix-store, measured in one run (never part of `make test`).
# NIXLIVE_BENCH_ROUNDS=N (default 5), NIXLIVE_BENCH_PARTS=boot,ram,registration,throughput,netboot,
# images, NIXLIVE_BENCH_RAM_ROWS (some of the ram part's rows),
# NIXLIVE_BENCH_TREE_MB (the throughput tree, default 300),
# NIXLIVE_BENCH_IMAGES_MB (the images part's tree, default 200). Writes
# bench.json, bench.md and bench.svg (and images.json, images.md) in out/bench.
bench: build
	bash scripts/fetch-bench-peers.sh
	$(CARGO) run --release -q -p nixlive-bench --bin nixlive-bench
	$(CARGO) run --release -q -p nixlive-bench --bin nixlive-scale-bench
	$(CARGO) run --release -q -p nixlive-bench --bin nixlive-verity-bench

# Every parser of untrusted input under libFuzzer for FUZZ_SECONDS each,
# built as release with debug assertions and overflow checks (cargo fuzz's
# default; never -O alone, which turns them off). Each target starts from
# its committed seeds (fuzz/seeds/<target>, made by scripts/fuzz-seeds.sh)
# and its scratch corpus (fuzz/corpus/<target>, not committed); -max_len is
# large enough for each format (the ISO9660 probe reads 34 KiB). A crash
# input lands in fuzz/artifacts/<target>; keep it as a unit test.
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain take them.
FUZZ_SECONDS ?= 10
FUZZ_TARGETS := cmdline manifest initrd_conf registration kmod softdep superblock uevent authorized_keys passwd postboot_conf report encodings elf kimage cpio partition_table ipconf url http_head dhcp dns nixkey verity timeline fs_label unpack netlink btree
fuzz_max_len = $(or $(FUZZ_MAX_LEN_$(1)),8192)
FUZZ_MAX_LEN_superblock := 65536
FUZZ_MAX_LEN_kmod := 65536
FUZZ_MAX_LEN_softdep := 32768
FUZZ_MAX_LEN_registration := 65536
FUZZ_MAX_LEN_report := 16384
FUZZ_MAX_LEN_partition_table := 65536
FUZZ_MAX_LEN_fs_label := 16896
FUZZ_MAX_LEN_unpack := 16384
FUZZ_MAX_LEN_btree := 4096
# deps: libFuzzer is C++ (g++). cargo-fuzz is installed here when missing.
# The last libFuzzer line of each target (its coverage, `cov:`) is printed.
fuzz: deps
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@cd fuzz && $(foreach t,$(FUZZ_TARGETS),mkdir -p corpus/$(t) && \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run --debug-assertions $(t) corpus/$(t) seeds/$(t) -- \
	    -max_total_time=$(FUZZ_SECONDS) -max_len=$(call fuzz_max_len,$(t)) >$(CURDIR)/fuzz/last-$(t).log 2>&1; \
	  rc=$$?; grep -E 'DONE|^Done|ERROR|panicked|SUMMARY' $(CURDIR)/fuzz/last-$(t).log | sed 's/^/$(t): /'; \
	  test $$rc -eq 0 || { echo "fuzz target $(t) failed (crash input under fuzz/artifacts/$(t), log fuzz/last-$(t).log)"; exit 1; } && ) true

# The short pass `make test` runs: every target for 20 s.
fuzz-short:
	$(MAKE) fuzz FUZZ_SECONDS=20
