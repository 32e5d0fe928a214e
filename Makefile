# Thin wrapper around CMake for the two commands of the README.
#   make run    install dependencies, build (Release), serve on 127.0.0.1:5000, storage ./data
#   make test   install dependencies, build, run every test (ctest)
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
SUDO       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Build and test dependencies (Debian 12 package names).
DEPS := cmake make gcc pkg-config libmicrohttpd-dev libssl-dev libsodium-dev liblmdb-dev \
        libzstd-dev libjansson-dev libcurl4-openssl-dev curl jq zstd skopeo podman buildah docker.io containerd umoci prometheus nginx python3-yaml openssl systemd clang-14 libclang-rt-14-dev llvm-14
# strace: tests/reliability/fsync_trace.sh watches the fsync calls of blob commits
DEPS += strace

.PHONY: all deps build run test test-asan test-tsan clean

all: build

deps:
	@missing=$$(for p in $(DEPS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
	    grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing: $$missing"; \
	    $(SUDO) apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD) -j $(JOBS)

run: build
	./$(BUILD)/ocireg serve --root ./data --listen 127.0.0.1:5000

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The same tests under AddressSanitizer + UndefinedBehaviorSanitizer (CI runs this too).
test-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DOCIREG_SANITIZE=ON
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS)

# The integration tests once more under ThreadSanitizer (the worker pool, the accept loop,
# the flush and gc threads). CI runs this too.
test-tsan: deps
	cmake -S . -B $(BUILD)-tsan -DCMAKE_BUILD_TYPE=Debug -DOCIREG_TSAN=ON
	cmake --build $(BUILD)-tsan -j $(JOBS)
	cd $(BUILD)-tsan && TSAN_OPTIONS=halt_on_error=1 ctest --output-on-failure -L integration

# Deliberate bugs (tests/mutation/patches/), each built into a copy of the tree and run against
# the tests that must catch it; fails on any the tests miss (tests/mutation/README.md).
# MUTATIONS="001 017" runs those; MUTATION_SUBSET=N, N of them, a window moving with each commit.
.PHONY: test-mutation
test-mutation: deps
	MUTATIONS="$(MUTATIONS)" MUTATION_SUBSET="$(MUTATION_SUBSET)" tests/mutation/run.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(BUILD)-tsan

# Benchmark against CNCF Distribution (tests/bench/README.md); BENCH_QUICK=1 for a smoke run.
bench: build
	tests/bench/run.sh $(BUILD)/ocireg

# Container image from scratch (deploy/image/build-image.sh: the binary, its shared libraries and
# loader, a non-root user), pushed to REGISTRY=host:port (TAG=..., IMAGE_REPO=...), else into
# ./data through a temporary ocireg on a free port (then `make run` serves it).
image: build
	deploy/image/build-image.sh --ocireg $(BUILD)/ocireg --rootfs $(BUILD)/image-rootfs \
	    $(if $(REGISTRY),--registry $(REGISTRY)) $(if $(TAG),--tag $(TAG))
