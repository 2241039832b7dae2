# The two commands a newcomer needs: `make demo` and `make test`. Both install what they
# need first (Debian packages via deploy/deps.sh).

CARGO ?= cargo

.PHONY: demo test deps build release bench fmt lint clean

deps:
	@bash deploy/deps.sh

build: deps
	$(CARGO) build --workspace --bins

release: deps
	$(CARGO) build --release --workspace --bins

# A 3-node cluster on libvirt's test hypervisor in a temp dir: bootstrap, join, VMs,
# kill the leader, see the new leader with the data intact, clean up.
demo: build
	@bash deploy/demo.sh target/debug

# Every test: unit tests, openraft's storage suite on sled, and cluster tests with real
# corrald processes. nextest when it is installed, cargo test otherwise.
test: build
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --no-fail-fast -- --test-threads=2; \
	fi

# Figures for BENCHMARKS.md (release build).
bench: release
	target/release/corral-bench

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
