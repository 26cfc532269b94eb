# A thin wrapper over CMake for the usual commands. README's two commands
# (scripts/setup.sh, scripts/test.sh) are what CI runs.
LLAMA_PREFIX ?= $(shell cat .llama-prefix 2>/dev/null || scripts/llama-deps.sh)
JOBS ?= $(shell nproc)
CMAKE_ARGS = -DCMAKE_PREFIX_PATH=$(LLAMA_PREFIX)

.PHONY: all test asan fuzz fuzz-long format lint clean

all:
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS) >/dev/null
	cmake --build build -j $(JOBS)

test: all
	cd build && ctest --output-on-failure -j $(JOBS)

asan:
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSLM_SANITIZE=ON $(CMAKE_ARGS) >/dev/null
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ctest --output-on-failure -j $(JOBS)

# Builds the libFuzzer harnesses; run one with e.g.
#   build-fuzz/fuzz/fuzz_liquid tests/fuzz/corpus/liquid -max_total_time=60
# or all of them with scripts/fuzz.sh SECONDS (docs/internals/fuzzing.md).
fuzz:
	CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DSLM_FUZZ=ON \
	    -DSLM_TESTS=OFF $(CMAKE_ARGS) >/dev/null
	cmake --build build-fuzz -j $(JOBS)

# Every harness for FUZZ_TIME seconds (10 minutes each by default), FUZZ_JOBS
# at once; prints executions and crashes per harness.
FUZZ_TIME ?= 600
FUZZ_JOBS ?= $(JOBS)
fuzz-long: fuzz
	FUZZ_JOBS=$(FUZZ_JOBS) scripts/fuzz.sh $(FUZZ_TIME)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

lint:
	scripts/check-source.sh
	scripts/check-layers.sh
	scripts/lint.sh

clean:
	rm -rf build build-asan build-fuzz
