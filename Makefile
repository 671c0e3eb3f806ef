# The README's commands. Every target installs the system packages it needs.
SWIFT ?= swift
JOBS ?= 2
APT_PACKAGES := libuv1-dev libjemalloc-dev libsodium-dev libsqlite3-dev cmake pkg-config valgrind

BUSY_RUNS ?= 3

.PHONY: all deps build demo demo-busy test test-busy test-c test-c-sanitized test-c-tsan test-fuzz test-swift \
	fuzz fuzz-build bench bench-c bench-jobs format lint clean

all: build

# Installs what is missing (needs root; prints the command otherwise).
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing packages:$$missing (run: sudo apt-get install -y$$missing)"; exit 1; \
	  fi; \
	fi

# One debug build, tests included, for `make demo`, `make test` and `make build`: a build without
# the tests compiles every module with other settings, so alternating the two rebuilt everything.
DEBUG_BUILD = $(SWIFT) build --build-tests

build: deps
	$(DEBUG_BUILD)

demo: deps
	$(DEBUG_BUILD)
	$$($(SWIFT) build --show-bin-path)/ucp demo

test: deps test-c test-c-sanitized test-c-tsan test-fuzz test-swift

# `make test` and `make demo` $(BUSY_RUNS) times in a row while `yes` keeps one core busy: every
# time-dependent expectation must hold on a loaded machine. Stops at the first failure.
define busy
	@yes > /dev/null & hog=$$!; trap 'kill $$hog' EXIT INT TERM; \
	for run in $$(seq $(BUSY_RUNS)); do \
	  echo "== make $(1): run $$run of $(BUSY_RUNS), one core kept busy by yes (pid $$hog)"; \
	  $(MAKE) --no-print-directory $(1) || exit 1; \
	done
endef

test-busy:
	$(call busy,test)

demo-busy:
	$(call busy,demo)

test-c: deps
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build build -j $(JOBS)
	ctest --test-dir build --output-on-failure

test-c-sanitized: deps
	cmake -S . -B build-sanitized -DCMAKE_BUILD_TYPE=Debug -DCC_SANITIZE=ON >/dev/null
	cmake --build build-sanitized -j $(JOBS)
	ctest --test-dir build-sanitized --output-on-failure

# ThreadSanitizer over the areas where threads meet (CMakeLists.txt lists them; Tests/CCausal/tsan.supp
# holds its suppressions). gcc, whose libtsan comes with it on Debian: the Swift toolchain's clang links
# a TSan runtime that needs libdispatch.
TSAN_CC ?= gcc
test-c-tsan: deps
	cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DCC_TSAN=ON -DCMAKE_C_COMPILER=$(TSAN_CC) >/dev/null
	cmake --build build-tsan -j $(JOBS)
	ctest --test-dir build-tsan --output-on-failure

# libFuzzer (Fuzz/README.md). The C targets are built with clang (FUZZ_CC) in build-fuzz; without a
# compiler that links -fsanitize=fuzzer none is built, and the runs below say so and pass.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 300
FUZZ_TEST_SECONDS ?= 30
FUZZ_FLAGS ?= -timeout=10 -rss_limit_mb=2048

# $(call fuzz_run,<executable>,<name>,<seconds>,<scratch>[,<dictionary>]): libFuzzer for that long from
# Fuzz/corpus/<name>, which it only reads: new inputs go to <scratch>/<name>, crashes to
# <scratch>/<name>-crashes/, its output to <scratch>/<name>.log (the end of it is shown if it fails).
# One line per target in `fuzz` and `test-fuzz`.
define fuzz_run
	@if [ -x "$(1)" ]; then \
	  mkdir -p $(4)/$(2) $(4)/$(2)-crashes && echo "== fuzz $(2): $(3) s, log in $(4)/$(2).log" && \
	  if $(1) -max_total_time=$(3) $(FUZZ_FLAGS) $(if $(5),-dict=$(5)) -artifact_prefix=$(4)/$(2)-crashes/ \
	      $(4)/$(2) Fuzz/corpus/$(2) >$(4)/$(2).log 2>&1; then \
	    grep -E 'DONE|^Done' $(4)/$(2).log; \
	  else tail -n 60 $(4)/$(2).log; echo "== fuzz $(2): FAILED, input in $(4)/$(2)-crashes/"; exit 1; fi; \
	else echo "== fuzz $(2): skipped, no $(1) (no $(FUZZ_CC) with libFuzzer)"; fi
