# nixlive: `make demo` builds everything and boots a demo live ISO in QEMU;
# `make test` runs every test, the VM tests included. Both install what they
# need first (apt packages, rustup targets, Debian kernels) and are idempotent.
SHELL := /bin/bash
CARGO ?= cargo
GUEST_TARGETS ?= x86_64-unknown-linux-musl i686-unknown-linux-musl aarch64-unknown-linux-musl
GUEST_PKGS := -p nixlive-init -p nixlive-postboot -p nixlive-demo
export SOURCE_DATE_EPOCH ?= 1700000000

.PHONY: all deps build demo test lint bench clean

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
