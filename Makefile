# Dialtone: the two commands the README promises, and their parts.
#   make run   builds everything (guest components included) and runs the
#              switch on conf/
#   make test  installs what the tests need and runs the whole suite
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/dialtone-target
COMPONENTS := build/components

.PHONY: run test guests build bench

guests:
	scripts/build-guests.sh $(COMPONENTS)

# Built with every target, like `make test`, so both share one set of
# artifacts (building the binary alone unifies wasmtime's features
# differently and would rebuild it).
build: guests
	cargo build --release --workspace --all-targets

run: build
	$(CARGO_TARGET_DIR)/release/dialtone --conf conf run

test:
	scripts/test.sh

bench: guests
	scripts/bench.sh
