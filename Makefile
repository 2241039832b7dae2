# The two commands a newcomer needs: `make demo` and `make test`. Both install what they
# need first (Debian packages via deploy/deps.sh).

CARGO ?= cargo

.PHONY: demo test deps build web release deb previous bench bench-etcd bench-scale check-long fuzz fmt lint clean

deps:
	@bash deploy/deps.sh

build: deps
	$(CARGO) build --workspace --bins

# The web console (web/dist, served by corrald at /): from the npm registry, as the lock file pins it.
web: deps
	cd web && npm ci --no-audit --no-fund && npm run build

release: deps
	$(CARGO) build --release --workspace --bins

# The Debian package of a release build: corral, corrald, the web console, the systemd unit, the
# default config, completions and man pages (deploy/deb/). Prints the .deb's path.
TARGET_DIR = $(or $(CARGO_TARGET_DIR),target)
deb: release web
	@bash deploy/deb/build.sh $(TARGET_DIR)/release target/debian

# A 3-node cluster on libvirt's test hypervisor in a temp dir: bootstrap, join, VMs,
# kill the leader, see the new leader with the data intact, clean up.
demo: build
	@bash deploy/demo.sh target/debug

# The previous release (deploy/upgrade/PREVIOUS_RELEASE, format v0), for the mixed-version and
# rolling-upgrade tests: a full build of its own under target/previous, skipped once made.
previous: deps
	@bash deploy/upgrade/build-previous.sh

# Every test: unit tests, openraft's storage suite on sled, cluster tests with real corrald
# processes (some with the previous release's, and the short set of fault schedules), then
# (alone, as they run real QEMU guests; they need root and install their own packages) the
# sandbox-host tests. nextest when it is installed, cargo test otherwise.
test: export CORRAL_PREVIOUS_BIN = $(CURDIR)/target/previous/bin
test: build previous web
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast -E 'not (binary(sandbox) | binary(sandbox_faults))' && \
		$(CARGO) nextest run -p corral-tests --no-fail-fast -E 'binary(sandbox) | binary(sandbox_faults)'; \
	else \
		$(CARGO) test --workspace --no-fail-fast -- --test-threads=2 --skip real_vms_on_sandbox_hosts \
			--skip ha_fault_schedules_on_sandbox_hosts && \
		$(CARGO) test -p corral-tests --test sandbox --test sandbox_faults --no-fail-fast -- --test-threads=1; \
	fi

# Figures for BENCHMARKS.md (release build).
bench: release
	target/release/corral-bench

# The scale harness (BENCHMARKS.md, "Scale"): 50,000 VMs on 15 hosts, then 100 hosts. The
# issue's own command line, `corral-scale --voters 5 --hosts 100 --vms 50000`, needs about 22 GiB
# for the hundred nodes' copies of the state.
bench-scale: release
	target/release/corral-scale --voters 5 --hosts 15 --vms 50000 --running 1000 --lose 5
	target/release/corral-scale --voters 5 --hosts 100 --vms 1000 --running 300 --only cpu,ha,loss --lose 10

# Replicated writes beside a 3-member etcd (Debian's etcd-server, installed if missing).
bench-etcd: release
	target/release/corral-etcd-bench

# Long suites, their results in RELIABILITY.md: the rolling upgrade from the previous release,
# repeated; power loss of a QEMU guest running corrald, with the fsync on and (the negative
# control) off; randomized fault schedules on loopback clusters and on sandbox hosts with HA
# guests (seeds FAULT_SEED and on); the package installed in a clean Debian 12 root made by
# debootstrap (deploy/deb/install-test.sh).
FAULT_SCHEDULES ?= 1000
SANDBOX_FAULT_SCHEDULES ?= 50
FAULT_SEED ?= 1
SCHEMATHESIS_EXAMPLES ?= 300
check-long: export CORRAL_PREVIOUS_BIN = $(CURDIR)/target/previous/bin
check-long: build previous web
	bash deploy/deb/install-test.sh $(TARGET_DIR)/debug
	@for round in 1 2 3 4 5; do \
		echo "rolling upgrade: round $$round of 5"; \
		$(CARGO) nextest run -p corral-tests --test upgrade --no-fail-fast || exit 1; \
	done
	target/debug/corral-powerloss --rounds 5
	target/debug/corral-faults --schedules $(FAULT_SCHEDULES) --seed $(FAULT_SEED)
	target/debug/corral-faults --sandbox --schedules $(SANDBOX_FAULT_SCHEDULES) --seed $(FAULT_SEED)
	CORRAL_SCHEMATHESIS_EXAMPLES=$(SCHEMATHESIS_EXAMPLES) CORRAL_SCHEMATHESIS_SEED=$(FAULT_SEED) \
		$(CARGO) nextest run -p corral-tests --test schemathesis --no-fail-fast
	$(MAKE) fuzz FUZZ_SECONDS=900

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean

# Fuzzing (cargo-fuzz, libFuzzer) on the stable toolchain: RUSTC_BOOTSTRAP=1 lets it pass the
# sanitizer flags. FUZZ_SECONDS per target; results in RELIABILITY.md.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS = codec ovf domain_xml cli_values
fuzz: deps
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	@for t in $(FUZZ_TARGETS); do \
		echo "fuzz $$t for $(FUZZ_SECONDS) s"; \
		mkdir -p fuzz/corpus/$$t; \
		(cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -max_len=65536) || exit 1; \
	done
