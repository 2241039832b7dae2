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

# Every test: unit tests, openraft's storage suite on sled, cluster tests with real corrald
# processes, then (alone, as it runs real QEMU guests; it needs root and installs its own
# packages) the sandbox-host test. nextest when it is installed, cargo test otherwise.
test: build
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast -E 'not binary(sandbox)' && \
		$(CARGO) nextest run -p corral-tests --no-fail-fast -E 'binary(sandbox)'; \
	else \
		$(CARGO) test --workspace --no-fail-fast -- --test-threads=2 --skip real_vms_on_sandbox_hosts && \
		$(CARGO) test -p corral-tests --test sandbox --no-fail-fast; \
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