endef

fuzz-build: deps
	@if command -v $(FUZZ_CC) >/dev/null 2>&1; then \
	  cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCC_FUZZ=ON -DCMAKE_C_COMPILER=$(FUZZ_CC) >/dev/null && \
	  cmake --build build-fuzz -j $(JOBS) --target cc_fuzz; \
	else echo "fuzz: no $(FUZZ_CC) on the PATH, no fuzz targets built"; fi
	Fuzz/Swift/build.sh build-fuzz/header-fuzz

# A crash must not leave a swift-backtrace process holding the output open.
fuzz test-fuzz: export SWIFT_BACKTRACE = enable=no

# Each target for FUZZ_SECONDS; what it finds stays in build-fuzz/findings across runs (copy an input
# worth keeping into Fuzz/corpus/<name>).
fuzz: fuzz-build
	$(call fuzz_run,build-fuzz/cc_fuzz_frame,frame,$(FUZZ_SECONDS),build-fuzz/findings,Fuzz/wire.dict)
	$(call fuzz_run,build-fuzz/cc_fuzz_node,node,$(FUZZ_SECONDS),build-fuzz/findings,Fuzz/wire.dict)
	$(call fuzz_run,build-fuzz/header-fuzz,headers,$(FUZZ_SECONDS),build-fuzz/findings,Fuzz/Swift/headers.dict)

# For make test: each target for FUZZ_TEST_SECONDS, first over every input checked in (a regression on
# one of them fails at once), from an empty scratch folder each time.
test-fuzz: fuzz-build
	rm -rf build-fuzz/test
	$(call fuzz_run,build-fuzz/cc_fuzz_frame,frame,$(FUZZ_TEST_SECONDS),build-fuzz/test,Fuzz/wire.dict)
	$(call fuzz_run,build-fuzz/cc_fuzz_node,node,$(FUZZ_TEST_SECONDS),build-fuzz/test,Fuzz/wire.dict)
	$(call fuzz_run,build-fuzz/header-fuzz,headers,$(FUZZ_TEST_SECONDS),build-fuzz/test,Fuzz/Swift/headers.dict)

# Two passes: the in-process suites in parallel, then the suites that start `ucp` processes or
# load the machine (process faults, 10,000 queued jobs, the demo) one at a time, so that on two
# cores they do not starve the heartbeat-timed suites of CPU.
SERIAL_SUITES = FaultTests|PartitionTests|ClusterDemoTests|ClientCommandTests|EmergencyQueueTests|UploadStormTests|ResultIntegrityTests|ResultRedeliveryTests|EarlyAnswerTests|DispatchWindowTests|HostileHeaderTests|HeaderPropertyTests
test-swift: deps
	$(DEBUG_BUILD)
	$(SWIFT) test --skip-build --skip '$(SERIAL_SUITES)'
	$(SWIFT) test --skip-build --no-parallel --filter '$(SERIAL_SUITES)'

bench: deps bench-c bench-jobs
	cd Benchmarks && $(SWIFT) package --disable-sandbox benchmark --format markdown --no-progress | tee ../build/benchmarks.md
	python3 Benchmarks/ratios.py build/benchmarks.md

# Jobs per second end to end on a local cluster (release build), beside the same job in-process; then with
# two federated brokers, and CRITICAL jobs timed behind 10,000 queued ones.
bench-jobs: deps
	$(SWIFT) build -c release --product ucp
	$$($(SWIFT) build -c release --show-bin-path)/ucp bench-jobs
	$$($(SWIFT) build -c release --show-bin-path)/ucp bench-jobs --brokers 2 --emergency-queue 10000

bench-c: deps
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build build -j $(JOBS) --target cc_bench
	./build/cc_bench

format:
	$(SWIFT) format --in-place --recursive Sources Tests Benchmarks/Benchmarks Package.swift Benchmarks/Package.swift
	clang-format -i Sources/CCausal/*.c Sources/CCausal/include/*.h Tests/CCausal/*.c Benchmarks/C/*.c

lint:
	$(SWIFT) format lint --recursive Sources Tests

clean:
	rm -rf .build build build-sanitized build-tsan build-fuzz Benchmarks/.build
