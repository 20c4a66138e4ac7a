# nixlive: `make demo` builds everything and boots a demo live ISO in QEMU;
# `make test` runs every test, the VM tests included. Both install what they
# need first (apt packages, rustup targets, Debian kernels) and are idempotent.
SHELL := /bin/bash
CARGO ?= cargo
GUEST_TARGETS ?= x86_64-unknown-linux-musl i686-unknown-linux-musl aarch64-unknown-linux-musl
GUEST_PKGS := -p nixlive-init -p nixlive-postboot -p nixlive-demo
export SOURCE_DATE_EPOCH ?= 1700000000

.PHONY: all deps build demo test lint bench fuzz clean

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
	$(CARGO) test -p nixlive-tests-vm

clean:
	$(CARGO) clean
	rm -rf out

# Boot-time and initrd-size comparison with peers, measured in one run
# (never part of `make test`).
bench: build
	$(CARGO) run --release -q -p nixlive-tests-vm --bin nixlive-bench

# Every parser of untrusted input under libFuzzer for FUZZ_SECONDS each.
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain take them.
FUZZ_SECONDS ?= 10
FUZZ_TARGETS := cmdline manifest initrd_conf registration kmod superblock authorized_keys postboot_conf report encodings
# deps: libFuzzer is C++ (g++). cargo-fuzz is installed here when missing.
fuzz: deps
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -O $$t -- -max_total_time=$(FUZZ_SECONDS) 2>&1 | grep -E '^Done|ERROR|panicked|SUMMARY' ; \
	  test $${PIPESTATUS[0]} -eq 0 || { echo "fuzz target $$t failed (crash input under fuzz/artifacts/$$t)"; exit 1; }; \
	done
